//! The erasure ledger's use: every erasure is appended to it, and at start the people it names
//! are erased again (see [`crate::ledger`] for the file and why).

use std::collections::BTreeSet;
use std::io::Write as _;

use super::*;
use crate::ledger::{LEDGER_KEY_ID, META_CHECKED, io_err, ledger_hash, private_file, read_lines};

impl PrivacyCtx<'_> {
    /// Appends an erasure to the ledger, durably (nothing without a ledger file).
    pub(crate) fn record_erasure(&self, ids: &[String], receipt_id: &str, at_ms: i64) -> Result<()> {
        let Some(path) = self.erasure_ledger else { return Ok(()) };
        let secret = crate::ledger::secret(self.store)?;
        let mut lines = String::new();
        for id in ids {
            lines.push_str(&format!("v1 {} {receipt_id} {at_ms}\n", ledger_hash(&secret, id)));
        }
        let mut file = private_file(path, false).map_err(io_err)?;
        file.write_all(lines.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        // The store was checked against the ledger at start, and these people are erased here:
        // the next start need not scan again.
        let checked = self.privacy.ledger_hashes.lock().as_mut().map(|hashes| {
            hashes.extend(ids.iter().map(|id| ledger_hash(&secret, id)));
            hashes.len()
        });
        if let Some(n) = checked {
            self.store.put(Table::Meta, META_CHECKED, n.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// At start: erases again everyone the ledger names who is known here (a restored backup
    /// brought them back). Skipped while the ledger holds no hash the store was not checked
    /// against. Returns the receipts of the erasures made.
    pub(crate) fn reapply_ledger(&self) -> Result<Vec<String>> {
        let Some(path) = self.erasure_ledger else { return Ok(Vec::new()) };
        let secret = crate::ledger::secret(self.store)?;
        let hashes: BTreeSet<String> = read_lines(path)
            .map_err(io_err)?
            .iter()
            .filter_map(|line| line.split(' ').nth(1).map(str::to_owned))
            .collect();
        let checked = self
            .store
            .get(Table::Meta, META_CHECKED)?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<usize>().ok());
        if hashes.is_empty() || checked == Some(hashes.len()) {
            *self.privacy.ledger_hashes.lock() = Some(hashes);
            return Ok(Vec::new());
        }
        let mut ids = self.people.ids();
        ids.extend(self.people.aliases.read().keys().cloned());
        let mut erased_persons = BTreeSet::new();
        let mut receipts = Vec::new();
        for id in ids {
            if !hashes.contains(&ledger_hash(&secret, &id)) {
                continue;
            }
            let person = self.people.resolve(&id);
            if !erased_persons.insert(person.clone()) || !self.people.read(&person, |state| state.is_some()) {
                continue;
            }
            let receipt = self.erase_person(&person, LEDGER_KEY_ID)?;
            tracing::warn!(
                receipt = %receipt.receipt_id,
                events = receipt.events,
                "erased again a person the erasure ledger names (the data was restored from before the erasure)"
            );
            receipts.push(receipt.receipt_id);
        }
        // The erasures above added their (known) hashes to the file, not to the set.
        self.store.put(Table::Meta, META_CHECKED, hashes.len().to_string().as_bytes())?;
        *self.privacy.ledger_hashes.lock() = Some(hashes);
        Ok(receipts)
    }
}

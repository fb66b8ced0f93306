//! Erasure: the `pending` record first, the steps, the receipt, the tombstone for the other
//! servers, the ledger; an interrupted erasure is completed at start.

use super::*;

impl PrivacyCtx<'_> {
    // ---- erasure ----

    /// Erases a person (an anonymous id merged into a person erases that person) and every alias:
    /// events, consent, preferences, aliases, merge log entries, forgotten items, decisions,
    /// exposures, notification plans and in-memory state. Audit entries that named them now name
    /// the receipt. Then the erasure hooks run, a retraining is requested, and a purge of the
    /// deleted bytes from the store's files is due within [`ERASURE_PURGE_DEADLINE_MS`] (the
    /// receipt's `purge_by_ms`; the scheduler's purge job runs it, one purge for every erasure
    /// before it). Crash-safe: a `pending` record written first makes
    /// [`crate::Engine::open`] complete an interrupted erasure. `NotFound` when the person is unknown.
    pub fn erase_person(&self, id: &str, key_id: &str) -> Result<ErasureReceipt> {
        let _exclusive = self.privacy.exclusive.lock();
        let pending = self.begin_erasure(id, key_id)?;
        // Decisions logged in memory must not be flushed back after the store forgets them.
        self.decisions.forget_decisions_of(&pending.ids);
        self.run_erasure(&pending, ERASURE_STEPS, false)?;
        self.erasure_receipt(&pending.receipt_id)?
            .ok_or_else(|| crate::error::corrupt("erasure receipt", "missing after erasure"))
    }

    /// Testing only: starts an erasure and stops after `steps` of its steps, as a crash would.
    /// [`crate::Engine::open`] completes it.
    #[doc(hidden)]
    pub fn erase_interrupted(&self, id: &str, key_id: &str, steps: usize) -> Result<String> {
        let _exclusive = self.privacy.exclusive.lock();
        let pending = self.begin_erasure(id, key_id)?;
        self.run_erasure(&pending, steps.min(ERASURE_STEPS - 1), false)?;
        Ok(pending.receipt_id)
    }

    /// A stored erasure receipt.
    pub fn erasure_receipt(&self, receipt_id: &str) -> Result<Option<ErasureReceipt>> {
        if !receipt_id.starts_with(RECEIPT_PREFIX) {
            return Ok(None);
        }
        match self.store.get(Table::Erasures, receipt_id)? {
            Some(bytes) => Ok(Some(from_json("erasure receipt", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Counts what will be deleted and writes the `pending` record before anything is deleted.
    pub(super) fn begin_erasure(&self, id: &str, key_id: &str) -> Result<PendingErasure> {
        let person = self.people.known_person(id)?;
        let aliases = self.people.aliases_of(&person);
        let mut ids = aliases.clone();
        ids.push(person.clone());
        let mut events = 0u64;
        let mut records = 0u64;
        for subject in &ids {
            self.store.subject_events(subject, &mut |_| {
                events += 1;
                true
            })?;
            for table in [Table::Consent, Table::Preferences, Table::Zones] {
                records += u64::from(self.store.get(table, subject)?.is_some());
            }
            for table in [Table::Forgotten, Table::Decisions, Table::Notifications] {
                records += self.scan_records(table, &format!("{subject}\0"))?.len() as u64;
            }
        }
        records += self.merges_naming(&ids)?.len() as u64;
        let pending = PendingErasure {
            receipt_id: format!("{RECEIPT_PREFIX}{}", ulid::Ulid::generate()),
            person: person.clone(),
            ids,
            key_id: key_id.to_owned(),
            events,
            aliases: aliases.len() as u64,
            records,
        };
        self.store.put(Table::Erasures, &format!("{PENDING_PREFIX}{person}"), &to_json(&pending))?;
        Ok(pending)
    }

    /// Runs the first `steps` erasure steps; every step is idempotent, so a restart may repeat
    /// the one a crash interrupted.
    pub(super) fn run_erasure(&self, pending: &PendingErasure, steps: usize, at_start: bool) -> Result<()> {
        let ids = &pending.ids;
        let redacted = format!("erased:{}", pending.receipt_id);
        let mut audit_redacted = 0u64;
        for step in 0..steps {
            match step {
                // Events first: they are most of the data.
                0 => {
                    for subject in ids {
                        self.store.delete_subject_events(subject)?;
                    }
                    self.experiments.note_events_deleted()?;
                }
                // Records keyed by the person or an alias (and the exposure index naming them).
                1 => {
                    self.experiments.forget_exposures_of(ids)?;
                    self.people.forget_decided_zones(ids)?;
                    for subject in ids {
                        self.store.delete(Table::Consent, subject)?;
                        self.store.delete(Table::Preferences, subject)?;
                        for table in [Table::Forgotten, Table::Decisions, Table::Notifications] {
                            let records = self.scan_records(table, &format!("{subject}\0"))?;
                            if table == Table::Decisions {
                                // The review index first: its entries are found from the records.
                                self.decisions.forget_review_index(&records)?;
                            }
                            for (key, _) in records {
                                self.store.delete(table, &key)?;
                            }
                        }
                        self.store.delete(Table::Erasures, &format!("{REWRITE_PREFIX}{subject}"))?;
                    }
                }
                // Merge log entries and aliases.
                2 => {
                    for (key, _) in self.merges_naming(ids)? {
                        self.store.delete(Table::Merges, &key)?;
                    }
                    for subject in ids {
                        if subject != &pending.person {
                            self.store.delete(Table::Aliases, subject)?;
                        }
                    }
                }
                // The audit log keeps who did what, but not to whom: targets that named the
                // person or an alias name the receipt instead.
                3 => {
                    for (key, mut entry) in self.audit_naming(ids)? {
                        entry.target = split_target(&entry.target)
                            .into_iter()
                            .map(|part| if ids.iter().any(|id| id == part) { redacted.as_str() } else { part })
                            .collect::<Vec<_>>()
                            .join(target_separator(&entry.target));
                        self.store.put(Table::Audit, &key, &to_json(&entry))?;
                        audit_redacted += 1;
                    }
                }
                // In-memory state, then events that raced in meanwhile, then the model layer.
                4 => {
                    {
                        let mut aliases = self.people.aliases.write();
                        aliases.retain(|alias, person| !ids.contains(alias) && !ids.contains(person));
                    }
                    {
                        let mut forgotten = self.privacy.forgotten.write();
                        for subject in ids {
                            forgotten.remove(subject);
                        }
                    }
                    for subject in ids {
                        self.people.remove(subject);
                    }
                    for subject in ids {
                        self.store.delete_subject_events(subject)?;
                        self.store.delete(Table::Meta, &format!("{ME_LINK_PREFIX}{subject}"))?;
                        self.people.remove(subject);
                    }
                    // Now that they are out of memory: a zone a decision noted since step 1, and
                    // a flush stored, goes too (see `People::flush_zones`).
                    self.people.forget_decided_zones(ids)?;
                    self.experiments.note_events_deleted()?;
                    // The served models keep no vector or row per person (histories are folded in at request
                    // time): nothing of the person is scored again once the profile is gone; their share of
                    // item statistics goes with the forced retrain. Their decisions leave the log here.
                    self.decisions.forget_decisions_of(ids);
                    for hook in self.privacy.hooks.read().iter() {
                        hook(ids);
                    }
                    self.request_retrain()?;
                }
                // The receipt and the audit entry, then the pending record goes and the store
                // purges. The audit entry's target is the receipt, never the person: the log must
                // not keep an erased person's id (a purpose-free copy of it would defeat the
                // erasure).
                5 => {
                    // The ledger first: a restored backup erases them again (see `ledger`).
                    self.record_erasure(ids, &pending.receipt_id, self.now_ms())?;
                    // Due before the receipt is written, so the receipt can say by when; a crash
                    // after this point leaves the marker, and the next start purges.
                    let purge_by_ms = self.request_purge_within(ERASURE_PURGE_DEADLINE_MS)?;
                    if self.erasure_receipt(&pending.receipt_id)?.is_none() {
                        let receipt = ErasureReceipt {
                            receipt_id: pending.receipt_id.clone(),
                            erased_at_ms: self.now_ms(),
                            events: pending.events,
                            aliases: pending.aliases,
                            records: pending.records,
                            audit_redacted,
                            completed_at_start: at_start,
                            purge_by_ms: Some(purge_by_ms),
                        };
                        self.audit.record(&pending.key_id, "users.erase", &pending.receipt_id)?;
                        self.store.put(Table::Erasures, &pending.receipt_id, &to_json(&receipt))?;
                    }
                    if self.cluster.enabled {
                        // Other servers drop the person from memory when they see this; it names
                        // no one in plain text (see `cluster::ErasureTombstone`).
                        self.cluster.write_erasure_tombstone(
                            self.store,
                            self.now_ms(),
                            &pending.receipt_id,
                            &pending.ids,
                        )?;
                    }
                    self.store.delete(Table::Erasures, &format!("{PENDING_PREFIX}{}", pending.person))?;
                    // The pending record's deletion leaves the person's id in a tombstone key: asked
                    // again after it, so that a purge that began in between (and cleared the
                    // marker) is followed by another one.
                    self.request_purge_within(ERASURE_PURGE_DEADLINE_MS)?;
                }
                _ => unreachable!("ERASURE_STEPS counts the steps above"),
            }
        }
        Ok(())
    }

    pub(super) fn purge_now(&self) -> Result<()> {
        self.store.delete(Table::Meta, META_PURGE_DUE)?;
        self.store.purge()?;
        Ok(())
    }

    /// Asks for a purge by [`PURGE_DEADLINE_MS`] from now (an earlier request stands); returns
    /// the time it is due.
    pub(crate) fn request_purge(&self) -> Result<i64> {
        self.request_purge_within(PURGE_DEADLINE_MS)
    }

    /// Asks for a purge within `deadline_ms` from now (an earlier request stands); returns the
    /// time it is due.
    fn request_purge_within(&self, deadline_ms: i64) -> Result<i64> {
        let due_ms = self.now_ms() + deadline_ms;
        let due_ms = match self.purge_due_ms()? {
            Some(earlier) => earlier.min(due_ms),
            None => due_ms,
        };
        self.store.put(Table::Meta, META_PURGE_DUE, &to_json(&due_ms))?;
        Ok(due_ms)
    }

    /// When the store must purge deleted bytes by (ms since the epoch), if a deletion is waiting
    /// for a purge (see the module docs).
    pub fn purge_due_ms(&self) -> Result<Option<i64>> {
        Ok(self.store.get(Table::Meta, META_PURGE_DUE)?.map(|bytes| {
            // An erasure's marker (`1`) is due at once.
            serde_json::from_slice::<i64>(&bytes).ok().filter(|&due| due > 1).unwrap_or(0)
        }))
    }

    /// Purges if a purge is due at `now_ms` (the scheduler's purge job asks every
    /// [`crate::scheduler::PURGE_CHECK_EVERY`]); returns whether it purged.
    ///
    /// Runs beside erasures and consent rewrites, not after them: the marker is cleared before
    /// the store purges, and every deletion asks for a purge after it is done, so a deletion the
    /// running purge may have missed leaves the marker set for the next one.
    pub fn purge_if_due(&self, now_ms: i64) -> Result<bool> {
        match self.purge_due_ms()? {
            Some(due_ms) if due_ms <= now_ms => {
                self.purge_now()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

pub(super) fn target_separator(target: &str) -> &'static str {
    if target.contains(" -/-> ") {
        " -/-> "
    } else if target.contains(" -> ") {
        " -> "
    } else {
        ""
    }
}

pub(super) fn split_target(target: &str) -> Vec<&str> {
    match target_separator(target) {
        "" => vec![target],
        separator => target.split(separator).collect(),
    }
}

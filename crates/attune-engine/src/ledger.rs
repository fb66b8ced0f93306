//! The erasure ledger: erasures survive restoring a backup.
//!
//! A backup taken before an erasure still holds the erased person. So every completed erasure
//! also appends a line to a ledger *file* (not the store: restoring a backup replaces the store,
//! and `attune restore` merges the ledger instead of replacing it). A line holds a keyed hash of
//! each erased id — HMAC-SHA256 with a secret kept in the store ([`Table::Meta`]
//! `erasure_ledger_secret`, so in every backup) — never the id: the ledger names no one to
//! whoever reads it without the data. At start, [`crate::Engine::open`] hashes every id it knows and
//! erases again each one the ledger names (a new receipt; the audit entry's key is
//! [`LEDGER_KEY_ID`]).
//!
//! Line format (`v1`): `v1 <hex hmac> <receipt id> <erased at ms>\n`. Lines are appended with
//! one write each and fsynced before the erasure is acknowledged; a torn last line is ignored.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
};

use attune_store::{Store, Table};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::Result;

/// The ledger's file name beside an embedded data directory's files.
pub const LEDGER_FILE: &str = "erasure-ledger";

/// The key id that erasures replayed from the ledger are audited under.
pub const LEDGER_KEY_ID: &str = "erasure-ledger";

const META_SECRET: &str = "erasure_ledger_secret";
/// How many distinct hashes the ledger held when the store was last checked against it.
pub(crate) const META_CHECKED: &str = "erasure_ledger_checked";

/// The hex HMAC of an id with the ledger secret.
pub fn ledger_hash(secret: &[u8; 32], id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The complete lines of a ledger file (none when it does not exist).
pub fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let text = String::from_utf8_lossy(&text);
    // A line without its newline was torn by a crash: it was never acknowledged.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    Ok(complete.lines().filter(|line| line.starts_with("v1 ")).map(str::to_owned).collect())
}

/// Writes the union of the lines of `sources` to `dest` (replacing it atomically), durably:
/// what `attune restore` does, so that erasures recorded by the data directory being replaced
/// survive the restore. Returns how many distinct lines were written.
pub fn merge(sources: &[PathBuf], dest: &Path) -> std::io::Result<usize> {
    let mut lines = BTreeSet::new();
    for source in sources {
        lines.extend(read_lines(source)?);
    }
    let tmp = dest.with_extension("merging");
    {
        let mut file = private_file(&tmp, true)?;
        for line in &lines {
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dest)?;
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(lines.len())
}

pub(crate) fn private_file(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    if truncate {
        options.write(true).create(true).truncate(true);
    } else {
        options.append(true).create(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

pub(crate) fn io_err(err: std::io::Error) -> crate::error::EngineError {
    crate::error::corrupt("erasure ledger", err)
}

/// The ledger secret (generated at first start, kept in the store).
pub(crate) fn secret(store: &dyn Store) -> Result<[u8; 32]> {
    match store.get(Table::Meta, META_SECRET)? {
        Some(bytes) => bytes.try_into().map_err(|_| crate::error::corrupt("erasure ledger secret", "length")),
        None => {
            let secret: [u8; 32] = rand::random();
            store.put(Table::Meta, META_SECRET, &secret)?;
            Ok(secret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Engine;

    #[test]
    fn a_torn_last_line_is_ignored_and_merge_is_a_union() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, out) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("out"));
        std::fs::write(&a, "v1 aa rcpt_1 1\nv1 bb rcpt_2 2\nv1 cc rc").expect("write");
        std::fs::write(&b, "v1 bb rcpt_2 2\nv1 dd rcpt_3 3\n").expect("write");
        assert_eq!(read_lines(&a).expect("read"), ["v1 aa rcpt_1 1", "v1 bb rcpt_2 2"]);
        assert_eq!(merge(&[a, b, dir.path().join("missing")], &out).expect("merge"), 3);
        assert_eq!(read_lines(&out).expect("read").len(), 3);
    }

    fn open(dir: &Path, ledger: Option<PathBuf>) -> Result<Engine> {
        let store = std::sync::Arc::new(attune_store::EmbeddedStore::open(dir.join("data")).expect("store"));
        let config = crate::EngineConfig { erasure_ledger: ledger, ..crate::EngineConfig::default() };
        Engine::open(store, std::sync::Arc::new(crate::ManualClock::new(1_700_000_000_000)), config)
    }

    #[test]
    fn engine_record_families_are_versioned_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open(dir.path(), None).expect("open");
        let stamped = engine.store().get(Table::Meta, "engine:format").expect("get").expect("stamped at open");
        assert!(String::from_utf8_lossy(&stamped).contains("event_payload 1"));
        engine.store().put(Table::Meta, "engine:format", b"event_payload 1\nrecords 7\n").expect("put");
        drop(engine);
        let err = open(dir.path(), None).err().expect("refused").to_string();
        assert!(err.contains("`records` records in version 7"), "{err}");
    }

    #[test]
    fn an_erasure_is_in_the_ledger_under_a_keyed_hash_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEDGER_FILE);
        let engine = open(dir.path(), Some(path.clone())).expect("open");
        engine.put_consent("person-7f3a", attune_core::Consent::default(), "k").expect("consent");
        let receipt = engine.erase_person("person-7f3a", "k").expect("erase");
        let lines = read_lines(&path).expect("ledger");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(&receipt.receipt_id));
        assert!(!lines[0].contains("person-7f3a"));
        let secret = secret(&**engine.store()).expect("secret");
        assert!(lines[0].contains(&ledger_hash(&secret, "person-7f3a")));
        // The store is known to be checked against the whole ledger: no scan at the next start.
        let checked = engine.store().get(Table::Meta, META_CHECKED).expect("get");
        assert_eq!(checked.as_deref(), Some(&b"1"[..]));
        drop(engine);
        let engine = open(dir.path(), Some(path)).expect("reopen");
        assert!(engine.erasure_receipt(&receipt.receipt_id).expect("receipt").is_some());
    }

    #[test]
    fn hashes_are_keyed() {
        let (one, two) = ([1u8; 32], [2u8; 32]);
        assert_eq!(ledger_hash(&one, "u-1"), ledger_hash(&one, "u-1"));
        assert_ne!(ledger_hash(&one, "u-1"), ledger_hash(&two, "u-1"));
        assert!(!ledger_hash(&one, "u-1").contains("u-1"));
    }
}

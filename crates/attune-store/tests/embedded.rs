//! The conformance suite against the embedded (fjall) backend.

use std::sync::Arc;

use attune_store::{EmbeddedOptions, EmbeddedStore, Store, conformance::Harness};

struct Embedded {
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
    options: EmbeddedOptions,
}

impl Harness for Embedded {
    fn store(&mut self) -> Arc<dyn Store> {
        if self.store.is_none() {
            self.store = Some(Arc::new(EmbeddedStore::open_with(self.dir.path(), self.options).expect("open")));
        }
        Arc::clone(self.store.as_ref().expect("opened"))
    }

    fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = None;
        self.store()
    }
}

attune_store::conformance_tests!(Embedded {
    dir: tempfile::tempdir().expect("tempdir"),
    store: None,
    options: EmbeddedOptions::default()
});

/// The same suite with the store opened for a bulk load (deduplication from memory while the
/// store started out empty).
mod bulk_load {
    use super::*;

    attune_store::conformance_tests!(Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
        store: None,
        options: EmbeddedOptions { bulk_load: true }
    });
}

/// Every file under `dir` that holds `needle`, by path.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// After `purge`, the bytes of deleted events and records are in no file of the data directory:
/// not in the tables (compacted), not in the journal (sealed and deleted).
#[test]
fn purge_leaves_no_deleted_bytes_on_disk() {
    use attune_store::{NewEvent, Table};
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "person-9f3c2a-secret";
    {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let events = (0..200)
            .map(|i| NewEvent {
                id: format!("ev-{i}"),
                subject: if i % 2 == 0 { secret.to_owned() } else { format!("other-{i}") },
                ts_ms: i,
                expires_ms: i + 1000,
                payload: format!("payload for {}", if i % 2 == 0 { secret } else { "someone" }).into_bytes(),
            })
            .collect();
        store.append_events(events).expect("append");
        store.put(Table::Consent, secret, b"{}").expect("put");
        store.put(Table::Audit, "a-1", format!("target {secret}").as_bytes()).expect("put");
        assert!(!files_holding(dir.path(), secret.as_bytes()).is_empty(), "the test looks for bytes that are there");
        store.delete_subject_events(secret).expect("delete");
        store.delete(Table::Consent, secret).expect("delete");
        store.delete(Table::Audit, "a-1").expect("delete");
        store.purge().expect("purge");
        assert_eq!(files_holding(dir.path(), secret.as_bytes()), Vec::<String>::new());
        assert_eq!(store.event_count().expect("count"), 100);
    }
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.event_count().expect("count"), 100);
    assert_eq!(files_holding(dir.path(), secret.as_bytes()), Vec::<String>::new());
}

/// The same after a bulk load: events ingested as table files (no journal) leave no bytes behind
/// once deleted and purged, even when the bulk load was followed by normal appends.
#[test]
fn purge_reaches_bulk_loaded_events() {
    use attune_store::{EmbeddedOptions, NewEvent};
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "bulk-person-7d1e-secret";
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions { bulk_load: true }).expect("open");
    for round in 0..2 {
        let events = (0..5000)
            .map(|i| NewEvent {
                id: format!("bulk-{round}-{i}"),
                subject: if i % 50 == 0 { secret.to_owned() } else { format!("other-{i}") },
                ts_ms: i,
                expires_ms: i + 1000,
                payload: format!("payload for {}", if i % 50 == 0 { secret } else { "someone" }).into_bytes(),
            })
            .collect();
        store.append_events_bulk(events).expect("bulk append");
    }
    store
        .append_events(vec![NewEvent {
            id: "normal-1".into(),
            subject: secret.into(),
            ts_ms: 1,
            expires_ms: 1001,
            payload: secret.as_bytes().to_vec(),
        }])
        .expect("append");
    assert!(!files_holding(dir.path(), secret.as_bytes()).is_empty(), "the test looks for bytes that are there");
    assert_eq!(store.delete_subject_events(secret).expect("delete"), 2 * 100 + 1);
    store.purge().expect("purge");
    assert_eq!(files_holding(dir.path(), secret.as_bytes()), Vec::<String>::new());
    assert_eq!(store.event_count().expect("count"), 2 * 4900);
}

/// A record written twice, deleted and purged stays deleted (the purge must not bring an older
/// version back).
#[test]
fn a_deleted_record_stays_deleted_through_a_purge() {
    use attune_store::Table;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    store.put(Table::Meta, "marker", b"1").expect("put");
    store.put(Table::Meta, "other", b"1").expect("put");
    assert!(store.delete(Table::Meta, "other").expect("delete"));
    store.purge().expect("purge");
    assert_eq!(store.get(Table::Meta, "other").expect("get"), None);
    store.put(Table::Meta, "marker", b"3").expect("put");
    store.put(Table::Meta, "marker", b"2").expect("put");
    store.put(Table::Meta, "marker", b"2").expect("put");
    assert!(store.delete(Table::Meta, "marker").expect("delete"));
    store.purge().expect("purge");
    assert_eq!(store.get(Table::Meta, "marker").expect("get"), None);
}

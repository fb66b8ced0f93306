//! The conformance suite: written once over `&dyn Store`, run against every backend.
//!
//! A backend's test file implements [`Harness`] and calls [`conformance_tests!`](crate::conformance_tests)
//! to get one `#[test]` per case. A case panics (via `assert!`) when the backend misbehaves.

use std::{collections::BTreeMap, sync::Arc};

use crate::{Appended, NewEvent, Store, Table};

/// Opens a fresh store, and reopens the same data as after a restart.
pub trait Harness {
    /// The store under test (opened on first call, then the same one).
    fn store(&mut self) -> Arc<dyn Store>;
    /// Drops the current store and opens the same data again, as a restarted server would.
    fn reopen(&mut self) -> Arc<dyn Store>;
}

/// A conformance case: its name and the check.
pub type Case = (&'static str, fn(&mut dyn Harness));

/// Every case, by name.
pub const CASES: &[Case] = &[
    ("append_and_scan_in_order", append_and_scan_in_order),
    ("duplicates_change_nothing", duplicates_change_nothing),
    ("events_survive_reopen", events_survive_reopen),
    ("subject_index", subject_index),
    ("delete_by_subject_and_seq", delete_by_subject_and_seq),
    ("retention_by_expiry", retention_by_expiry),
    ("records_crud_and_prefix_scan", records_crud_and_prefix_scan),
    ("records_match_a_model_across_restarts", records_match_a_model_across_restarts),
    ("concurrent_appends_share_commits", concurrent_appends_share_commits),
    ("purge_keeps_what_is_live", purge_keeps_what_is_live),
    ("bulk_appends_keep_the_contract", bulk_appends_keep_the_contract),
    ("payloads_are_replaced_in_place", payloads_are_replaced_in_place),
    ("concurrent_updates_lose_nothing", concurrent_updates_lose_nothing),
    ("reverse_scans_page_newest_first", reverse_scans_page_newest_first),
    ("counters_add_up_concurrently", counters_add_up_concurrently),
];

/// Generates one `#[test]` per conformance case; `$make` is an expression producing a [`Harness`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        #[test]
        fn conformance_suite() {
            for (name, case) in $crate::conformance::CASES {
                eprintln!("conformance case: {name}");
                let mut harness = $make;
                case(&mut harness);
            }
        }
    };
}

fn event(id: &str, subject: &str, ts_ms: i64) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        subject: subject.to_owned(),
        ts_ms,
        expires_ms: ts_ms + 1000,
        payload: format!("payload of {id}").into_bytes(),
    }
}

fn all_ids(store: &dyn Store) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan_events(0, &mut |row| {
            ids.push(row.id);
            true
        })
        .expect("scan");
    ids
}

/// Appended events come back in append order with their payloads; sequence numbers increase.
pub fn append_and_scan_in_order(harness: &mut dyn Harness) {
    let store = harness.store();
    let out = store.append_events(vec![event("e1", "u-1", 10), event("e2", "u-2", 5)]).unwrap();
    let out2 = store.append_events(vec![event("e3", "u-1", 20)]).unwrap();
    let seqs: Vec<u64> = out
        .iter()
        .chain(&out2)
        .map(|a| match a {
            Appended::New(seq) => *seq,
            Appended::Duplicate => panic!("not a duplicate"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase: {seqs:?}");
    let mut rows = Vec::new();
    store
        .scan_events(0, &mut |row| {
            rows.push(row);
            true
        })
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].id, "e2");
    assert_eq!(rows[1].subject, "u-2");
    assert_eq!(rows[1].ts_ms, 5);
    assert_eq!(rows[1].payload, b"payload of e2");
    let mut after = Vec::new();
    store
        .scan_events(seqs[0], &mut |row| {
            after.push(row.id);
            true
        })
        .unwrap();
    assert_eq!(after, ["e2", "e3"]);
    assert_eq!(store.event_count().unwrap(), 3);
    assert!(store.append_events(Vec::new()).unwrap().is_empty());
}

/// An id seen before, or twice in one call, is a duplicate and changes nothing.
pub fn duplicates_change_nothing(harness: &mut dyn Harness) {
    let store = harness.store();
    store.append_events(vec![event("d1", "u-1", 1)]).unwrap();
    let out = store.append_events(vec![event("d1", "u-9", 2), event("d2", "u-1", 3), event("d2", "u-1", 4)]).unwrap();
    assert_eq!(out[0], Appended::Duplicate);
    assert!(matches!(out[1], Appended::New(_)));
    assert_eq!(out[2], Appended::Duplicate);
    assert_eq!(all_ids(&*store), ["d1", "d2"]);
    assert_eq!(store.event_count().unwrap(), 2);
}

/// What was acknowledged is there after a restart, and new appends continue after it.
pub fn events_survive_reopen(harness: &mut dyn Harness) {
    let store = harness.store();
    let ids: Vec<String> = (0..500).map(|i| format!("r{i:04}")).collect();
    store.append_events(ids.iter().map(|id| event(id, "u-1", 1)).collect()).unwrap();
    store.put(Table::Items, "item-1", b"{}").unwrap();
    drop(store);
    let store = harness.reopen();
    assert_eq!(all_ids(&*store), ids);
    assert_eq!(store.event_count().unwrap(), 500);
    assert_eq!(store.get(Table::Items, "item-1").unwrap().as_deref(), Some(&b"{}"[..]));
    assert_eq!(store.append_events(vec![event("r0001", "u-1", 1)]).unwrap(), [Appended::Duplicate]);
    let out = store.append_events(vec![event("after", "u-1", 1)]).unwrap();
    let Appended::New(seq) = out[0] else { panic!("new") };
    let mut last_before = 0;
    store
        .scan_events(0, &mut |row| {
            if row.id == "r0499" {
                last_before = row.seq;
            }
            true
        })
        .unwrap();
    assert!(seq > last_before, "sequence continues after reopen");
}

/// Events of one subject, and only those, in order — subjects that share a prefix stay apart.
pub fn subject_index(harness: &mut dyn Harness) {
    let store = harness.store();
    store
        .append_events(vec![event("s1", "u-1", 1), event("s2", "u-10", 1), event("s3", "u-1", 2), event("s4", "u", 3)])
        .unwrap();
    let mut ids = Vec::new();
    store
        .subject_events("u-1", &mut |row| {
            ids.push(row.id);
            true
        })
        .unwrap();
    assert_eq!(ids, ["s1", "s3"]);
    let mut none = 0;
    store
        .subject_events("nobody", &mut |_| {
            none += 1;
            true
        })
        .unwrap();
    assert_eq!(none, 0);
}

/// Deleting by subject or by sequence removes the events and their ids (which may then be sent again).
pub fn delete_by_subject_and_seq(harness: &mut dyn Harness) {
    let store = harness.store();
    let out = store
        .append_events(vec![event("x1", "u-1", 1), event("x2", "u-2", 1), event("x3", "u-1", 2), event("x4", "u-3", 1)])
        .unwrap();
    assert_eq!(store.delete_subject_events("u-1").unwrap(), 2);
    assert_eq!(all_ids(&*store), ["x2", "x4"]);
    let Appended::New(seq_x4) = out[3] else { panic!("new") };
    assert_eq!(store.delete_events(&[seq_x4, 999_999]).unwrap(), 1);
    assert_eq!(all_ids(&*store), ["x2"]);
    assert_eq!(store.event_count().unwrap(), 1);
    drop(store);
    let store = harness.reopen();
    assert_eq!(all_ids(&*store), ["x2"], "deletes are durable");
    assert!(matches!(store.append_events(vec![event("x1", "u-1", 1)]).unwrap()[0], Appended::New(_)));
}

/// Retention deletes exactly the events whose expiry has passed.
pub fn retention_by_expiry(harness: &mut dyn Harness) {
    let store = harness.store();
    let mut old = event("old", "u-1", -5000);
    old.expires_ms = -4000;
    let mut edge = event("edge", "u-1", 0);
    edge.expires_ms = 100;
    let mut fresh = event("fresh", "u-1", 0);
    fresh.expires_ms = 101;
    store.append_events(vec![fresh, old, edge]).unwrap();
    assert_eq!(store.count_expired_events(100).unwrap(), 2);
    assert_eq!(store.delete_expired_events(100).unwrap(), 2);
    assert_eq!(all_ids(&*store), ["fresh"]);
    assert_eq!(store.count_expired_events(100).unwrap(), 0);
}

/// Records: put, get, overwrite, delete, and prefix scans that stay inside their table.
pub fn records_crud_and_prefix_scan(harness: &mut dyn Harness) {
    let store = harness.store();
    store.put(Table::Consent, "u-1", b"a").unwrap();
    store.put(Table::Consent, "u-1", b"b").unwrap();
    store
        .put_many(
            Table::Forgotten,
            &[("u-1\0i-2".into(), vec![]), ("u-1\0i-1".into(), vec![1]), ("u-10\0i-1".into(), vec![])],
        )
        .unwrap();
    store.put(Table::Preferences, "u-1", b"p").unwrap();
    assert_eq!(store.get(Table::Consent, "u-1").unwrap().as_deref(), Some(&b"b"[..]));
    assert_eq!(store.get(Table::Consent, "u-2").unwrap(), None);
    let mut keys = Vec::new();
    store
        .scan(Table::Forgotten, "u-1\0", &mut |key, _| {
            keys.push(key.to_owned());
            true
        })
        .unwrap();
    assert_eq!(keys, ["u-1\0i-1", "u-1\0i-2"]);
    let mut all = 0;
    store
        .scan(Table::Consent, "", &mut |_, _| {
            all += 1;
            true
        })
        .unwrap();
    assert_eq!(all, 1, "a scan never crosses into another table");
    assert!(store.delete(Table::Consent, "u-1").unwrap());
    assert!(!store.delete(Table::Consent, "u-1").unwrap());
    assert_eq!(store.get(Table::Consent, "u-1").unwrap(), None);
    assert_eq!(store.get(Table::Preferences, "u-1").unwrap().as_deref(), Some(&b"p"[..]));
}

/// `scan_rev` visits a prefix in descending key order, across pages (more keys than one page of
/// the PostgreSQL backend), stays inside its prefix and table, and stops when told.
pub fn reverse_scans_page_newest_first(harness: &mut dyn Harness) {
    let store = harness.store();
    let entries: Vec<(String, Vec<u8>)> = (0..2_500).map(|i| (format!("t\0{i:06}"), vec![(i % 251) as u8])).collect();
    store.put_many(Table::Decisions, &entries).unwrap();
    store
        .put_many(Table::Decisions, &[("t".into(), vec![]), ("t\x01".into(), vec![]), ("s\0x".into(), vec![])])
        .unwrap();
    store.put(Table::Flags, "t\0999999", b"other table").unwrap();
    let mut seen = Vec::new();
    store
        .scan_rev(Table::Decisions, "t\0", &mut |key, value| {
            seen.push((key.to_owned(), value.to_vec()));
            true
        })
        .unwrap();
    let expected: Vec<(String, Vec<u8>)> = entries.iter().rev().cloned().collect();
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "descending, every key once, nothing outside the prefix");
    let mut first = Vec::new();
    store
        .scan_rev(Table::Decisions, "t\0", &mut |key, _| {
            first.push(key.to_owned());
            first.len() < 3
        })
        .unwrap();
    assert_eq!(first, ["t\x00002499", "t\x00002498", "t\x00002497"]);
    let mut all = 0;
    store
        .scan_rev(Table::Decisions, "", &mut |_, _| {
            all += 1;
            true
        })
        .unwrap();
    assert_eq!(all, 2_503, "an empty prefix is the whole table, and only it");
}

/// Random puts and deletes, with restarts, always agree with a `BTreeMap`.
pub fn records_match_a_model_across_restarts(harness: &mut dyn Harness) {
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut store = harness.store();
    // A fixed-seed linear congruential sequence keeps this deterministic without an RNG crate.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for step in 0..400 {
        let key = format!("k{}", next() % 40);
        match next() % 10 {
            0..=5 => {
                let value = format!("v{step}").into_bytes();
                store.put(Table::Slots, &key, &value).unwrap();
                model.insert(key.clone(), value);
            }
            6..=8 => {
                let existed = store.delete(Table::Slots, &key).unwrap();
                assert_eq!(existed, model.remove(&key).is_some());
            }
            _ => {
                drop(store);
                store = harness.reopen();
            }
        }
        assert_eq!(store.get(Table::Slots, &key).unwrap(), model.get(&key).cloned());
    }
    let mut scanned = BTreeMap::new();
    store
        .scan(Table::Slots, "", &mut |key, value| {
            scanned.insert(key.to_owned(), value.to_vec());
            true
        })
        .unwrap();
    assert_eq!(scanned, model);
}

/// Appends from many threads at once: all stored, none lost, none doubled.
pub fn concurrent_appends_share_commits(harness: &mut dyn Harness) {
    let store = harness.store();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for batch in 0..10 {
                    let events = (0..50).map(|i| event(&format!("c{t}-{batch}-{i}"), "u-1", 1)).collect();
                    let out = store.append_events(events).unwrap();
                    assert!(out.iter().all(|a| matches!(a, Appended::New(_))));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(store.event_count().unwrap(), 8 * 10 * 50);
    let ids = all_ids(&*store);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4000);
}

/// `update` is an atomic read-modify-write: threads adding to one counter concurrently (each on
/// its own connection, as servers sharing a database would) lose no increment, and the sum
/// survives a restart.
pub fn concurrent_updates_lose_nothing(harness: &mut dyn Harness) {
    let store = harness.store();
    let add = |store: &dyn Store, key: &str, n: u64| {
        store
            .update(Table::Meta, key, &mut |old| {
                let before = old.map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().expect("8 bytes")));
                (before + n).to_le_bytes().to_vec()
            })
            .unwrap()
    };
    assert_eq!(add(&*store, "counter", 5), 5u64.to_le_bytes().to_vec(), "a missing record starts from None");
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..40 {
                    add(&*store, "counter", 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let read = |store: &dyn Store| {
        store.get(Table::Meta, "counter").unwrap().map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    assert_eq!(read(&*store), Some(5 + 6 * 40));
    drop(store);
    let store = harness.reopen();
    assert_eq!(read(&*store), Some(245));
}

/// `purge` makes deletions physical and keeps everything live, across a restart. (Whether the
/// deleted bytes are really gone from the files is backend-specific: the embedded backend's test
/// scans its data directory.)
pub fn purge_keeps_what_is_live(harness: &mut dyn Harness) {
    let store = harness.store();
    store.append_events(vec![event("p1", "u-gone", 1), event("p2", "u-kept", 2), event("p3", "u-gone", 3)]).unwrap();
    store.put(Table::Consent, "u-gone", b"c").unwrap();
    store.put(Table::Consent, "u-kept", b"k").unwrap();
    assert_eq!(store.delete_subject_events("u-gone").unwrap(), 2);
    assert!(store.delete(Table::Consent, "u-gone").unwrap());
    store.purge().unwrap();
    assert_eq!(all_ids(&*store), ["p2"]);
    assert_eq!(store.get(Table::Consent, "u-kept").unwrap().as_deref(), Some(&b"k"[..]));
    assert_eq!(store.get(Table::Consent, "u-gone").unwrap(), None);
    store.purge().unwrap();
    drop(store);
    let store = harness.reopen();
    assert_eq!(all_ids(&*store), ["p2"]);
    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.get(Table::Consent, "u-kept").unwrap().as_deref(), Some(&b"k"[..]));
    assert!(matches!(store.append_events(vec![event("p4", "u-new", 4)]).unwrap()[0], Appended::New(_)));
}

/// A bulk append (large enough for a backend's bulk path) keeps `append_events`' contract:
/// duplicates against stored events and within the call, sequence order, every index, interleaving
/// with normal appends, and a restart.
pub fn bulk_appends_keep_the_contract(harness: &mut dyn Harness) {
    let store = harness.store();
    store.append_events(vec![event("k-0", "u-0", 0), event("before", "u-x", 0)]).unwrap();
    let n = 6000;
    let mut events: Vec<NewEvent> = (0..n).map(|i| event(&format!("k-{i}"), &format!("u-{}", i % 7), i)).collect();
    events.push(event("k-17", "u-3", 17));
    let out = store.append_events_bulk(events).unwrap();
    assert_eq!(out.len(), n as usize + 1);
    assert_eq!(out[0], Appended::Duplicate, "stored before");
    assert_eq!(out[n as usize], Appended::Duplicate, "repeated within the call");
    let seqs: Vec<u64> =
        out.iter().filter_map(|a| if let Appended::New(seq) = a { Some(*seq) } else { None }).collect();
    assert_eq!(seqs.len(), n as usize - 1);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase in call order");
    let after = store.append_events(vec![event("after", "u-x", 1), event("k-5", "u-5", 5)]).unwrap();
    let Appended::New(after_seq) = after[0] else { panic!("new") };
    assert!(after_seq > *seqs.last().unwrap());
    assert_eq!(after[1], Appended::Duplicate, "a bulk-appended id is known to normal appends");
    let again = store.append_events_bulk((0..n).map(|i| event(&format!("k-{i}"), "u-0", i)).collect()).unwrap();
    assert!(again.iter().all(|a| *a == Appended::Duplicate), "a second bulk append of the same ids");

    let check = |store: &dyn Store| {
        assert_eq!(store.event_count().unwrap(), n as u64 + 2);
        let ids = all_ids(store);
        assert_eq!(ids.len(), n as usize + 2);
        assert_eq!((ids[0].as_str(), ids[1].as_str(), ids[2].as_str()), ("k-0", "before", "k-1"));
        assert_eq!(ids.last().map(String::as_str), Some("after"));
        let mut of_u3 = Vec::new();
        store
            .subject_events("u-3", &mut |row| {
                of_u3.push(row.ts_ms);
                true
            })
            .unwrap();
        assert_eq!(of_u3, (0..n).filter(|i| i % 7 == 3).collect::<Vec<_>>(), "the subject index, in order");
        // ts ≤ 99: k-0 and `before` (ts 0), `after` (ts 1), k-1 … k-99.
        assert_eq!(store.count_expired_events(1000 + 99).unwrap(), 102, "the expiry index");
    };
    check(&*store);
    drop(store);
    let store = harness.reopen();
    check(&*store);
    assert_eq!(store.delete_subject_events("u-3").unwrap(), (0..n).filter(|i| i % 7 == 3).count() as u64);
    // Of those, u-3 had k-3, k-10, …, k-94 (14), deleted just before.
    assert_eq!(store.delete_expired_events(1000 + 99).unwrap(), 102 - 14);
    assert!(matches!(store.append_events(vec![event("k-3", "u-3", 3)]).unwrap()[0], Appended::New(_)));
}

/// Replacing payloads keeps each event's number, id, subject and times (and its place in the
/// indexes), ignores unknown numbers, and lasts across a restart.
pub fn payloads_are_replaced_in_place(harness: &mut dyn Harness) {
    let store = harness.store();
    let out = store.append_events(vec![event("r1", "u-1", 1), event("r2", "u-2", 2), event("r3", "u-1", 3)]).unwrap();
    let seqs: Vec<u64> = out.iter().map(|a| if let Appended::New(seq) = a { *seq } else { panic!("new") }).collect();
    assert_eq!(store.replace_payloads(&[(seqs[2], b"stripped".to_vec()), (999_999, b"x".to_vec())]).unwrap(), 1);
    let check = |store: &dyn Store| {
        let mut rows = Vec::new();
        store
            .subject_events("u-1", &mut |row| {
                rows.push(row);
                true
            })
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].seq, rows[1].id.as_str(), rows[1].ts_ms), (seqs[2], "r3", 3));
        assert_eq!(rows[1].payload, b"stripped");
        assert_eq!(rows[0].payload, b"payload of r1");
        let mut after = Vec::new();
        store
            .scan_events(seqs[1], &mut |row| {
                after.push(row.id);
                true
            })
            .unwrap();
        assert_eq!(after, ["r3"], "no new number: a reader past r2 sees it once");
        assert_eq!(store.event_count().unwrap(), 3);
        assert_eq!(store.append_events(vec![event("r3", "u-1", 3)]).unwrap(), [Appended::Duplicate]);
    };
    check(&*store);
    drop(store);
    let store = harness.reopen();
    check(&*store);
    assert_eq!(store.replace_payloads(&[]).unwrap(), 0);
}

/// `add_counters` adds (repeated keys add up, absent counters start at 0), survives a restart,
/// and loses no count when threads add to the same counters at once.
pub fn counters_add_up_concurrently(harness: &mut dyn Harness) {
    let store = harness.store();
    let value = |store: &dyn Store, key: &str| {
        store.get(Table::Aggregates, key).unwrap().map(|bytes| crate::counter_value(&bytes).unwrap())
    };
    store.add_counters(Table::Aggregates, &[]).unwrap();
    store.add_counters(Table::Aggregates, &[("a".into(), 2), ("b".into(), 1), ("a".into(), 3)]).unwrap();
    assert_eq!((value(&*store, "a"), value(&*store, "b"), value(&*store, "c")), (Some(5), Some(1), None));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    // Keys in both orders, so that a backend locking rows must not deadlock.
                    let counts = if (t + i) % 2 == 0 {
                        vec![("a".to_owned(), 1), ("z".to_owned(), 2)]
                    } else {
                        vec![("z".to_owned(), 2), ("a".to_owned(), 1)]
                    };
                    store.add_counters(Table::Aggregates, &counts).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    drop(store);
    let store = harness.reopen();
    assert_eq!((value(&*store, "a"), value(&*store, "z")), (Some(5 + 200), Some(400)));
}

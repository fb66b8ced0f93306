//! The conformance suite against the PostgreSQL backend, plus what only a shared database has:
//! several stores ("servers") on one schema, commit-ordered sequence numbers, concurrent
//! migrations, the training lock and monthly partitions.
//!
//! Needs `ATTUNE_TEST_POSTGRES=postgres://...` (`scripts/pg-test-cluster.sh` starts a throwaway
//! cluster and prints it). Without it the tests say they were skipped, except in CI (`CI` set),
//! where they fail. Each test works in a schema of its own, dropped at the end.

use std::{
    collections::BTreeSet,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use attune_store::{Appended, NewEvent, PostgresStore, Store, Table, conformance::Harness};

/// A fresh schema in the test database; dropped (with everything in it) on drop.
struct TestSchema {
    base_url: String,
    name: String,
    /// The URL that puts a store in this schema.
    url: String,
}

impl TestSchema {
    /// A new schema, or `None` when the tests are to be skipped.
    fn create() -> Option<TestSchema> {
        let base_url = database_url()?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("attune_t{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        admin(&base_url).batch_execute(&format!("CREATE SCHEMA {name}")).expect("create the test schema");
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-csearch_path%3D{name}");
        Some(TestSchema { base_url, name, url })
    }

    fn connect(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).expect("connect")
    }

    /// A plain client in the schema, to look at what the store did.
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect a plain client")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.base_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn database_url() -> Option<String> {
    match std::env::var("ATTUNE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ATTUNE_TEST_POSTGRES is not set, and in CI the PostgreSQL tests must run: \
                 export ATTUNE_TEST_POSTGRES=$(bash scripts/pg-test-cluster.sh | tail -n 1)"
            );
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set ATTUNE_TEST_POSTGRES=postgres://... (scripts/pg-test-cluster.sh starts one)"
            );
            None
        }
    }
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect to ATTUNE_TEST_POSTGRES")
}

struct Pg {
    // Declared first so that the store's connections close before the schema is dropped.
    store: Option<Arc<dyn Store>>,
    schema: TestSchema,
}

impl Harness for Pg {
    fn store(&mut self) -> Arc<dyn Store> {
        if self.store.is_none() {
            self.store = Some(Arc::new(self.schema.connect()));
        }
        Arc::clone(self.store.as_ref().expect("connected"))
    }

    fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = None;
        self.store()
    }
}

#[test]
fn conformance_suite() {
    if database_url().is_none() {
        return;
    }
    for (name, case) in attune_store::conformance::CASES {
        eprintln!("conformance case: {name}");
        let mut harness = Pg { store: None, schema: TestSchema::create().expect("database URL checked above") };
        case(&mut harness);
    }
}

fn event(id: &str, subject: &str, ts_ms: i64, expires_ms: i64) -> NewEvent {
    NewEvent { id: id.to_owned(), subject: subject.to_owned(), ts_ms, expires_ms, payload: id.as_bytes().to_vec() }
}

fn ids_of(store: &dyn Store) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan_events(0, &mut |row| {
            ids.push(row.id);
            true
        })
        .unwrap();
    ids
}

/// 2026-11-01T00:00:00Z.
const NOV_2026: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;

/// Two servers on one database: what either writes, both read, and ids dedup across them.
#[test]
fn two_stores_share_one_database() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let (a, b) = (schema.connect(), schema.connect());
    a.append_events(vec![event("a1", "u-1", NOV_2026, NOV_2026 + DAY)]).unwrap();
    assert_eq!(b.append_events(vec![event("a1", "u-1", NOV_2026, NOV_2026 + DAY)]).unwrap(), [Appended::Duplicate]);
    b.append_events(vec![event("b1", "u-1", NOV_2026, NOV_2026 + DAY)]).unwrap();
    assert_eq!(ids_of(&a), ["a1", "b1"]);
    assert_eq!(ids_of(&b), ["a1", "b1"]);
    assert_eq!(a.event_count().unwrap(), 2);
    a.put(Table::Models, "current", b"v2").unwrap();
    assert_eq!(b.get(Table::Models, "current").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(b.delete_subject_events("u-1").unwrap(), 2);
    assert_eq!(a.event_count().unwrap(), 0);
    assert_eq!(a.backend(), "postgres");
    assert!(a.disk_bytes() > 0);
}

/// Sequence numbers follow commit order across servers: a reader that tails the log with
/// `scan_events(last_seen)` while six writers on two stores append never misses an event.
#[test]
fn a_tailing_reader_misses_nothing() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let stores = [Arc::new(schema.connect()), Arc::new(schema.connect())];
    let (n_writers, n_batches, batch) = (6, 30, 20);
    let writers: Vec<_> = (0..n_writers)
        .map(|w| {
            let store = Arc::clone(&stores[w % 2]);
            std::thread::spawn(move || {
                for b in 0..n_batches {
                    let events = (0..batch)
                        .map(|i| {
                            event(&format!("w{w}-{b}-{i}"), &format!("u-{i}"), NOV_2026 + i as i64, NOV_2026 + DAY)
                        })
                        .collect();
                    store.append_events(events).unwrap();
                }
            })
        })
        .collect();
    let reader = Arc::clone(&stores[1]);
    let mut seen = BTreeSet::new();
    let mut last_seq = 0u64;
    let expected = n_writers * n_batches * batch;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while seen.len() < expected && std::time::Instant::now() < deadline {
        reader
            .scan_events(last_seq, &mut |row| {
                assert!(row.seq > last_seq);
                last_seq = row.seq;
                assert!(seen.insert(row.id), "each event is seen once");
                true
            })
            .unwrap();
    }
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(seen.len(), expected, "the tailing reader saw every event");
    assert_eq!(ids_of(&*reader).len(), expected);
}

/// Servers starting at once on an empty schema migrate it once.
#[test]
fn concurrent_starts_migrate_once() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let url = schema.url.clone();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::connect(&url).map(|store| store.schema_version().unwrap()))
        })
        .collect();
    for start in starts {
        assert_eq!(start.join().unwrap().unwrap(), attune_store::postgres::SCHEMA_VERSION);
    }
    let mut client = schema.client();
    let n_rows: i64 = client.query_one("SELECT count(*) FROM attune_schema_version", &[]).unwrap().get(0);
    assert_eq!(n_rows, attune_store::postgres::SCHEMA_VERSION as i64);
    // And a restart changes nothing.
    drop(schema.connect());
    let n_rows: i64 = client.query_one("SELECT count(*) FROM attune_schema_version", &[]).unwrap().get(0);
    assert_eq!(n_rows, attune_store::postgres::SCHEMA_VERSION as i64);
}

/// A database migrated by a newer build is refused, and so is a search_path with no schema.
#[test]
fn refuses_newer_schema_and_missing_schema() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    drop(schema.connect());
    schema
        .client()
        .execute("INSERT INTO attune_schema_version (version, description) VALUES (9999, 'future')", &[])
        .unwrap();
    let err = PostgresStore::connect(&schema.url).err().expect("a newer schema is refused");
    assert!(err.to_string().contains("newer than this build"), "{err}");

    let missing = schema.url.replace(&schema.name, "attune_no_such_schema");
    let err = PostgresStore::connect(&missing).err().expect("no schema");
    assert!(err.to_string().contains("search_path"), "{err}");
}

/// Exactly one holder of the training lock at a time; drop or a dead connection releases it.
#[test]
fn training_lock_is_exclusive() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let (a, b) = (schema.connect(), schema.connect());
    let mut held = a.try_training_lock().unwrap().expect("free at first");
    assert!(held.is_held());
    assert!(b.try_training_lock().unwrap().is_none(), "held by a");
    assert!(a.try_training_lock().unwrap().is_none(), "held even against its own process");
    drop(held);
    let mut held = b.try_training_lock().unwrap().expect("released on drop");

    // Another schema is another deployment: its lock is its own.
    let other = TestSchema::create().expect("database URL checked above");
    assert!(other.connect().try_training_lock().unwrap().is_some());

    // The holder's connection dies (a crashed server): the lock is free and the guard knows.
    let mut client = schema.client();
    let n_killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND objid = 3 AND classid = hashtext(current_schema())::oid \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n_killed, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut reacquired = None;
    while reacquired.is_none() && std::time::Instant::now() < deadline {
        reacquired = a.try_training_lock().unwrap();
    }
    assert!(reacquired.is_some(), "a dead holder's lock is free");
    assert!(!held.is_held());
}

/// Two servers on one database add to the same counters at once (the engine's daily aggregates,
/// `add_aggregates`): every count arrives.
#[test]
fn two_servers_lose_no_count() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let servers: Vec<Arc<PostgresStore>> = (0..2).map(|_| Arc::new(schema.connect())).collect();
    let threads: Vec<_> = servers
        .iter()
        .flat_map(|server| (0..3).map(move |t| (Arc::clone(server), t)))
        .map(|(server, t)| {
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let mut counts =
                        vec![("2026-12-01\0view".to_owned(), 1), (format!("2026-12-0{}\0click", 1 + i % 3), 2)];
                    if t % 2 == 1 {
                        counts.reverse();
                    }
                    server.add_counters(Table::Aggregates, &counts).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let value =
        |key: &str| attune_store::counter_value(&servers[0].get(Table::Aggregates, key).unwrap().unwrap()).unwrap();
    assert_eq!(value("2026-12-01\0view"), 2 * 3 * 100);
    let clicks: u64 = (1..=3).map(|day| value(&format!("2026-12-0{day}\0click"))).sum();
    assert_eq!(clicks, 2 * 3 * 100 * 2);
}

/// Monthly partitions appear on demand; times outside the window go to the default partition;
/// retention drops fully expired months whole, and a server whose list of partitions went stale
/// still appends into a dropped month.
#[test]
fn partitions_by_month_and_retention_drops_them() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let (a, b) = (schema.connect(), schema.connect());
    let oct = NOV_2026 - 31 * DAY;
    a.append_events(vec![
        event("oct-1", "u-1", oct, NOV_2026 + DAY),
        event("oct-2", "u-2", oct + DAY, NOV_2026 + 2 * DAY),
        event("nov-1", "u-1", NOV_2026, NOV_2026 + DAY),
        event("nov-2", "u-1", NOV_2026 + DAY, NOV_2026 + 60 * DAY),
        event("old", "u-3", -5 * DAY, NOV_2026 + DAY),
    ])
    .unwrap();
    assert_eq!(a.event_partitions().unwrap(), ["events_y2026m10", "events_y2026m11", "events_default"]);
    assert_eq!(a.count_expired_events(NOV_2026 + 2 * DAY).unwrap(), 4);

    // October has wholly expired: its partition goes; November keeps one live event.
    assert_eq!(b.delete_expired_events(NOV_2026 + 2 * DAY).unwrap(), 4);
    assert_eq!(b.event_partitions().unwrap(), ["events_y2026m11", "events_default"]);
    assert_eq!(ids_of(&a), ["nov-2"]);
    assert_eq!(a.event_count().unwrap(), 1);
    // The dropped events' ids went with them: they may be sent again.
    let again = a.append_events(vec![event("oct-1", "u-1", oct, NOV_2026 + 90 * DAY)]).unwrap();
    assert!(matches!(again[0], Appended::New(_)), "a believed October existed; it was recreated");
    assert_eq!(a.event_partitions().unwrap(), ["events_y2026m10", "events_y2026m11", "events_default"]);
    assert_eq!(ids_of(&b), ["nov-2", "oct-1"]);
    assert_eq!(b.event_count().unwrap(), 2);

    // A month whose events were all deleted is dropped once it is over.
    assert_eq!(a.delete_subject_events("u-1").unwrap(), 2);
    assert_eq!(a.delete_expired_events(NOV_2026 + 60 * DAY).unwrap(), 0);
    assert_eq!(a.event_partitions().unwrap(), ["events_default"]);
    assert_eq!(a.event_count().unwrap(), 0);
}

/// Big batches, one record put twice in one `put_many`, and keys with NUL and high bytes.
#[test]
fn big_batches_and_awkward_keys() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let store = schema.connect();
    let events: Vec<_> = (0..25_000).map(|i| event(&format!("big-{i}"), "u-1", NOV_2026 + i, NOV_2026 + DAY)).collect();
    let out = store.append_events(events).unwrap();
    assert!(out.iter().all(|a| matches!(a, Appended::New(_))));
    let mut n_rows = 0;
    let mut previous = 0;
    store
        .subject_events("u-1", &mut |row| {
            assert!(row.seq > previous);
            previous = row.seq;
            n_rows += 1;
            true
        })
        .unwrap();
    assert_eq!(n_rows, 25_000, "subject scans page through everything");

    store.put_many(Table::Items, &[("k".into(), b"first".to_vec()), ("k".into(), b"last".to_vec())]).unwrap();
    assert_eq!(store.get(Table::Items, "k").unwrap().as_deref(), Some(&b"last"[..]));
    let keys: Vec<(String, Vec<u8>)> = (0..2_500).map(|i| (format!("p\u{ff}\0{i:05}"), vec![])).collect();
    store.put_many(Table::Forgotten, &keys).unwrap();
    store.put(Table::Forgotten, "p\u{ff}", b"").unwrap();
    store.put(Table::Forgotten, "q", b"").unwrap();
    let mut scanned = Vec::new();
    store
        .scan(Table::Forgotten, "p\u{ff}\0", &mut |key, _| {
            scanned.push(key.to_owned());
            true
        })
        .unwrap();
    assert_eq!(scanned, keys.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(), "pages in byte order");
}

/// After `purge`, the bytes of deleted events and of deleted or overwritten records are in no
/// page of any table, TOAST table or index of the schema (read with the `pageinspect` extension,
/// which needs a superuser: the throwaway cluster's `postgres`).
#[test]
fn purge_leaves_no_deleted_bytes_in_any_page() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let store = schema.connect();
    let secrets: [&[u8]; 4] = [b"u-erase-7f3a", b"ev-erase-7f3a", b"payload-erase-7f3a", b"consent-erase-7f3a"];
    let mut gone = event("ev-erase-7f3a", "u-erase-7f3a", NOV_2026, NOV_2026 + DAY);
    gone.payload = b"payload-erase-7f3a".to_vec();
    store.append_events(vec![gone, event("kept-1", "u-kept", NOV_2026, NOV_2026 + DAY)]).unwrap();
    store.put(Table::Consent, "u-erase-7f3a", b"consent-erase-7f3a").unwrap();
    store.put(Table::Consent, "u-kept", b"consent-erase-7f3a").unwrap();
    store.put(Table::Consent, "u-kept", b"overwritten").unwrap();
    assert_eq!(store.delete_subject_events("u-erase-7f3a").unwrap(), 1);
    assert!(store.delete(Table::Consent, "u-erase-7f3a").unwrap());

    let mut client = schema.client();
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS attune_pageinspect; \
             CREATE EXTENSION IF NOT EXISTS pageinspect SCHEMA attune_pageinspect",
        )
        .expect("pageinspect (PostgreSQL's contrib modules, superuser)");
    // Every table of the schema, its TOAST table, and all their indexes.
    let pages_holding = |client: &mut postgres::Client, needle: &[u8]| -> Vec<String> {
        let rows = client
            .query(
                "WITH tables AS (
                     SELECT oid FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace
                     UNION ALL
                     SELECT reltoastrelid FROM pg_class
                     WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace AND reltoastrelid <> 0
                 ), rels AS (
                     SELECT oid FROM tables UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM tables)
                 )
                 SELECT oid::regclass::text || ' block ' || blkno
                 FROM rels, generate_series(0, pg_relation_size(oid) / 8192 - 1) AS blkno
                 WHERE position($1::bytea IN attune_pageinspect.get_raw_page(oid::regclass::text, blkno)) > 0",
                &[&needle],
            )
            .unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    };
    for secret in secrets {
        assert!(
            !pages_holding(&mut client, secret).is_empty(),
            "deleted rows linger before a purge: the check can see them"
        );
    }
    store.purge().unwrap();
    for secret in secrets {
        assert_eq!(pages_holding(&mut client, secret), Vec::<String>::new(), "{}", String::from_utf8_lossy(secret));
    }
    assert_eq!(ids_of(&store), ["kept-1"]);
    assert_eq!(store.get(Table::Consent, "u-kept").unwrap().as_deref(), Some(&b"overwritten"[..]));
}

/// A store on a streaming replica reads what the primary wrote and refuses to write. Needs
/// `ATTUNE_TEST_POSTGRES_REPLICA`: the same database on a hot standby of `ATTUNE_TEST_POSTGRES`
/// (`docs/scale-out.md` shows how to start one); skipped without it, in CI too.
#[test]
fn a_read_replica_serves_reads() {
    let replica_base = match std::env::var("ATTUNE_TEST_POSTGRES_REPLICA") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set ATTUNE_TEST_POSTGRES_REPLICA=postgres://... (a hot standby of ATTUNE_TEST_POSTGRES)"
            );
            return;
        }
    };
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let primary = schema.connect();
    primary.append_events(vec![event("r1", "u-1", NOV_2026, NOV_2026 + DAY)]).unwrap();
    primary.put(Table::Items, "i-1", b"item").unwrap();
    let separator = if replica_base.contains('?') { '&' } else { '?' };
    let replica_url = format!("{replica_base}{separator}options=-csearch_path%3D{}", schema.name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let replica = loop {
        match PostgresStore::connect_read_only(&replica_url) {
            Ok(store) if store.event_count().unwrap() == 1 => break store,
            _ if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
            other => panic!("the replica never caught up: {:?}", other.err()),
        }
    };
    assert_eq!(ids_of(&replica), ["r1"]);
    assert_eq!(replica.get(Table::Items, "i-1").unwrap().as_deref(), Some(&b"item"[..]));
    let err = replica.put(Table::Items, "i-2", b"x").unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(replica.append_events(vec![event("r2", "u-1", NOV_2026, NOV_2026 + DAY)]).is_err());
    // The primary itself is refused as a read-only target of an unmigrated schema.
    let empty = TestSchema::create().expect("database URL checked above");
    let err = PostgresStore::connect_read_only(&empty.url).err().expect("not migrated");
    assert!(err.to_string().contains("no Attune schema"), "{err}");
}

/// Every server runs retention: sweeps at once on two stores drop each partition once, count
/// each event once, and neither fails.
#[test]
fn concurrent_retention_sweeps() {
    let Some(schema) = TestSchema::create() else {
        return;
    };
    let stores = [Arc::new(schema.connect()), Arc::new(schema.connect())];
    // Twelve months of 2025, 50 events each, all expired by 2026; plus one live event.
    let jan_2025 = 1_735_689_600_000;
    let mut events: Vec<_> =
        (0..600).map(|i| event(&format!("m{i}"), "u-1", jan_2025 + (i / 50) * 31 * DAY, NOV_2026)).collect();
    events.push(event("live", "u-1", NOV_2026, NOV_2026 + 365 * DAY));
    stores[0].append_events(events).unwrap();
    assert_eq!(stores[0].event_partitions().unwrap().len(), 13 + 1);
    let sweeps: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = Arc::clone(store);
            std::thread::spawn(move || store.delete_expired_events(NOV_2026).unwrap())
        })
        .collect();
    let deleted: u64 = sweeps.into_iter().map(|sweep| sweep.join().unwrap()).sum();
    assert_eq!(deleted, 600);
    assert_eq!(stores[1].event_partitions().unwrap(), ["events_y2026m11", "events_default"]);
    assert_eq!(ids_of(&*stores[0]), ["live"]);
    assert_eq!(stores[0].event_count().unwrap(), 1);
}

//! Durable append throughput of the PostgreSQL store alone (no HTTP), against `ATTUNE_TEST_POSTGRES`.
//!
//! ```sh
//! export ATTUNE_TEST_POSTGRES=$(bash scripts/pg-test-cluster.sh | tail -n 1)
//! cargo bench -p attune-store --bench postgres_append -- [events] [batch] [threads]
//! ```
//! Defaults: 200,000 events of ~150 bytes in batches of 500 from 4 threads (the HTTP ingest bench's
//! batch size), 10,000 people, times spread over 60 days. Runs in a fresh schema, dropped afterwards
//! unless `ATTUNE_BENCH_KEEP` is set (to look at plans and sizes with psql).

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use attune_store::{Appended, NewEvent, PostgresStore, Store};

fn main() {
    let Ok(base_url) = std::env::var("ATTUNE_TEST_POSTGRES") else {
        eprintln!("skipped: set ATTUNE_TEST_POSTGRES=postgres://... (scripts/pg-test-cluster.sh starts one)");
        return;
    };
    // `cargo bench` passes `--bench`; keep only the numbers.
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|arg| arg.parse().ok()).collect();
    let n_events = numbers.first().copied().unwrap_or(200_000);
    let batch = numbers.get(1).copied().unwrap_or(500).max(1);
    let n_threads = numbers.get(2).copied().unwrap_or(4).max(1);

    let schema = format!("attune_bench_{}", std::process::id());
    let mut admin = postgres::Client::connect(&base_url, postgres::NoTls).expect("connect for setup");
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).expect("schema");
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-csearch_path%3D{schema}");
    let store = Arc::new(PostgresStore::connect(&url).expect("connect"));

    let batches: Vec<Vec<NewEvent>> = make_events(n_events).chunks(batch).map(<[NewEvent]>::to_vec).collect();
    let batches = Arc::new(std::sync::Mutex::new(batches));
    let stored = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..n_threads)
        .map(|_| {
            let (store, batches, stored) = (Arc::clone(&store), Arc::clone(&batches), Arc::clone(&stored));
            std::thread::spawn(move || {
                loop {
                    let Some(events) = batches.lock().expect("not poisoned").pop() else {
                        return;
                    };
                    let out = store.append_events(events).expect("append");
                    let n_new = out.iter().filter(|a| matches!(a, Appended::New(_))).count();
                    stored.fetch_add(n_new, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("append thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n_stored = stored.load(Ordering::Relaxed);
    assert_eq!(store.event_count().expect("count") as usize, n_stored);
    let disk_mib = store.disk_bytes() as f64 / (1 << 20) as f64;
    drop(store);
    if std::env::var_os("ATTUNE_BENCH_KEEP").is_none() {
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop schema");
    } else {
        eprintln!("kept schema {schema}");
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "postgres append: {n_stored} events, batches of {batch}, {n_threads} threads: {elapsed:.2} s, \
         {:.0} events/s durable, {disk_mib:.1} MiB",
        n_stored as f64 / elapsed
    )
    .expect("stdout");
}

/// Events shaped like the ingest path's: a 26-character id, a person, a time in the last 60 days
/// and a ~150-byte payload. A fixed-seed linear congruential sequence keeps runs comparable.
fn make_events(n: usize) -> Vec<NewEvent> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let now_ms: i64 = 1_793_491_200_000;
    (0..n)
        .map(|i| {
            let ts_ms = now_ms - ((next() << 31 | next()) % (60 * 86_400_000)) as i64;
            NewEvent {
                id: format!("01JBENCH{i:018}"),
                subject: format!("person-{}", next() % 10_000),
                ts_ms,
                expires_ms: ts_ms + 365 * 86_400_000,
                payload: (0..150).map(|_| (next() & 0xff) as u8).collect(),
            }
        })
        .collect()
}

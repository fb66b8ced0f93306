//! What the engine's integration tests share: engines on a fresh store (embedded, or a
//! PostgreSQL schema of their own when `ATTUNE_TEST_POSTGRES` is set), events, items,
//! experiments and decisions.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use attune_core::{Item, validate::RawEvent};
use attune_engine::{
    Engine, EngineConfig, IngestItem, ManualClock,
    decide::{DecideRequest, Decision, PlacementRequest},
    experiments::{Arm, Experiment, Policy},
};
use attune_store::{EmbeddedStore, PostgresStore, Store};
use serde_json::Value;

/// 2026-11-28T00:00:00Z.
pub const T0: i64 = 1_795_852_800_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

/// A store, its clock and a first engine on it; more engines on the same store stand for more
/// servers ([`Setup::open`]).
pub struct Setup {
    // Declared first: engines close before the store's directory or schema goes.
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    _place: Place,
}

enum Place {
    Directory(tempfile::TempDir),
    Postgres(PgSchema),
}

impl Setup {
    /// An engine on a fresh embedded store, its clock at `now_ms`.
    pub fn embedded(now_ms: i64) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        Setup::on(store, now_ms, Place::Directory(dir))
    }

    /// An engine on a fresh PostgreSQL schema, or `None` (the test is skipped) without
    /// `ATTUNE_TEST_POSTGRES`; under `CI` its absence fails the test.
    pub fn postgres(now_ms: i64) -> Option<Setup> {
        let schema = PgSchema::create()?;
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&schema.url).expect("connect"));
        Some(Setup::on(store, now_ms, Place::Postgres(schema)))
    }

    fn on(store: Arc<dyn Store>, now_ms: i64, place: Place) -> Setup {
        let clock = Arc::new(ManualClock::new(now_ms));
        let engine = Engine::open(Arc::clone(&store), clock.clone(), EngineConfig::default()).expect("engine");
        Setup { engine, store, clock, _place: place }
    }

    /// The first engine closed and opened again on the same store, as a restart would.
    pub fn restart(self) -> Setup {
        let Setup { engine, store, clock, _place } = self;
        drop(engine);
        let engine = Engine::open(Arc::clone(&store), clock.clone(), EngineConfig::default()).expect("reopen");
        Setup { engine, store, clock, _place }
    }

    /// Another engine on the same store and clock, as a second server would be.
    /// Without a cluster sync it knows the people stored when it opened.
    pub fn open(&self) -> Engine {
        Engine::open(Arc::clone(&self.store), self.clock.clone(), EngineConfig::default()).expect("another engine")
    }
}

/// A schema of its own in the `ATTUNE_TEST_POSTGRES` database, dropped with everything in it.
struct PgSchema {
    base_url: String,
    name: String,
    url: String,
}

impl PgSchema {
    fn create() -> Option<PgSchema> {
        let base_url = match std::env::var("ATTUNE_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "ATTUNE_TEST_POSTGRES is not set, and in CI the PostgreSQL tests must run"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped on PostgreSQL: set ATTUNE_TEST_POSTGRES=postgres://... (scripts/pg-test-cluster.sh)"
                );
                return None;
            }
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("attune_e{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        postgres::Client::connect(&base_url, postgres::NoTls)
            .expect("connect to ATTUNE_TEST_POSTGRES")
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create the test schema");
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-csearch_path%3D{name}");
        Some(PgSchema { base_url, name, url })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.base_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// An event of a known user about an item at `ts` (ms).
pub fn event(id: impl Into<String>, kind: &str, user: &str, item: &str, ts: i64, properties: Value) -> IngestItem {
    IngestItem::Raw(RawEvent {
        id: Some(id.into()),
        kind: Some(kind.into()),
        user: Some(user.into()),
        item: Some(item.into()),
        ts: Some(jiff::Timestamp::from_millisecond(ts).expect("a timestamp").to_string()),
        properties: properties.as_object().cloned().unwrap_or_default(),
        ..RawEvent::default()
    })
}

/// Ingests `events` in batches of 500; every one must be accepted.
pub fn ingest(engine: &Engine, events: Vec<IngestItem>) {
    for chunk in events.chunks(500) {
        let report = engine.ingest(chunk.to_vec()).expect("ingest");
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    }
}

/// An available item with one tag.
pub fn item(id: String, kind: &str, tag: &str) -> Item {
    Item {
        id,
        kind: kind.into(),
        title: "An item".into(),
        tags: vec![tag.into()],
        attributes: serde_json::Map::new(),
        available: true,
        published_at: None,
        variants: serde_json::Map::new(),
    }
}

/// An experiment on `slot` with two arms of half the traffic each: `control` (popular) and
/// `personalized` (the default policy), no holdout, every one covered.
pub fn two_arms(id: &str, slot: &str, metrics: &[&str]) -> Experiment {
    Experiment {
        id: id.into(),
        slot: slot.into(),
        arms: vec![
            Arm { name: "control".into(), weight: 0.5, policy: Policy::Popular },
            Arm { name: "personalized".into(), weight: 0.5, policy: Policy::Default },
        ],
        holdout: 0.0,
        metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
        coverage: 1.0,
    }
}

/// A decision of `count` items on `slot` for `subject`.
pub fn decide(engine: &Engine, subject: &str, slot: &str, count: usize) -> Decision {
    engine
        .decide(&DecideRequest {
            subject: Some(subject.into()),
            placements: vec![PlacementRequest { slot: slot.into(), count }],
            ..DecideRequest::default()
        })
        .expect("decide")
}

//! Several engines on one shared store (PostgreSQL): the bookkeeping each process keeps so that
//! it folds what the others wrote exactly once — the event tail (watermark and claimed sequence
//! numbers), the digests of the record tables as last applied, and erasure tombstones. The sync
//! that uses them is `sync.rs`.
//!
//!
//! An engine keeps profiles, the catalog, consent, preferences, aliases, keys, schemas and editorial
//! state in memory. With [`EngineConfig::cluster`](crate::EngineConfig) on, [`crate::Engine::sync_from_store`]
//! (the server calls it every second) brings that state up to date with the store:
//!
//! - **Events (tailing).** The engine keeps a watermark (`scanned_to`: the highest sequence number a
//!   sync or the start-up replay has read) and the set of sequence numbers it has folded above
//!   `scanned_to - RESCAN_WINDOW`. Every sync scans from `scanned_to - RESCAN_WINDOW`, folds each
//!   event whose number it can *claim* (not yet in the set), and moves the watermark. The rule:
//!   **an event is folded by whoever claims its sequence number first** — the ingest path claims the
//!   numbers its own appends got (`Appended::New(seq)`), the sync claims what it scans, so an event
//!   this process appended is never folded twice even when a sync sees it before the ingest call
//!   returns. Numbers at or below `scanned_to - RESCAN_WINDOW` count as folded.
//!   The window is a safety net: `PostgresStore` hands out sequence numbers in commit order, so a
//!   lower number never becomes visible after a higher one, but a backend that numbered with a
//!   plain sequence would commit out of order; rescanning the last [`RESCAN_WINDOW`] numbers
//!   catches such late commits. Memory: the set holds at most `RESCAN_WINDOW` numbers plus the
//!   numbers this process appended since the last sync; it is pruned at every sync and never
//!   exceeds a million numbers. The rescan costs
//!   one read of up to `RESCAN_WINDOW` events per sync (about 2 MB at 200 bytes per event).
//! - **Records.** Every sync reads the record tables another process may change (items, schemas,
//!   keys, aliases, consent, preferences, slots, picks, rules, flags) in full, compares a 64-bit
//!   hash of each value with the one seen before, and applies only what changed: items are upserted
//!   (a withdrawal is an update), keys replaced (a revoked key is refused within one sync period),
//!   aliases applied with the affected profiles rebuilt, consent applied with the profile dropped
//!   or rebuilt, editorial state reloaded when any of its tables changed. This is a full scan of
//!   those tables each time: cheap at demo scale (see `SyncReport::seconds`), linear in the number
//!   of people with stored consent or preferences. Consent set on another server is therefore
//!   effective here within one sync period, not on the very next request.
//! - **Erasures.** An erasure in progress elsewhere (`pending` record in [`Table::Erasures`]) drops
//!   the person and their aliases from memory here and hides their model factors, as the erasing
//!   server does. An erasure that starts and finishes between two syncs is not seen (the record
//!   names no one afterwards): its person stays in this process's memory until it restarts.
//!
//! Models: one process trains (the scheduler elects it with the store's training lock) and
//! publishes them; the others load them (`models/publish.rs`).

use std::collections::BTreeSet;

use attune_store::{Store, Table};
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::Result;
use crate::records::to_json;

/// How many sequence numbers below the watermark every sync reads again.
pub const RESCAN_WINDOW: u64 = 10_000;

/// The most sequence numbers remembered (about 40 bytes each): a hard bound for a process whose
/// syncs stopped while it kept appending.
const MAX_APPLIED: usize = 1_000_000;

/// The cluster bookkeeping of one engine.
#[derive(Default)]
pub(crate) struct ClusterState {
    pub(crate) enabled: bool,
    pub(crate) tail: Mutex<Tail>,
    /// Table → key → hash of the value last applied.
    digests: Mutex<FxHashMap<Table, FxHashMap<String, u64>>>,
    /// One sync at a time.
    pub(crate) syncing: Mutex<()>,
    /// Erasure tombstones already applied (or written) here.
    pub(crate) tombstones_seen: Mutex<rustc_hash::FxHashSet<String>>,
}

#[derive(Default)]
pub(crate) struct Tail {
    pub(crate) scanned_to: u64,
    applied: BTreeSet<u64>,
}

impl Tail {
    pub(crate) fn floor(&self) -> u64 {
        self.scanned_to.saturating_sub(RESCAN_WINDOW)
    }

    fn claim(&mut self, seq: u64) -> bool {
        if self.applied.len() >= MAX_APPLIED {
            // No sync has run for a long while: forget the oldest half. A sync that later reads
            // those numbers in its window folds them again; with a sync every second this needs a
            // million appends in between.
            let middle = *self.applied.iter().nth(MAX_APPLIED / 2).expect("the set is that large");
            self.applied = self.applied.split_off(&middle);
        }
        seq > self.floor() && self.applied.insert(seq)
    }

    pub(crate) fn advance(&mut self, seq: u64) {
        self.scanned_to = self.scanned_to.max(seq);
    }

    pub(crate) fn prune(&mut self) {
        let floor = self.floor();
        if self.applied.first().is_some_and(|&first| first <= floor) {
            self.applied = self.applied.split_off(&(floor + 1));
        }
    }
}

impl ClusterState {
    /// Records, for the other servers, that an erasure completed: a salted hash of each erased
    /// id, never the id itself. An erasure can start and finish between two syncs of another
    /// server, so the `pending` record alone is not enough to reach its memory.
    pub(crate) fn write_erasure_tombstone(
        &self,
        store: &dyn Store,
        now_ms: i64,
        receipt_id: &str,
        ids: &[String],
    ) -> Result<()> {
        let salt: u64 = rand::random();
        let tombstone =
            ErasureTombstone { at_ms: now_ms, salt, hashes: ids.iter().map(|id| tombstone_hash(salt, id)).collect() };
        let key = format!("{TOMBSTONE_PREFIX}{receipt_id}");
        self.tombstones_seen.lock().insert(key.clone());
        store.put(Table::Erasures, &key, &to_json(&tombstone))?;
        Ok(())
    }

    /// Scans `table` and returns what differs from the digests, recording the new ones.
    pub(crate) fn changes(&self, store: &dyn Store, table: Table) -> Result<Changes> {
        let mut digests = self.digests.lock();
        let known = digests.entry(table).or_default();
        let mut seen: FxHashSet<String> = FxHashSet::default();
        let mut changes = Changes::default();
        store.scan(table, "", &mut |key, bytes| {
            let hash = digest(bytes);
            if known.get(key) != Some(&hash) {
                known.insert(key.to_owned(), hash);
                changes.changed.push((key.to_owned(), bytes.to_vec()));
            }
            seen.insert(key.to_owned());
            true
        })?;
        known.retain(|key, _| {
            let keep = seen.contains(key);
            if !keep {
                changes.removed.push(key.clone());
            }
            keep
        });
        Ok(changes)
    }

    /// The cluster bookkeeping; `enabled`: other processes share the store.
    pub(crate) fn new(enabled: bool) -> ClusterState {
        ClusterState { enabled, ..ClusterState::default() }
    }

    /// Claims an event this process appended or is about to fold: true if it is the first claim
    /// (fold it), false if a sync already folded it. Always true when cluster sync is off.
    pub(crate) fn claim(&self, seq: u64) -> bool {
        !self.enabled || self.tail.lock().claim(seq)
    }

    /// Notes an event folded by the start-up replay.
    pub(crate) fn replayed(&self, seq: u64) {
        if !self.enabled {
            return;
        }
        let mut tail = self.tail.lock();
        tail.advance(seq);
        tail.applied.insert(seq);
        if tail.applied.len() as u64 > 2 * RESCAN_WINDOW {
            tail.prune();
        }
    }
}

fn digest(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Records of one table that differ from what was applied before.
#[derive(Default)]
pub(crate) struct Changes {
    pub changed: Vec<(String, Vec<u8>)>,
    pub removed: Vec<String>,
}

impl Changes {
    pub(crate) fn len(&self) -> usize {
        self.changed.len() + self.removed.len()
    }
}

/// Prefix of erasure tombstones in [`Table::Erasures`].
pub(crate) const TOMBSTONE_PREFIX: &str = "tombstone\0";
/// How long a tombstone is kept: far longer than any sync period, short enough that the salted
/// hashes (pseudonymous data) do not linger.
pub const TOMBSTONE_TTL_MS: i64 = 15 * 60 * 1000;

/// The trace a completed erasure leaves for the other servers: salted hashes of the erased ids.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ErasureTombstone {
    pub(crate) at_ms: i64,
    pub(crate) salt: u64,
    pub(crate) hashes: Vec<String>,
}

pub(crate) fn tombstone_hash(salt: u64, id: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), salt))
}

// ---- published models ----

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use attune_core::validate::RawEvent;
    use attune_store::{EmbeddedStore, Store};

    use attune_core::{Consent, Item};

    use super::*;
    use crate::{Engine, EngineConfig, IngestItem, ManualClock, Scope};

    const NOW_MS: i64 = 1_780_000_000_000;

    /// Two engines over one store, as two servers over one database.
    fn pair() -> (tempfile::TempDir, Engine, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let open = || {
            let config = EngineConfig { cluster: true, ..EngineConfig::default() };
            Engine::open(Arc::clone(&store), Arc::new(ManualClock::new(NOW_MS)), config).expect("engine")
        };
        let (a, b) = (open(), open());
        (dir, a, b)
    }

    fn item(id: &str, tags: &[&str]) -> Item {
        Item {
            id: id.to_owned(),
            kind: "article".to_owned(),
            title: id.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attributes: Default::default(),
            available: true,
            published_at: None,
            variants: Default::default(),
        }
    }

    fn views(engine: &Engine, user: &str, items: &[&str], tag: &str) {
        let batch = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                IngestItem::Raw(RawEvent {
                    id: Some(format!("{tag}-{user}-{i}")),
                    kind: Some("view".to_owned()),
                    // `anon-…` ids are devices (identify merges only those into a person).
                    user: (!user.starts_with("anon-")).then(|| user.to_owned()),
                    anonymous_id: user.starts_with("anon-").then(|| user.to_owned()),
                    item: Some((*item).to_owned()),
                    ..RawEvent::default()
                })
            })
            .collect();
        let report = engine.ingest(batch).expect("ingest");
        assert_eq!(report.accepted, items.len(), "{report:?}");
    }

    #[test]
    fn each_engine_folds_the_others_events_once() {
        let (_dir, a, b) = pair();
        views(&a, "u-1", &["i-1", "i-2"], "a");
        views(&b, "u-1", &["i-3"], "b");
        // Syncing twice, and syncing the writer itself, folds nothing twice.
        for _ in 0..2 {
            a.sync_from_store().expect("sync a");
            b.sync_from_store().expect("sync b");
        }
        assert_eq!(a.person("u-1").expect("a knows u-1").n_events, 3);
        assert_eq!(b.person("u-1").expect("b knows u-1").n_events, 3);
        assert_eq!(a.person("u-1").unwrap().recent.len(), b.person("u-1").unwrap().recent.len());
    }

    #[test]
    fn records_written_through_one_engine_reach_the_other() {
        let (_dir, a, b) = pair();
        let (key, secret) = a.create_key("ingest", vec![Scope::EventsWrite]).expect("key");
        a.upsert_items(vec![item("i-new", &["sleep"])]).expect("items");
        let report = b.sync_from_store().expect("sync");
        assert!(b.authenticate(&secret).is_some(), "{report:?}");
        assert!(b.item("i-new").is_some());
        a.revoke_key(&key.id).expect("revoke");
        a.withdraw_item("i-new").expect("withdraw");
        b.sync_from_store().expect("sync");
        assert!(b.authenticate(&secret).is_none(), "a key revoked on one engine is refused on the other");
        assert!(!b.item("i-new").expect("item").available);
        // Nothing changed: nothing applied.
        let idle = b.sync_from_store().expect("sync");
        assert_eq!((idle.changed.len(), idle.events_folded), (0, 0), "{idle:?}");
    }

    #[test]
    fn consent_and_merges_made_elsewhere_apply_here() {
        let (_dir, a, b) = pair();
        views(&a, "anon-1", &["i-1"], "a");
        views(&a, "u-2", &["i-2"], "a");
        b.sync_from_store().expect("sync");
        a.identify("anon-1", "u-2", "open").expect("identify");
        b.sync_from_store().expect("sync");
        assert_eq!(b.resolve("anon-1"), "u-2");
        assert_eq!(b.person("u-2").expect("u-2").recent.len(), 2, "the merged history is refolded");
        let withdrawn = Consent { personalization: false, ..Consent::default() };
        a.put_consent("u-2", withdrawn, "open").expect("consent");
        b.sync_from_store().expect("sync");
        assert!(!b.consent_of("u-2").personalization);
        assert!(b.person("u-2").expect("u-2").recent.is_empty(), "no profile without consent");
    }

    #[test]
    fn published_models_load_with_items_renumbered() {
        let (_dir, a, b) = pair();
        // B interns an item A has never seen, so the two catalogs number items differently.
        views(&b, "u-0", &["i-only-b"], "b");
        for user in 0..20 {
            let items: Vec<String> = (0..6).map(|i| format!("i-{}", (user + i) % 9)).collect();
            let items: Vec<&str> = items.iter().map(String::as_str).collect();
            views(&a, &format!("u-{user}"), &items, "a");
        }
        a.sync_from_store().expect("sync");
        let trained = a.train().expect("train");
        assert_eq!(a.publish_models().expect("publish"), trained.version);
        b.sync_from_store().expect("sync");
        assert_eq!(b.load_published_models().expect("load"), Some(trained.version));
        assert_eq!(b.load_published_models().expect("load again"), None, "same version: nothing to do");
        let loaded = b.models();
        assert_eq!(loaded.version, trained.version);
        let (ka, kb) = (a.catalog(), b.catalog());
        assert_ne!(ka.lookup("i-3"), kb.lookup("i-3"), "the test needs different numberings");
        let (ia, ib) = (ka.lookup("i-3").unwrap().0, kb.lookup("i-3").unwrap().0);
        let named = |catalog: &crate::catalog::ItemIndex, row: &[(u32, f32)]| -> Vec<(String, f32)> {
            row.iter().map(|&(j, s)| (catalog.id(attune_core::ItemIdx(j)).to_owned(), s)).collect()
        };
        let knn_a = trained.knn().expect("knn");
        let knn_b = loaded.knn().expect("knn");
        assert_eq!(named(&ka, knn_a.neighbors(ia)), named(&kb, knn_b.neighbors(ib)));
        assert_eq!(trained.popularity[ia as usize], loaded.popularity[ib as usize]);
        let (ra, rb) = (trained.ranker.as_ref().expect("ranker"), loaded.ranker.as_ref().expect("ranker"));
        assert_eq!(ra.report(), rb.report());
    }

    #[test]
    fn a_sequence_number_is_claimed_once_and_old_ones_never() {
        let mut tail = Tail::default();
        assert!(tail.claim(5));
        assert!(!tail.claim(5));
        tail.advance(RESCAN_WINDOW + 20);
        tail.prune();
        // 5 is below the window now: counted as folded, and pruned from the set.
        assert!(!tail.claim(5));
        assert!(tail.applied.is_empty());
        assert!(tail.claim(RESCAN_WINDOW + 19));
        // An own append above the watermark survives pruning until a sync passes it.
        assert!(tail.claim(RESCAN_WINDOW + 100));
        tail.prune();
        assert!(!tail.claim(RESCAN_WINDOW + 100));
    }

    /// An erasure that starts and finishes between two syncs of another server still reaches
    /// that server's memory, through a tombstone that names no one in plain text.
    #[test]
    fn erasure_between_syncs_reaches_the_other_server() {
        let (dir, a, b) = pair();
        a.upsert_items(vec![item("i-1", &["sleep"])]).unwrap();
        views(&a, "u-gone", &["i-1"], "t");
        b.sync_from_store().unwrap();
        assert!(b.person("u-gone").is_ok(), "B learned about the person through the log");
        a.erase_person("u-gone", "test").unwrap();
        b.sync_from_store().unwrap();
        assert!(b.person("u-gone").is_err(), "B dropped the erased person from memory");
        // The tombstone holds no plain id.
        let mut plain = false;
        a.store()
            .scan(Table::Erasures, "", &mut |key, bytes| {
                plain |= key.contains("u-gone") || String::from_utf8_lossy(bytes).contains("u-gone");
                true
            })
            .unwrap();
        assert!(!plain);
        drop(dir);
    }
}

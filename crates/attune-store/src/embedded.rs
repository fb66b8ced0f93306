//! The embedded backend: fjall (an LSM-tree with a write-ahead journal) in one data directory.
//!
//! Why fjall: the event log is write-heavy with random-keyed side indexes (event ids), where an
//! LSM-tree beats copy-on-write B-trees (DEPS.md measured 88k durable records/s for fjall against
//! 10k for redb with random keys); `attune bench ingest` measures the whole path.
//!
//! Durability: every write ends with `persist(SyncAll)` (fsync of the journal) before it returns.
//! fsync costs milliseconds on this kind of machine, so event appends use **group commit**: the
//! first caller to find no commit in progress becomes the leader, takes every queued append, writes
//! them in one batch with one fsync, and wakes the callers it committed for. Concurrent HTTP
//! requests thus share fsyncs instead of queueing behind each other's.
//!
//! Bulk loads (`append_events_bulk`, used by `attune import`) skip the journal and the memtables:
//! each keyspace's new entries are sorted and written straight into new table files with fjall's
//! ingestion, which costs a fraction of an insert per entry. Ingestion is atomic per keyspace, not
//! across them, so a durable marker (`meta` record [`BULK_MARKER`]: the batch's sequence range)
//! is written first and removed last; the events keyspace is ingested before its indexes. A store
//! that opens with the marker present (a crash mid-load) rolls the unacknowledged batch back.
//!
//! Keyspaces: `events` (seq → event row), `event_ids` (id → seq), `by_subject`
//! (`subject \0 seq` → ∅), `by_expiry` (`expires seq` → ∅), `records` (`table \0 key` → value).
//! Integers in keys are big-endian so that byte order is numeric order.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, UserKey, UserValue};
use parking_lot::Mutex;
use rayon::prelude::*;

use crate::{
    Appended, Continue, NewEvent, Result, Store, StoreError, StoredEvent, Table,
    group_commit::{GroupCommit, Ticketed},
};

/// Bulk appends smaller than this take the normal path: ingestion writes new table files per
/// call (and per keyspace), which pays off only for large batches.
const BULK_MIN_EVENTS: usize = 4096;

/// The `meta` record present while a bulk append is being written: its first and last sequence
/// numbers (big-endian).
const BULK_MARKER: &str = "store:bulk-append-in-progress";

/// The format of an embedded data directory this build writes. Stored in the `meta` record
/// [`FORMAT_KEY`] with the layout version of each keyspace (the backend's record families); an
/// open refuses a newer one and migrates an older one ([`MIGRATIONS`]).
///
/// - 1: the layout before format records (no [`FORMAT_KEY`]).
/// - 2: the format record.
pub const EMBEDDED_FORMAT: u32 = 2;

/// The `meta` record holding the data directory's format: `format N` then `<family> N` lines.
const FORMAT_KEY: &str = "store:format";

/// The layout version of each keyspace (record family) at [`EMBEDDED_FORMAT`]. A change of a
/// family's encoding bumps its number and the format, and adds a migration.
const FAMILIES: [(&str, u32); 5] =
    [("events", 1), ("event_ids", 1), ("by_subject", 1), ("by_expiry", 1), ("records", 1)];

/// Migrations: `(to, what, how)`, in order. Each runs on a directory at `to - 1`; the format
/// record is written after it, so an interrupted migration runs again (they are idempotent).
type Migration = (u32, &'static str, fn(&EmbeddedStore) -> Result<()>);
const MIGRATIONS: [Migration; 1] = [(2, "format records", |_| Ok(()))];

/// What [`Store::backup`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupReport {
    /// Events copied.
    pub events: u64,
    /// Records copied (every table).
    pub records: u64,
    /// Entries copied, indexes included.
    pub entries: u64,
}

/// The embedded store. Open it with [`EmbeddedStore::open`].
pub struct EmbeddedStore {
    path: PathBuf,
    db: Database,
    events: Keyspace,
    event_ids: Keyspace,
    by_subject: Keyspace,
    by_expiry: Keyspace,
    records: Keyspace,
    next_seq: AtomicU64,
    n_events: AtomicU64,
    committer: GroupCommit<Write>,
    purge_lock: Mutex<()>,
    /// Orders [`Store::update`] calls.
    update_lock: Mutex<()>,
    /// Serializes counter updates (read, add, write): only this process opens the directory.
    counters: Mutex<()>,
    /// Bulk-load mode over a store that held no events when it opened: the hash of every event id
    /// appended since (`None` otherwise, or once it outgrew [`MAX_FRESH_IDS`]). An id whose hash
    /// is absent was never stored, so deduplication needs no lookup for it; one whose hash is
    /// present (a duplicate, or rarely a collision) is confirmed with a lookup.
    fresh_ids: Mutex<Option<FreshIds>>,
}

type FreshIds = rustc_hash::FxHashSet<u64>;

/// How an [`EmbeddedStore`] is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbeddedOptions {
    /// Tune for a bulk load such as `attune import`: when the store starts out without events,
    /// deduplicate against the ids of this session in memory instead of with lookups.
    pub bulk_load: bool,
}

/// How many level-0 tables (each a memtable flush or a bulk append) a keyspace collects before
/// fjall merges them into level 1. fjall's default of 4 suits `event_ids`, the one keyspace read
/// by point lookups of absent keys (deduplication), where every level-0 table costs a filter probe.
/// The others are read by sequence number (`events`: its tables do not overlap, so a lookup
/// probes one) or scanned rarely (`by_subject` for export and erasure, `by_expiry` for retention),
/// so they merge later and a bulk load pays for far less merging (measured: 2 of 7 CPU-seconds of
/// importing a million events when every keyspace merged at 4).
const RELAXED_L0_TABLES: u8 = 32;

/// The level-0 threshold of `event_ids`.
const EVENT_IDS_L0_TABLES: u8 = 16;

/// The options a keyspace is created with. fjall stores them with the keyspace: they apply to
/// data directories created from now on; older ones keep the options they were created with.
fn keyspace_options(name: &str) -> KeyspaceCreateOptions {
    let create = KeyspaceCreateOptions::default();
    let relaxed = || std::sync::Arc::new(fjall::compaction::Leveled::default().with_l0_threshold(RELAXED_L0_TABLES));
    match name {
        "events" => create.compaction_strategy(relaxed()),
        // Never read by point lookups: no filters to build.
        "by_subject" | "by_expiry" => {
            create.compaction_strategy(relaxed()).filter_policy(fjall::config::FilterPolicy::disabled())
        }
        "event_ids" => create.compaction_strategy(std::sync::Arc::new(
            fjall::compaction::Leveled::default().with_l0_threshold(EVENT_IDS_L0_TABLES),
        )),
        _ => create,
    }
}

/// The most ids [`EmbeddedStore::fresh_ids`] remembers (about 10 bytes each) before deduplication
/// falls back to lookups.
const MAX_FRESH_IDS: usize = 32 << 20;

fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// One queued write: events to append (normally or in bulk), or records to put and delete.
enum Write {
    Events(Vec<NewEvent>),
    Bulk(Vec<NewEvent>),
    Records(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

/// How many queued writes one commit takes: a bulk append alone, else everything before the next
/// bulk append.
fn group_len(waiting: &VecDeque<Ticketed<Write>>) -> usize {
    match waiting.front() {
        Some((_, Write::Bulk(_))) => 1,
        _ => waiting.iter().take_while(|(_, write)| !matches!(write, Write::Bulk(_))).count(),
    }
}

fn backend_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `path`, recovering from the journal after a crash.
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore> {
        EmbeddedStore::open_with(path, EmbeddedOptions::default())
    }

    /// [`open`](EmbeddedStore::open) with options.
    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        let path = path.as_ref().to_path_buf();
        create_private_dir(&path).map_err(backend_err)?;
        let db = Database::builder(&path).open().map_err(backend_err)?;
        // fjall creates its files with the process umask; the directory being 0700 already
        // keeps others out, and the files are tightened too (the store holds the `/me` signing
        // secret, key hashes and personal data).
        restrict_tree(&path).map_err(backend_err)?;
        let keyspace = |name: &str| db.keyspace(name, || keyspace_options(name)).map_err(backend_err);
        let store = EmbeddedStore {
            events: keyspace("events")?,
            event_ids: keyspace("event_ids")?,
            by_subject: keyspace("by_subject")?,
            by_expiry: keyspace("by_expiry")?,
            records: keyspace("records")?,
            path,
            db,
            next_seq: AtomicU64::new(1),
            n_events: AtomicU64::new(0),
            committer: GroupCommit::new(),
            purge_lock: Mutex::new(()),
            update_lock: Mutex::new(()),
            counters: Mutex::new(()),
            fresh_ids: Mutex::new(None),
        };
        let last_seq = match store.events.last_key_value() {
            Some(guard) => decode_u64(&guard.key().map_err(backend_err)?)?,
            None => 0,
        };
        let mut next_seq = last_seq + 1;
        if let Some(marker) = store.records.get(record_key(Table::Meta, BULK_MARKER)).map_err(backend_err)? {
            let (first, last) = (decode_u64(&marker)?, decode_u64(marker.get(8..).unwrap_or_default())?);
            tracing::warn!(first, last, "rolling back a bulk append that was interrupted before it was acknowledged");
            store.roll_back_bulk(first, last)?;
            next_seq = next_seq.max(last + 1);
        }
        store.next_seq.store(next_seq, Ordering::SeqCst);
        store.check_format()?;
        let n_events = store.event_ids.len().map_err(backend_err)? as u64;
        store.n_events.store(n_events, Ordering::SeqCst);
        if options.bulk_load && n_events == 0 {
            *store.fresh_ids.lock() = Some(FreshIds::default());
        }
        Ok(store)
    }

    /// Reads the format record: refuses a newer format (or a newer family), migrates an older
    /// one, stamps a fresh directory.
    fn check_format(&self) -> Result<()> {
        let key = record_key(Table::Meta, FORMAT_KEY);
        let stored = self.records.get(&key).map_err(backend_err)?;
        let version = match &stored {
            Some(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| StoreError::Corrupt { what: "format record", detail: "not text".into() })?;
                let versions = parse_format(text)?;
                let format = versions.iter().find(|(name, _)| name == "format").map_or(0, |(_, v)| *v);
                if format > EMBEDDED_FORMAT {
                    return Err(StoreError::Format(format!(
                        "the data directory {} is in format {format}, newer than this build of attune reads \
                         ({EMBEDDED_FORMAT}): run a newer attune, or restore a backup taken by this version",
                        self.path.display()
                    )));
                }
                for (name, found) in versions.iter().filter(|(name, _)| name != "format") {
                    match FAMILIES.iter().find(|(family, _)| family == name) {
                        Some((_, known)) if found <= known => {}
                        Some((_, known)) => {
                            return Err(StoreError::Format(format!(
                                "the data directory {} stores `{name}` in layout {found}, newer than this \
                                 build reads ({known}): run a newer attune",
                                self.path.display()
                            )));
                        }
                        None => {
                            return Err(StoreError::Format(format!(
                                "the data directory {} holds `{name}`, unknown to this build: run a newer attune",
                                self.path.display()
                            )));
                        }
                    }
                }
                format
            }
            // No record: a fresh directory, or one written before format records (format 1).
            None if self.events.is_empty().map_err(backend_err)? && self.records.is_empty().map_err(backend_err)? => {
                EMBEDDED_FORMAT
            }
            None => 1,
        };
        for (to, what, migrate) in MIGRATIONS.iter().filter(|(to, _, _)| *to > version) {
            tracing::info!(to, what, path = %self.path.display(), "migrating the data directory");
            migrate(self)?;
            self.records.insert(&key, format_record(*to)).map_err(backend_err)?;
            self.persist()?;
        }
        if stored.is_none() {
            self.records.insert(&key, format_record(EMBEDDED_FORMAT)).map_err(backend_err)?;
            self.persist()?;
        }
        Ok(())
    }

    /// The data directory's format version (from its format record).
    pub fn format(&self) -> Result<u32> {
        let bytes = self
            .records
            .get(record_key(Table::Meta, FORMAT_KEY))
            .map_err(backend_err)?
            .ok_or_else(|| StoreError::Corrupt { what: "format record", detail: "missing".into() })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| StoreError::Corrupt { what: "format record", detail: "not text".into() })?;
        Ok(parse_format(text)?.into_iter().find(|(name, _)| name == "format").map_or(0, |(_, v)| v))
    }

    /// Writes every keyspace as seen by one snapshot into a new data directory `dest` (see
    /// [`Store::backup`]): writes continue meanwhile and do not reach the copy. The copy's
    /// entries are ingested as new sorted table files, so it costs one sequential read and write
    /// of the live data (no journal). A bulk append in progress at the snapshot is copied with
    /// its marker, and rolled back when the copy is opened, as after a crash.
    fn backup_to(&self, dest: &Path) -> Result<BackupReport> {
        if dest.exists() && std::fs::read_dir(dest).map_err(backend_err)?.next().is_some() {
            return Err(StoreError::Format(format!("{} exists and is not empty", dest.display())));
        }
        create_private_dir(dest).map_err(backend_err)?;
        let snapshot = self.db.snapshot();
        let copy = Database::builder(dest).open().map_err(backend_err)?;
        let mut report = BackupReport::default();
        let keyspaces = [
            ("events", &self.events),
            ("event_ids", &self.event_ids),
            ("by_subject", &self.by_subject),
            ("by_expiry", &self.by_expiry),
            ("records", &self.records),
        ];
        for (name, keyspace) in keyspaces {
            let target = copy.keyspace(name, || keyspace_options(name)).map_err(backend_err)?;
            let mut n = 0u64;
            let mut failure = None;
            let entries = fjall::Readable::iter(&snapshot, keyspace).map_while(|guard| match guard.into_inner() {
                Ok(entry) => {
                    n += 1;
                    Some(entry)
                }
                Err(err) => {
                    failure = Some(backend_err(err));
                    None
                }
            });
            ingest_sorted(&target, entries)?;
            if let Some(err) = failure {
                return Err(err);
            }
            match name {
                "events" => report.events = n,
                "records" => report.records = n,
                _ => {}
            }
            report.entries += n;
        }
        drop(snapshot);
        copy.persist(PersistMode::SyncAll).map_err(backend_err)?;
        drop(copy);
        restrict_tree(dest).map_err(backend_err)?;
        Ok(report)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(backend_err)
    }

    /// Queues a write and waits until it is durable. The first waiter that finds no commit in
    /// progress leads: it commits everything queued (its own write included) in one batch and one
    /// fsync, then wakes the others.
    fn write(&self, write: Write) -> Result<Vec<Appended>> {
        self.committer.submit(write, group_len, |group| self.commit_group(&group))
    }

    /// Commits one group of queued writes in one batch and one fsync (a bulk append comes alone).
    fn commit_group(&self, group: &[(u64, Write)]) -> Vec<(u64, Result<Vec<Appended>>)> {
        if let [(ticket, Write::Bulk(events))] = group {
            return vec![(*ticket, self.commit_bulk(events))];
        }
        let mut batch = self.db.batch();
        let mut seen_in_group: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut n_new = 0u64;
        for (ticket, write) in group {
            let events = match write {
                Write::Events(events) | Write::Bulk(events) => events,
                Write::Records(ops) => {
                    for (key, value) in ops {
                        match value {
                            Some(value) => batch.insert(&self.records, key.as_slice(), value.as_slice()),
                            None => batch.remove(&self.records, key.as_slice()),
                        }
                    }
                    outcomes.push((*ticket, Vec::new()));
                    continue;
                }
            };
            let mut appended = Vec::with_capacity(events.len());
            for event in events {
                let known = match self.event_ids.contains_key(event.id.as_bytes()) {
                    Ok(known) => known,
                    Err(err) => return group.iter().map(|(t, _)| (*t, Err(backend_err(&err)))).collect(),
                };
                if known || !seen_in_group.insert(event.id.as_str()) {
                    appended.push(Appended::Duplicate);
                    continue;
                }
                let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                let seq_key = seq.to_be_bytes();
                batch.insert(&self.events, seq_key, encode_row(event));
                batch.insert(&self.event_ids, event.id.as_bytes(), seq_key);
                batch.insert(&self.by_subject, subject_key(&event.subject, seq), []);
                batch.insert(&self.by_expiry, expiry_key(event.expires_ms, seq), []);
                appended.push(Appended::New(seq));
                n_new += 1;
            }
            outcomes.push((*ticket, appended));
        }
        let written = batch.commit().map_err(backend_err).and_then(|()| self.persist());
        match written {
            Ok(()) => {
                self.n_events.fetch_add(n_new, Ordering::SeqCst);
                let mut fresh_ids = self.fresh_ids.lock();
                if fresh_ids.is_some() {
                    remember_ids(&mut fresh_ids, seen_in_group.iter().copied());
                }
                outcomes.into_iter().map(|(t, a)| (t, Ok(a))).collect()
            }
            Err(err) => outcomes.into_iter().map(|(t, _)| (t, Err(StoreError::Backend(err.to_string())))).collect(),
        }
    }

    fn get_row(&self, seq: u64) -> Result<Option<StoredEvent>> {
        match self.events.get(seq.to_be_bytes()).map_err(backend_err)? {
            Some(row) => decode_row(seq, &row).map(Some),
            None => Ok(None),
        }
    }

    /// Removes events (all their index entries) in one durable batch.
    fn remove_rows(&self, rows: &[StoredEvent]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.remove_entries(rows)?;
        self.n_events.fetch_sub(rows.len() as u64, Ordering::SeqCst);
        Ok(rows.len() as u64)
    }

    /// Removes the entries of `rows` from every keyspace in one durable batch. Leaves the event
    /// count alone.
    fn remove_entries(&self, rows: &[StoredEvent]) -> Result<()> {
        let mut batch = self.db.batch();
        for row in rows {
            batch.remove(&self.events, row.seq.to_be_bytes());
            batch.remove(&self.event_ids, row.id.as_bytes());
            batch.remove(&self.by_subject, subject_key(&row.subject, row.seq));
            batch.remove(&self.by_expiry, expiry_key(row.expires_ms, row.seq));
        }
        batch.commit().map_err(backend_err)?;
        self.persist()
    }

    /// Writes (`Some(first, last)`) or removes the bulk-append marker, durably.
    fn set_bulk_marker(&self, range: Option<(u64, u64)>) -> Result<()> {
        let key = record_key(Table::Meta, BULK_MARKER);
        match range {
            Some((first, last)) => {
                let mut marker = first.to_be_bytes().to_vec();
                marker.extend_from_slice(&last.to_be_bytes());
                self.records.insert(key, marker)
            }
            None => self.records.remove(key),
        }
        .map_err(backend_err)?;
        self.persist()
    }

    /// Appends a large batch by ingestion (see the module documentation): deduplicate (point
    /// reads, on all cores), number, mark, ingest the rows, ingest the three indexes (in
    /// parallel), unmark. Runs as the group commit's leader, alone, so no other append interleaves.
    fn commit_bulk(&self, events: &[NewEvent]) -> Result<Vec<Appended>> {
        let mut fresh_ids = self.fresh_ids.lock();
        let remembered = fresh_ids.as_ref();
        let known: Vec<bool> = events
            .par_iter()
            .map(|event| match remembered {
                Some(ids) if !ids.contains(&id_hash(&event.id)) => Ok(false),
                _ => self.event_ids.contains_key(event.id.as_bytes()),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(backend_err)?;
        let first_seq = self.next_seq.load(Ordering::SeqCst);
        let mut seen = rustc_hash::FxHashSet::default();
        let mut fresh: Vec<(u64, &NewEvent)> = Vec::with_capacity(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, known) in events.iter().zip(known) {
            if known || !seen.insert(event.id.as_str()) {
                outcomes.push(Appended::Duplicate);
            } else {
                let seq = first_seq + fresh.len() as u64;
                fresh.push((seq, event));
                outcomes.push(Appended::New(seq));
            }
        }
        drop(seen);
        remember_ids(&mut fresh_ids, fresh.iter().map(|(_, event)| event.id.as_str()));
        drop(fresh_ids);
        let Some(&(last_seq, _)) = fresh.last() else { return Ok(outcomes) };
        self.next_seq.store(last_seq + 1, Ordering::SeqCst);
        self.set_bulk_marker(Some((first_seq, last_seq)))?;
        match self.ingest_bulk(&fresh) {
            Ok(()) => {
                self.set_bulk_marker(None)?;
                self.n_events.fetch_add(fresh.len() as u64, Ordering::SeqCst);
                Ok(outcomes)
            }
            Err(err) => {
                // Leave nothing half-written behind (an id without its event would turn a retry
                // into a false duplicate); if even that fails, the next open rolls it back.
                if let Err(rollback) = self.roll_back_bulk(first_seq, last_seq) {
                    tracing::error!(%rollback, "rolling back a failed bulk append failed; the next start will");
                }
                Err(err)
            }
        }
    }

    /// Ingests numbered events (in sequence order): the rows first, then the indexes.
    fn ingest_bulk(&self, fresh: &[(u64, &NewEvent)]) -> Result<()> {
        ingest_sorted(&self.events, fresh.iter().map(|(seq, event)| (seq.to_be_bytes(), encode_row(event))))?;
        let ids = || {
            let mut keys: Vec<(&[u8], u64)> = fresh.iter().map(|(seq, event)| (event.id.as_bytes(), *seq)).collect();
            keys.par_sort_unstable();
            ingest_sorted(&self.event_ids, keys.into_iter().map(|(id, seq)| (id, seq.to_be_bytes())))
        };
        let subjects = || {
            let mut keys: Vec<Vec<u8>> = fresh.iter().map(|(seq, event)| subject_key(&event.subject, *seq)).collect();
            keys.par_sort_unstable();
            ingest_sorted(&self.by_subject, keys.into_iter().map(|key| (key, [])))
        };
        let expiries = || {
            let mut keys: Vec<[u8; 16]> = fresh.iter().map(|(seq, event)| expiry_key(event.expires_ms, *seq)).collect();
            keys.par_sort_unstable();
            ingest_sorted(&self.by_expiry, keys.into_iter().map(|key| (key, [])))
        };
        let (ids, (subjects, expiries)) = rayon::join(ids, || rayon::join(subjects, expiries));
        ids.and(subjects).and(expiries)
    }

    /// Removes whatever was written of the bulk append numbered `first..=last` and its marker.
    /// The rows are ingested before the indexes, so the rows found name every index entry written.
    fn roll_back_bulk(&self, first: u64, last: u64) -> Result<()> {
        let mut rows = Vec::new();
        for guard in self.events.range(first.to_be_bytes()..=last.to_be_bytes()) {
            let (key, value) = guard.into_inner().map_err(backend_err)?;
            rows.push(decode_row(decode_u64(&key)?, &value)?);
        }
        for chunk in rows.chunks(10_000) {
            self.remove_entries(chunk)?;
        }
        self.set_bulk_marker(None)
    }

    fn expired_rows(&self, now_ms: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let end = expiry_key(now_ms, u64::MAX);
        let mut rows = Vec::new();
        for guard in self.by_expiry.range(..=end.as_slice()) {
            let key = guard.key().map_err(backend_err)?;
            let seq = decode_u64(&key[8..])?;
            if let Some(row) = self.get_row(seq)? {
                rows.push(row);
            }
            if rows.len() >= limit {
                break;
            }
        }
        Ok(rows)
    }
}

/// Adds ids to the bulk-load id set, if there is one; drops the set once it grows too large.
fn remember_ids<'a>(fresh_ids: &mut Option<FreshIds>, ids: impl Iterator<Item = &'a str>) {
    if let Some(set) = fresh_ids.as_mut() {
        set.extend(ids.map(id_hash));
        if set.len() > MAX_FRESH_IDS {
            *fresh_ids = None;
        }
    }
}

/// Writes `entries` (in strictly increasing key order) into new table files of `keyspace`, durably.
fn ingest_sorted<K: Into<UserKey>, V: Into<UserValue>>(
    keyspace: &Keyspace,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<()> {
    let mut ingestion = keyspace.start_ingestion().map_err(backend_err)?;
    for (key, value) in entries {
        ingestion.write(key, value).map_err(backend_err)?;
    }
    ingestion.finish().map_err(backend_err)
}

fn format_record(format: u32) -> Vec<u8> {
    let mut text = format!("format {format}\n");
    for (family, version) in FAMILIES {
        text.push_str(&format!("{family} {version}\n"));
    }
    text.into_bytes()
}

fn parse_format(text: &str) -> Result<Vec<(String, u32)>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, version) = line
                .split_once(' ')
                .and_then(|(name, v)| Some((name.to_owned(), v.trim().parse().ok()?)))
                .ok_or_else(|| StoreError::Corrupt { what: "format record", detail: line.to_owned() })?;
            Ok((name, version))
        })
        .collect()
}

fn subject_key(subject: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(subject.len() + 9);
    key.extend_from_slice(subject.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn expiry_key(expires_ms: i64, seq: u64) -> [u8; 16] {
    // Offset so negative times sort before positive ones.
    let expires = (expires_ms as u64) ^ (1 << 63);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&expires.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn record_key(table: Table, key: &str) -> Vec<u8> {
    let name = table.name();
    let mut out = Vec::with_capacity(name.len() + 1 + key.len());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt { what: "key", detail: format!("{} bytes", bytes.len()) })?;
    Ok(u64::from_be_bytes(array))
}

/// Event row layout: ts (8) | expires (8) | id len (2) | id | subject len (2) | subject | payload.
fn encode_row(event: &NewEvent) -> Vec<u8> {
    let mut row = Vec::with_capacity(20 + event.id.len() + event.subject.len() + event.payload.len());
    row.extend_from_slice(&event.ts_ms.to_le_bytes());
    row.extend_from_slice(&event.expires_ms.to_le_bytes());
    row.extend_from_slice(&(event.id.len() as u16).to_le_bytes());
    row.extend_from_slice(event.id.as_bytes());
    row.extend_from_slice(&(event.subject.len() as u16).to_le_bytes());
    row.extend_from_slice(event.subject.as_bytes());
    row.extend_from_slice(&event.payload);
    row
}

fn decode_row(seq: u64, row: &[u8]) -> Result<StoredEvent> {
    let corrupt = || StoreError::Corrupt { what: "event row", detail: format!("seq {seq}") };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = row.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(slice)
    };
    let ts_ms = i64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let expires_ms = i64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let id_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
    let id = String::from_utf8(take(id_len)?.to_vec()).map_err(|_| corrupt())?;
    let subject_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
    let subject = String::from_utf8(take(subject_len)?.to_vec()).map_err(|_| corrupt())?;
    let payload = row[at..].to_vec();
    Ok(StoredEvent { seq, id, subject, ts_ms, expires_ms, payload })
}

impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write(Write::Events(events))
    }

    fn append_events_bulk(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        if events.len() < BULK_MIN_EVENTS {
            return self.append_events(events);
        }
        self.write(Write::Bulk(events))
    }

    fn scan_events(&self, after_seq: u64, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()> {
        let start = after_seq.saturating_add(1).to_be_bytes();
        for guard in self.events.range(start..) {
            let (key, value) = guard.into_inner().map_err(backend_err)?;
            let row = decode_row(decode_u64(&key)?, &value)?;
            if !visit(row) {
                break;
            }
        }
        Ok(())
    }

    fn subject_events(&self, subject: &str, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()> {
        let mut prefix = subject.as_bytes().to_vec();
        prefix.push(0);
        for guard in self.by_subject.prefix(&prefix) {
            let key = guard.key().map_err(backend_err)?;
            let seq = decode_u64(&key[prefix.len()..])?;
            if let Some(row) = self.get_row(seq)?
                && !visit(row)
            {
                break;
            }
        }
        Ok(())
    }

    fn delete_subject_events(&self, subject: &str) -> Result<u64> {
        let mut rows = Vec::new();
        self.subject_events(subject, &mut |row| {
            rows.push(row);
            true
        })?;
        let mut deleted = 0;
        for chunk in rows.chunks(10_000) {
            deleted += self.remove_rows(chunk)?;
        }
        Ok(deleted)
    }

    fn delete_events(&self, seqs: &[u64]) -> Result<u64> {
        let mut rows = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(row) = self.get_row(seq)? {
                rows.push(row);
            }
        }
        self.remove_rows(&rows)
    }

    fn replace_payloads(&self, rows: &[(u64, Vec<u8>)]) -> Result<u64> {
        let mut batch = self.db.batch();
        let mut replaced = 0;
        for (seq, payload) in rows {
            if let Some(row) = self.get_row(*seq)? {
                let event = NewEvent {
                    id: row.id,
                    subject: row.subject,
                    ts_ms: row.ts_ms,
                    expires_ms: row.expires_ms,
                    payload: payload.clone(),
                };
                batch.insert(&self.events, seq.to_be_bytes(), encode_row(&event));
                replaced += 1;
            }
        }
        if replaced > 0 {
            batch.commit().map_err(backend_err)?;
            self.persist()?;
        }
        Ok(replaced)
    }

    fn delete_expired_events(&self, now_ms: i64) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let rows = self.expired_rows(now_ms, 10_000)?;
            if rows.is_empty() {
                return Ok(deleted);
            }
            deleted += self.remove_rows(&rows)?;
        }
    }

    fn event_count(&self) -> Result<u64> {
        Ok(self.n_events.load(Ordering::SeqCst))
    }

    fn count_expired_events(&self, now_ms: i64) -> Result<u64> {
        let end = expiry_key(now_ms, u64::MAX);
        let mut n = 0u64;
        for guard in self.by_expiry.range(..=end.as_slice()) {
            guard.key().map_err(backend_err)?;
            n += 1;
        }
        Ok(n)
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<()> {
        self.write(Write::Records(vec![(record_key(table, key), Some(value.to_vec()))])).map(drop)
    }

    fn put_many(&self, table: Table, entries: &[(String, Vec<u8>)]) -> Result<()> {
        let ops = entries.iter().map(|(key, value)| (record_key(table, key), Some(value.clone()))).collect();
        self.write(Write::Records(ops)).map(drop)
    }

    fn add_counters(&self, table: Table, counts: &[(String, u64)]) -> Result<()> {
        let _one_at_a_time = self.counters.lock();
        let mut entries = Vec::with_capacity(counts.len());
        for (key, n) in crate::merged_counts(counts) {
            let before = match self.get(table, key)? {
                Some(bytes) => crate::counter_value(&bytes)?,
                None => 0,
            };
            entries.push((key.to_owned(), before.saturating_add(n).to_le_bytes().to_vec()));
        }
        self.put_many(table, &entries)
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(record_key(table, key)).map_err(backend_err)?.map(|v| v.to_vec()))
    }

    fn update(&self, table: Table, key: &str, apply: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>) -> Result<Vec<u8>> {
        // One process owns the directory: a lock orders the read-modify-writes of this process.
        let _one_at_a_time = self.update_lock.lock();
        let current = self.get(table, key)?;
        let value = apply(current.as_deref());
        self.put(table, key, &value)?;
        Ok(value)
    }

    fn delete(&self, table: Table, key: &str) -> Result<bool> {
        let key = record_key(table, key);
        let existed = self.records.contains_key(&key).map_err(backend_err)?;
        if existed {
            self.write(Write::Records(vec![(key, None)]))?;
        }
        Ok(existed)
    }

    fn scan(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()> {
        let full_prefix = record_key(table, prefix);
        let skip = table.name().len() + 1;
        for guard in self.records.prefix(&full_prefix) {
            let (key, value) = guard.into_inner().map_err(backend_err)?;
            let key = std::str::from_utf8(&key[skip..])
                .map_err(|_| StoreError::Corrupt { what: "record key", detail: table.name().to_owned() })?;
            if !visit(key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn scan_rev(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()> {
        let full_prefix = record_key(table, prefix);
        let skip = table.name().len() + 1;
        for guard in self.records.prefix(&full_prefix).rev() {
            let (key, value) = guard.into_inner().map_err(backend_err)?;
            let key = std::str::from_utf8(&key[skip..])
                .map_err(|_| StoreError::Corrupt { what: "record key", detail: table.name().to_owned() })?;
            if !visit(key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else { return 0 };
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => walk(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.path)
    }

    fn purge(&self) -> Result<()> {
        self.purge_files()
    }

    fn backup(&self, dest: &Path) -> Result<BackupReport> {
        self.backup_to(dest)
    }
}

/// fjall seals its active journal (write-ahead log) only once it holds more than this many bytes
/// (`worker_pool.rs` in fjall 3.1), and offers no call to seal it sooner.
const FJALL_JOURNAL_ROTATE_BYTES: usize = 64_000_000;

impl EmbeddedStore {
    /// Makes every deletion so far physical. fjall (an LSM-tree) keeps deleted values in older
    /// tables until compaction, keeps the deleted *keys* as tombstones, and keeps every write in
    /// its journal until the journal is sealed and every keyspace has flushed past it. So:
    ///
    /// 1. Flush every keyspace's memtable, so deletions reach the tables.
    /// 2. Seal the active journal: fjall has no call for that, so we write just over its 64 MB
    ///    rotation threshold of incompressible padding (the journal compresses with LZ4) into a
    ///    scratch keyspace, one key overwritten, and flush it. fjall then seals the journal and
    ///    deletes it once every keyspace has flushed past it, which step 1 ensured.
    /// 3. Major-compact every keyspace into its last level: one run without tombstones or
    ///    shadowed values.
    /// 4. One more tiny flush of the scratch keyspace: fjall garbage-collects old versions of every
    ///    keyspace (and with them the replaced table files) when a memtable rotates.
    ///
    /// Cost: about 64 MB of journal writes plus rewriting every table, about a second on a
    /// laptop SSD; erasures are rare. `tests/embedded.rs` and the server's privacy test pin the
    /// outcome by scanning every file of the data directory for the erased bytes.
    fn purge_files(&self) -> Result<()> {
        let _one_purge_at_a_time = self.purge_lock.lock();
        let keyspaces = [&self.events, &self.event_ids, &self.by_subject, &self.by_expiry, &self.records];
        for keyspace in keyspaces {
            keyspace.rotate_memtable_and_wait().map_err(backend_err)?;
        }
        let padding = self.db.keyspace("purge_padding", KeyspaceCreateOptions::default).map_err(backend_err)?;
        let chunk = incompressible_bytes(1 << 20);
        for _ in 0..FJALL_JOURNAL_ROTATE_BYTES.div_ceil(chunk.len()) + 1 {
            padding.insert(b"padding", chunk.as_slice()).map_err(backend_err)?;
        }
        padding.rotate_memtable_and_wait().map_err(backend_err)?;
        padding.remove(b"padding").map_err(backend_err)?;
        self.persist()?;
        for keyspace in keyspaces.into_iter().chain([&padding]) {
            keyspace.rotate_memtable_and_wait().map_err(backend_err)?;
        }
        for keyspace in keyspaces.into_iter().chain([&padding]) {
            keyspace.major_compact().map_err(backend_err)?;
        }
        for _ in 0..2 {
            padding.insert(b"gc", b"").map_err(backend_err)?;
            padding.rotate_memtable_and_wait().map_err(backend_err)?;
        }
        self.persist()
    }
}

/// `n` bytes that LZ4 cannot shrink (a xorshift sequence).
fn incompressible_bytes(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(n + 8);
    while bytes.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(n);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> NewEvent {
        NewEvent {
            id: format!("bulk-{i}"),
            subject: format!("u-{}", i % 10),
            ts_ms: i as i64,
            expires_ms: i as i64 + 1000,
            payload: b"payload".to_vec(),
        }
    }

    /// A crash inside a bulk append, after its rows and one index were ingested but before it was
    /// acknowledged: the next open removes every trace of it, so the same events can be sent
    /// again (no false duplicates) and no index entry points at a sequence number reused later.
    #[test]
    fn an_interrupted_bulk_append_is_rolled_back_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store.append_events(vec![event(0)]).expect("append");
        let events: Vec<NewEvent> = (1..=5000).map(event).collect();
        let first = store.next_seq.load(Ordering::SeqCst);
        let fresh: Vec<(u64, &NewEvent)> = events.iter().zip(first..).map(|(event, seq)| (seq, event)).collect();
        let last = first + events.len() as u64 - 1;
        // What commit_bulk writes before its indexes: the marker, then the rows; then one index.
        store.set_bulk_marker(Some((first, last))).expect("marker");
        ingest_sorted(&store.events, fresh.iter().map(|(seq, event)| (seq.to_be_bytes(), encode_row(event))))
            .expect("rows");
        let mut ids: Vec<(&[u8], u64)> = fresh.iter().map(|(seq, event)| (event.id.as_bytes(), *seq)).collect();
        ids.sort_unstable();
        ingest_sorted(&store.event_ids, ids.into_iter().map(|(id, seq)| (id, seq.to_be_bytes()))).expect("ids");
        drop(store);

        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(store.event_count().expect("count"), 1);
        let mut seen = Vec::new();
        store
            .scan_events(0, &mut |row| {
                seen.push(row.id);
                true
            })
            .expect("scan");
        assert_eq!(seen, ["bulk-0"]);
        assert_eq!(store.get(Table::Meta, BULK_MARKER).expect("get"), None, "the marker is gone");
        assert!(store.next_seq.load(Ordering::SeqCst) > last, "the rolled-back numbers are not reused");
        let out = store.append_events_bulk(events).expect("append again");
        assert!(out.iter().all(|a| matches!(a, Appended::New(_))), "no false duplicates");
        let mut of_u3 = 0;
        store
            .subject_events("u-3", &mut |_| {
                of_u3 += 1;
                true
            })
            .expect("subject");
        assert_eq!(of_u3, 500);
        assert_eq!(store.event_count().expect("count"), 5001);
    }
}

/// Creates `path` (and missing parents) with owner-only permissions (0700 on Unix), and tightens
/// an existing directory to 0700.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path)?;
    Ok(())
}

/// Owner-only permissions for everything under `path`: directories 0700, files 0600.
fn restrict_tree(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let mode = if kind.is_dir() {
                    stack.push(entry.path());
                    0o700
                } else if kind.is_file() {
                    0o600
                } else {
                    continue;
                };
                if entry.metadata()?.permissions().mode() & 0o777 != mode {
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod permission_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_data_directory_and_its_files_are_owner_only() {
        let root = tempfile::tempdir().expect("tempdir");
        // A new directory is created 0700.
        let fresh = root.path().join("fresh").join("data");
        drop(EmbeddedStore::open(&fresh).expect("open"));
        assert_eq!(mode(&fresh), 0o700);
        // An existing world-readable directory and its files are tightened on open.
        let old = root.path().join("old");
        std::fs::create_dir(&old).expect("mkdir");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        drop(EmbeddedStore::open(&old).expect("open"));
        let leftover = old.join("leftover");
        std::fs::write(&leftover, b"x").expect("write");
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        drop(EmbeddedStore::open(&old).expect("reopen"));
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&leftover), 0o600);
        let mut stack = vec![old.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    assert_eq!(mode(&path), 0o700, "{}", path.display());
                    stack.push(path);
                } else {
                    assert_eq!(mode(&path), 0o600, "{}", path.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// Writes a data directory as format 1 wrote it, by hand: the five keyspaces, one event
    /// (row layout: ts, expires, id length, id, subject length, subject, payload; little-endian)
    /// with its three index entries, one record, and no format record.
    fn write_format_1(path: &Path) {
        let db = Database::builder(path).open().expect("open fjall");
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).expect("keyspace");
        let (events, ids, subjects, expiries, records) =
            (ks("events"), ks("event_ids"), ks("by_subject"), ks("by_expiry"), ks("records"));
        let mut row = Vec::new();
        row.extend_from_slice(&1_000i64.to_le_bytes());
        row.extend_from_slice(&9_000i64.to_le_bytes());
        row.extend_from_slice(&3u16.to_le_bytes());
        row.extend_from_slice(b"e-1");
        row.extend_from_slice(&3u16.to_le_bytes());
        row.extend_from_slice(b"u-1");
        row.extend_from_slice(b"payload");
        events.insert(1u64.to_be_bytes(), row).expect("row");
        ids.insert(b"e-1", 1u64.to_be_bytes()).expect("id");
        subjects.insert(b"u-1\0\0\0\0\0\0\0\0\x01", b"").expect("subject");
        let mut expiry = ((9_000u64) ^ (1 << 63)).to_be_bytes().to_vec();
        expiry.extend_from_slice(&1u64.to_be_bytes());
        expiries.insert(expiry, b"").expect("expiry");
        records.insert(b"items\0i-1", b"{\"id\":\"i-1\"}").expect("record");
        db.persist(PersistMode::SyncAll).expect("persist");
    }

    #[test]
    fn a_format_1_directory_is_migrated_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_format_1(dir.path());
        let store = EmbeddedStore::open(dir.path()).expect("open format 1");
        assert_eq!(store.format().expect("format"), EMBEDDED_FORMAT);
        assert_eq!(store.event_count().expect("count"), 1);
        let mut rows = Vec::new();
        store
            .subject_events("u-1", &mut |row| {
                rows.push(row);
                true
            })
            .expect("subject");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id.as_str(), rows[0].ts_ms, rows[0].expires_ms), ("e-1", 1_000, 9_000));
        assert_eq!(rows[0].payload, b"payload");
        assert_eq!(store.get(Table::Items, "i-1").expect("get").as_deref(), Some(&b"{\"id\":\"i-1\"}"[..]));
        assert_eq!(store.count_expired_events(9_000).expect("expired"), 1);
        // Appends continue after the old sequence numbers.
        let out = store
            .append_events(vec![NewEvent {
                id: "e-2".into(),
                subject: "u-1".into(),
                ts_ms: 2,
                expires_ms: 3,
                payload: vec![],
            }])
            .expect("append");
        assert_eq!(out, [Appended::New(2)]);
        drop(store);
        assert_eq!(EmbeddedStore::open(dir.path()).expect("reopen").format().expect("format"), EMBEDDED_FORMAT);
    }

    #[test]
    fn a_fresh_directory_is_stamped_and_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        assert_eq!(store.format().expect("format"), EMBEDDED_FORMAT);
        store
            .records
            .insert(record_key(Table::Meta, FORMAT_KEY), format!("format {}\n", EMBEDDED_FORMAT + 1))
            .expect("write");
        store.persist().expect("persist");
        drop(store);
        let err = EmbeddedStore::open(dir.path()).err().expect("a newer format is refused").to_string();
        assert!(err.contains("newer than this build"), "{err}");
        assert!(err.contains(&format!("format {}", EMBEDDED_FORMAT + 1)), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store
            .records
            .insert(record_key(Table::Meta, FORMAT_KEY), format!("format {EMBEDDED_FORMAT}\nevents 9\n"))
            .expect("write");
        store.persist().expect("persist");
        drop(store);
        let err = EmbeddedStore::open(dir.path()).err().expect("a newer family is refused").to_string();
        assert!(err.contains("`events` in layout 9"), "{err}");
    }

    /// A backup taken while another thread appends is one point in time: every event in it has
    /// all its index entries, and it opens as a data directory.
    #[test]
    fn a_backup_is_a_consistent_copy_taken_while_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        store.put(Table::Items, "i-1", b"item").expect("put");
        let writer = {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..400u64 {
                    let batch = (0..10).map(|j| NewEvent {
                        id: format!("e-{i}-{j}"),
                        subject: format!("u-{}", j % 3),
                        ts_ms: 1,
                        expires_ms: 2,
                        payload: vec![1, 2, 3],
                    });
                    store.append_events(batch.collect()).expect("append");
                }
            })
        };
        while store.event_count().expect("count") < 500 {
            std::thread::yield_now();
        }
        let backups = tempfile::tempdir().expect("tempdir");
        let backup = backups.path().join("nightly");
        let report = store.backup(&backup).expect("backup");
        writer.join().expect("writer");
        assert!(report.events >= 500 && report.events.is_multiple_of(10), "whole batches only: {report:?}");
        let copy = EmbeddedStore::open(&backup).expect("open the copy");
        assert_eq!(copy.event_count().expect("count"), report.events);
        assert_eq!(copy.format().expect("format"), EMBEDDED_FORMAT);
        let mut by_subject = 0;
        for subject in ["u-0", "u-1", "u-2"] {
            copy.subject_events(subject, &mut |_| {
                by_subject += 1;
                true
            })
            .expect("subject");
        }
        assert_eq!(by_subject, report.events, "every row has its subject index entry");
        assert_eq!(copy.count_expired_events(2).expect("expiry"), report.events);
        assert_eq!(copy.get(Table::Items, "i-1").expect("get").as_deref(), Some(&b"item"[..]));
        assert!(store.backup(&backup).is_err(), "a backup never overwrites");
    }
}

//! attune-store: where Attune keeps what must survive a restart.
//!
//! The [`Store`] trait is the storage seam: the engine holds an `Arc<dyn Store>` and never knows
//! which backend is behind it. Two kinds of data go through it:
//!
//! - **Events**, an append-only log with a global sequence number, deduplicated by event id,
//!   indexed by subject (for export and erasure) and by expiry (for retention). Appending is
//!   durable when it returns: an acknowledged event survives `kill -9`.
//! - **Records** in named [`Table`]s: small keyed values (items, consent, keys, audit, ...). Every
//!   write is durable when it returns.
//!
//! Backends: [`EmbeddedStore`] (fjall, one data directory, the default). Every backend must pass
//! [`conformance`], the one test suite written once over `&dyn Store`.
//!
//! This crate knows nothing of HTTP, JSON or the engine's types beyond plain bytes and strings.
#![warn(missing_docs)]

pub mod conformance;
mod embedded;
mod group_commit;
pub mod postgres;

pub use embedded::{BackupReport, EMBEDDED_FORMAT, EmbeddedOptions, EmbeddedStore, create_private_dir};
pub use postgres::PostgresStore;

/// Storage failures. All of them are the server's fault (a 5xx), never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (disk full, I/O error, connection lost...).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A record could not be decoded: the data directory is damaged or from an unknown version.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The data was written in a format this build cannot read (a newer one), or the backend
    /// cannot do what was asked (a backup of a backend that has its own tools).
    #[error("{0}")]
    Format(String),
}

/// Result with [`StoreError`].
pub type Result<T> = std::result::Result<T, StoreError>;

/// The tables of keyed records. The names are part of the storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Catalog items by item id.
    Items,
    /// Declared event schemas by type name.
    Schemas,
    /// Consent by person id.
    Consent,
    /// Explicit preferences by person id.
    Preferences,
    /// API keys by key id.
    Keys,
    /// Anonymous id → person id.
    Aliases,
    /// The merge log (identify calls).
    Merges,
    /// The audit log, keyed by a time-ordered id.
    Audit,
    /// Per-slot settings.
    Slots,
    /// Editorial picks.
    Picks,
    /// Personalization rules.
    Rules,
    /// Experiments.
    Experiments,
    /// Logged decisions.
    Decisions,
    /// Editorial flags.
    Flags,
    /// Trained models.
    Models,
    /// Items a person asked to forget, by `person\0item`.
    Forgotten,
    /// Aggregated counters for people without analytics consent.
    Aggregates,
    /// Erasures in progress (completed at start after a crash) and receipts.
    Erasures,
    /// Notification plans.
    Notifications,
    /// The time zone a person's latest decide request named, by person id.
    Zones,
    /// Internal metadata.
    Meta,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 21] = [
        Table::Items,
        Table::Schemas,
        Table::Consent,
        Table::Preferences,
        Table::Keys,
        Table::Aliases,
        Table::Merges,
        Table::Audit,
        Table::Slots,
        Table::Picks,
        Table::Rules,
        Table::Experiments,
        Table::Decisions,
        Table::Flags,
        Table::Models,
        Table::Forgotten,
        Table::Aggregates,
        Table::Erasures,
        Table::Notifications,
        Table::Zones,
        Table::Meta,
    ];

    /// The table's stable name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Items => "items",
            Table::Schemas => "schemas",
            Table::Consent => "consent",
            Table::Preferences => "preferences",
            Table::Keys => "keys",
            Table::Aliases => "aliases",
            Table::Merges => "merges",
            Table::Audit => "audit",
            Table::Slots => "slots",
            Table::Picks => "picks",
            Table::Rules => "rules",
            Table::Experiments => "experiments",
            Table::Decisions => "decisions",
            Table::Flags => "flags",
            Table::Models => "models",
            Table::Forgotten => "forgotten",
            Table::Aggregates => "aggregates",
            Table::Erasures => "erasures",
            Table::Notifications => "notifications",
            Table::Zones => "zones",
            Table::Meta => "meta",
        }
    }
}

/// An event to append. `payload` is opaque to the store (the engine's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The client's event id; unique across the store.
    pub id: String,
    /// The person (user or anonymous id) it belongs to.
    pub subject: String,
    /// When it happened, ms since the epoch.
    pub ts_ms: i64,
    /// When retention deletes it, ms since the epoch.
    pub expires_ms: i64,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The store's sequence number: increasing in append order.
    pub seq: u64,
    /// The client's event id.
    pub id: String,
    /// The person it belongs to.
    pub subject: String,
    /// When it happened.
    pub ts_ms: i64,
    /// When retention deletes it.
    pub expires_ms: i64,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this sequence number.
    New(u64),
    /// An event with the same id was stored before (or earlier in the same call): nothing changed.
    Duplicate,
}

/// Whether a visitor wants more.
pub type Continue = bool;

/// The storage seam. Every method is blocking; call it off the async runtime.
pub trait Store: Send + Sync {
    /// A short name of the backend (`embedded`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Appends events in order. Durable when it returns `Ok`. Events whose id is already stored
    /// (or repeated within `events`) are reported as [`Appended::Duplicate`] and not stored.
    fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>>;

    /// Appends a large batch (a bulk load such as `attune import`) with the contract of
    /// [`append_events`](Store::append_events) — deduplicated, in order, durable when it returns —
    /// but tuned for throughput rather than latency: a backend may write it in a way that is
    /// cheaper per event yet costlier per call. The default appends normally.
    fn append_events_bulk(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append_events(events)
    }

    /// Visits every event with `seq > after_seq` in sequence order until the visitor returns false.
    fn scan_events(&self, after_seq: u64, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()>;

    /// Visits the events of `subject` in sequence order.
    fn subject_events(&self, subject: &str, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()>;

    /// Deletes every event of `subject`, durably. Returns how many were deleted.
    fn delete_subject_events(&self, subject: &str) -> Result<u64>;

    /// Deletes events by sequence number, durably. Unknown numbers are ignored. Returns how many
    /// were deleted.
    fn delete_events(&self, seqs: &[u64]) -> Result<u64>;

    /// Replaces the payloads of stored events in place, durably: the events keep their sequence
    /// numbers, ids, subjects and times, so a reader tailing the log (another server) does not
    /// see them as new. Unknown numbers are ignored. Returns how many were replaced. (Used when a
    /// consent withdrawal strips fields from what is stored.)
    fn replace_payloads(&self, rows: &[(u64, Vec<u8>)]) -> Result<u64>;

    /// Deletes every event with `expires_ms <= now_ms`, durably. Returns how many were deleted.
    fn delete_expired_events(&self, now_ms: i64) -> Result<u64>;

    /// How many events are stored.
    fn event_count(&self) -> Result<u64>;

    /// How many stored events have `expires_ms <= now_ms` (what retention still has to delete).
    fn count_expired_events(&self, now_ms: i64) -> Result<u64>;

    /// Writes one record, durably.
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<()>;

    /// Writes many records of one table atomically and durably.
    fn put_many(&self, table: Table, entries: &[(String, Vec<u8>)]) -> Result<()>;

    /// Adds `n` to each named counter of `table` (a counter is a record holding a little-endian
    /// `u64`; an absent one is 0), atomically and durably: concurrent calls lose no count, also
    /// from several processes sharing the store. A key may repeat (its counts add up).
    fn add_counters(&self, table: Table, counts: &[(String, u64)]) -> Result<()>;

    /// Reads one record.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>>;

    /// Replaces one record with `apply(current value)` atomically and durably: concurrent
    /// updates of the same key — from threads of this process or from other processes sharing
    /// the store — are serialized, so none is lost (counters and other sums that several
    /// servers add to). `apply` may run more than once (a retried transaction) and must be a
    /// pure function of its argument. Returns the value written. A plain [`put`](Store::put) of
    /// the same key concurrently is not ordered against it: keep such keys update-only.
    fn update(&self, table: Table, key: &str, apply: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>) -> Result<Vec<u8>>;

    /// Deletes one record, durably. Returns whether it existed.
    fn delete(&self, table: Table, key: &str) -> Result<bool>;

    /// Visits the records of `table` whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()>;

    /// Visits the records of `table` whose key starts with `prefix`, in *descending* key order:
    /// the newest first when the keys carry a time (the review log reads its time index so,
    /// and stops after a page instead of reading the table).
    fn scan_rev(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()>;

    /// Bytes the store uses on disk (approximate).
    fn disk_bytes(&self) -> u64;

    /// Makes deletions physical: after it returns, nothing deleted before the call is left in the
    /// backend's files (log-structured backends keep deleted bytes until compaction and hold
    /// them in their write-ahead log). Erasure calls it last. Slow (it may rewrite every file);
    /// never call it on a request's hot path. The default does nothing, for backends that delete
    /// in place.
    fn purge(&self) -> Result<()> {
        Ok(())
    }

    /// Tries to become the one process that trains the models on this store: `Some` while this
    /// process holds the training lock (dropping it releases the lock), `None` if another process
    /// holds it. Never waits. A store only one process can open (the embedded one) always grants
    /// it; a shared one (PostgreSQL) grants it to one session at a time.
    fn try_training_lock(&self) -> Result<Option<Box<dyn TrainingLock>>> {
        Ok(Some(Box::new(SoleProcess)))
    }

    /// Writes a consistent point-in-time copy of everything stored into `dest`, a new directory
    /// that opens as a data directory of this backend, without stopping writes. Backends with
    /// their own backup tools (PostgreSQL: `pg_dump`, base backups) refuse.
    fn backup(&self, dest: &std::path::Path) -> Result<BackupReport> {
        let _ = dest;
        Err(StoreError::Format(format!(
            "the {} store is backed up with its own tools (see docs/operations.md)",
            self.backend()
        )))
    }
}

/// Proof that this process holds a store's training lock (see [`Store::try_training_lock`]);
/// dropping it releases the lock.
pub trait TrainingLock: Send {
    /// Whether the lock is still held (a shared store loses it when its connection dies): ask
    /// before publishing what was trained under it.
    fn is_held(&mut self) -> bool;
}

/// The training lock of a store only this process opens: always held.
struct SoleProcess;

impl TrainingLock for SoleProcess {
    fn is_held(&mut self) -> bool {
        true
    }
}

/// The value of a counter record ([`Store::add_counters`]).
pub fn counter_value(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { what: "counter", detail: format!("{} bytes", bytes.len()) })?;
    Ok(u64::from_le_bytes(bytes))
}

/// The counts of `counts` summed per key, in key order (the order a backend locks them in).
pub(crate) fn merged_counts(counts: &[(String, u64)]) -> std::collections::BTreeMap<&str, u64> {
    let mut merged = std::collections::BTreeMap::new();
    for (key, n) in counts {
        let total: &mut u64 = merged.entry(key.as_str()).or_default();
        *total = total.saturating_add(*n);
    }
    merged
}

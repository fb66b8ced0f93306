//! The PostgreSQL backend: several stateless `attune serve` processes share one database.
//!
//! Start at [`PostgresStore::connect`]. It runs the schema migrations (versioned in
//! `attune_schema_version`, in one transaction, under an advisory lock so that two servers starting
//! at once migrate once), then serves the [`Store`] trait with the embedded store's semantics.
//!
//! # Schema (in the first schema of the connection's `search_path`)
//! - `events (seq, id, subject, ts_ms, expires_ms, payload)`, **partitioned by range on `ts_ms`**:
//!   one partition per UTC month (`events_y2026m11`), created on demand before the first event of
//!   that month is inserted, plus `events_default` for times outside 1970–2199. Primary key
//!   `(seq, ts_ms)` (a unique index on a partitioned table must hold the partition key), indexes on
//!   `(subject, seq)` and `(expires_ms)`.
//! - `event_ids (id primary key, seq)`: not partitioned, so it can enforce "an event id is stored
//!   once" across every partition. Dedup is `INSERT ... ON CONFLICT DO NOTHING RETURNING`.
//! - `attune_event_counter`: one row, the next sequence number and the number of stored events.
//! - `records (tbl, key, value)`: keyed records, primary key `(tbl, key)`. `key` is `bytea`, not
//!   `text`: keys such as `person\0item` hold NUL bytes, which `text` refuses, and `bytea`
//!   compares bytewise, which is the order [`Store::scan`] promises.
//!
//! # Sequence numbers follow commit order
//! An append locks the counter row (`SELECT ... FOR UPDATE`) first, takes its numbers from it, and
//! holds the lock until it commits. So appends from every server are serialized, and a reader that
//! has seen sequence number `n` will never later see a *new* event below `n`: tailing the log with
//! `scan_events(last_seen)` misses nothing. (With a plain `bigserial`, two concurrent transactions
//! can commit out of order, and a tailing reader would skip the slower one's events for good.)
//! Deletes take the same row lock first too (they keep the event count in it), which gives every
//! writer one lock order and no deadlocks between appends and deletes.
//!
//! The price of a serialized append is one commit (one WAL flush) at a time, so appends also use
//! **group commit** within a process, as the embedded store does: the first caller to find no
//! append in flight becomes the leader and writes everything queued in one transaction.
//!
//! # Durability
//! Each group is one transaction committed with `synchronous_commit` on (the store turns it back
//! on for its sessions if the server's default is `off`): an acknowledged event is in the WAL on
//! disk. Records are written by single statements in autocommit mode, which PostgreSQL
//! group-commits by itself.
//!
//! # Retention
//! [`Store::delete_expired_events`] first drops whole monthly partitions in which every event has
//! expired (and, with them, their `event_ids` rows), which leaves no dead tuples to vacuum; then it
//! deletes the remaining expired rows in batches of 10,000. A partition dropped while another
//! server still believes it exists is recreated on demand: `events_default` carries a `CHECK` that
//! refuses times inside the monthly window, so a misrouted insert fails, and the appender creates
//! the partition and retries.
//!
//! # Purge
//! [`Store::purge`] rewrites (`VACUUM FULL`) the event partitions that deletes have touched since the
//! last purge (they are noted in `attune_purge_pending`, in the deleting transaction), `event_ids`
//! and `records`, so the deleted rows are in no table or index file; then it asks for a
//! `CHECKPOINT`. It first waits (up to two minutes) until every transaction that started before
//! the call has ended, on every server: a rewrite keeps rows that an open snapshot can still see. Each rewrite locks its table exclusively while it runs. Copies outside the
//! database's live files are beyond its reach: WAL segments not yet recycled, WAL archives,
//! replicas' WAL and backups.
//!
//! # Connections
//! A small pool (a `Mutex<Vec<Client>>`, at most [`DEFAULT_MAX_CONNECTIONS`]), connected lazily; a
//! connection found closed is dropped and replaced. No TLS: the database is on loopback or a
//! private network.

use std::{
    collections::{BTreeSet, VecDeque},
    time::{Duration, Instant},
};

use ::postgres::{Client, Config, NoTls, Row, Statement, error::SqlState};
use parking_lot::{Condvar, Mutex};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{Appended, Continue, NewEvent, Result, Store, StoreError, StoredEvent, Table, group_commit::GroupCommit};

mod append;
mod partitions;
mod pool;
mod schema;

use partitions::*;
use pool::*;
use schema::*;

/// How many connections one [`PostgresStore`] opens at most.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// The schema version this build writes; [`PostgresStore::connect`] refuses a newer database.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A store in a PostgreSQL database, shared by any number of servers.
pub struct PostgresStore {
    pool: Pool,
    /// Months (since January 1970) whose partition is known to exist.
    partitions: Mutex<FxHashSet<i64>>,
    committer: GroupCommit<Vec<NewEvent>>,
}

/// Proof that this process holds the cluster-wide training lock; dropping it releases the lock.
///
/// The lock is a session-level advisory lock on a connection of its own, so it is also released
/// when that connection dies (the server crashed, the network failed): call
/// [`TrainingLockGuard::is_held`] before publishing what was trained under it.
pub struct TrainingLockGuard {
    client: Client,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, libpq URL syntax; `options=-csearch_path%3Dname`
    /// picks a schema), runs the migrations and loads the list of event partitions.
    pub fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::open(url, Role::Primary)
    }

    /// Connects to a read replica (a hot standby streaming from the primary) to serve reads:
    /// runs no migration (a standby cannot write) and refuses a schema that is not at this
    /// build's version. Reads lag the primary by the replication delay; writes fail with
    /// PostgreSQL's read-only error, and so does [`PostgresStore::try_training_lock`].
    pub fn connect_read_only(url: &str) -> Result<PostgresStore> {
        PostgresStore::open(url, Role::ReadOnly)
    }

    fn open(url: &str, role: Role) -> Result<PostgresStore> {
        let mut config: Config =
            url.parse().map_err(|err| StoreError::Backend(format!("bad PostgreSQL URL: {err}")))?;
        if config.get_application_name().is_none() {
            config.application_name("attune");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let store = PostgresStore {
            pool: Pool::new(config, DEFAULT_MAX_CONNECTIONS),
            partitions: Mutex::new(FxHashSet::default()),
            committer: GroupCommit::new(),
        };
        let (mut conn, _) = store.pool.checkout()?;
        let ready = match role {
            Role::Primary => migrate(&mut conn.client),
            Role::ReadOnly => check_version(&mut conn.client),
        };
        store.pool.checkin(conn);
        ready?;
        let months = store.with_conn(|conn| {
            let rows = conn.client.query(LIST_PARTITIONS_SQL, &[])?;
            Ok(rows.iter().filter_map(|row| row.try_get::<_, &str>(0).ok().and_then(month_of_partition)).collect())
        })?;
        *store.partitions.lock() = months;
        Ok(store)
    }

    /// Tries to become the one server that trains: `Some` if this process now holds the lock,
    /// `None` if another session holds it. Never waits.
    ///
    /// The lock is per schema (two deployments in two schemas of one database do not contend).
    pub fn try_training_lock(&self) -> Result<Option<TrainingLockGuard>> {
        let mut client = self.pool.connect_new().map_err(Failure::from)?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock(hashtext(current_schema()), $1)", &[&LOCK_TRAINING])
            .map_err(backend_err)?;
        let acquired: bool = row.try_get(0).map_err(backend_err)?;
        Ok(acquired.then_some(TrainingLockGuard { client }))
    }

    /// The names of the event partitions that exist now, monthly ones in time order, then
    /// `events_default`.
    pub fn event_partitions(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.with_conn(|conn| {
            let rows = conn.client.query(LIST_PARTITIONS_SQL, &[])?;
            Ok(rows.iter().filter_map(|row| row.try_get::<_, String>(0).ok()).collect())
        })?;
        names.sort_by_key(|name| (month_of_partition(name).is_none(), name.clone()));
        Ok(names)
    }

    /// The schema version of the database (the highest applied migration).
    pub fn schema_version(&self) -> Result<i32> {
        self.with_conn(|conn| conn.client.query_one("SELECT max(version) FROM attune_schema_version", &[])?.try_get(0))
    }
}

impl TrainingLockGuard {
    /// Whether the lock is still held: its connection is alive (PostgreSQL releases a session's
    /// advisory locks only when it ends or unlocks, and the guard unlocks only on drop).
    pub fn is_held(&mut self) -> bool {
        self.client.is_valid(Duration::from_secs(5)).is_ok()
    }
}

impl crate::TrainingLock for TrainingLockGuard {
    fn is_held(&mut self) -> bool {
        TrainingLockGuard::is_held(self)
    }
}

impl Drop for TrainingLockGuard {
    fn drop(&mut self) {
        // Closing the connection releases the lock anyway; unlocking first releases it at once
        // even if the close is slow.
        let unlocked =
            self.client.execute("SELECT pg_advisory_unlock(hashtext(current_schema()), $1)", &[&LOCK_TRAINING]);
        if let Err(err) = unlocked {
            tracing::warn!("releasing the training lock: {err} (the connection closes, which releases it)");
        }
    }
}

/// Whether a store may migrate (and write).
#[derive(Clone, Copy)]
enum Role {
    Primary,
    ReadOnly,
}

// Advisory lock keys, second half; the first half is `hashtext(current_schema())`.
const LOCK_MIGRATE: i32 = 1;
const LOCK_PARTITIONS: i32 = 2;
const LOCK_TRAINING: i32 = 3;

/// Months from January 1970 to December 2199 get a monthly partition; other times go to
/// `events_default`. The window is fixed (not relative to now) so that the default partition never
/// holds a row that a monthly partition created later would have to take.
const FIRST_MONTH: i64 = 0;
const END_MONTH: i64 = (2200 - 1970) * 12;

/// Events per page of a scan: each page is one short query, so a slow visitor holds no locks.
const EVENT_PAGE: i64 = 2_000;
/// Records per page of a scan.
const RECORD_PAGE: i64 = 1_000;
/// Expired events deleted per transaction (each holds the counter lock, pausing appends).
const EXPIRE_BATCH: i64 = 10_000;
/// Events one group commit takes at most (a caller's bigger batch goes alone).
const MAX_GROUP_EVENTS: usize = 20_000;
/// Events per `INSERT` statement within an append's transaction.
const INSERT_CHUNK: usize = 10_000;
/// How often an append is retried after a deadlock, a serialization failure or a dropped partition.
const MAX_APPEND_ATTEMPTS: usize = 5;

const INSERT_EVENTS_SQL: &str = "\
WITH new_ids AS (
    INSERT INTO event_ids (id, seq)
    SELECT * FROM unnest($1::text[], $2::int8[])
    ON CONFLICT (id) DO NOTHING
    RETURNING seq
)
INSERT INTO events (seq, id, subject, ts_ms, expires_ms, payload)
SELECT t.seq, t.id, t.subject, t.ts_ms, t.expires_ms, t.payload
FROM unnest($2::int8[], $1::text[], $3::text[], $4::int8[], $5::int8[], $6::bytea[])
    AS t (seq, id, subject, ts_ms, expires_ms, payload)
WHERE t.seq IN (SELECT seq FROM new_ids)
RETURNING seq";

const LOCK_COUNTER_SQL: &str = "SELECT next_seq FROM attune_event_counter FOR UPDATE";
const SUBTRACT_EVENTS_SQL: &str = "UPDATE attune_event_counter SET n_events = n_events - $1";
const EVENT_COLUMNS: &str = "seq, id, subject, ts_ms, expires_ms, payload";

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn try_training_lock(&self) -> Result<Option<Box<dyn crate::TrainingLock>>> {
        Ok(PostgresStore::try_training_lock(self)?.map(|guard| Box::new(guard) as Box<dyn crate::TrainingLock>))
    }

    fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.append_grouped(events)
    }

    fn scan_events(&self, after_seq: u64, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        self.page_events(&sql, &[], seq_param(after_seq), visit)
    }

    fn subject_events(&self, subject: &str, visit: &mut dyn FnMut(StoredEvent) -> Continue) -> Result<()> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3");
        self.page_events(&sql, &[&subject], 0, visit)
    }

    fn delete_subject_events(&self, subject: &str) -> Result<u64> {
        self.delete_events_where("DELETE FROM events WHERE subject = $1 RETURNING id, tableoid", &subject)
    }

    fn delete_events(&self, seqs: &[u64]) -> Result<u64> {
        // Numbers beyond i64 were never handed out.
        let seqs: Vec<i64> = seqs.iter().filter_map(|&seq| i64::try_from(seq).ok()).collect();
        if seqs.is_empty() {
            return Ok(0);
        }
        self.delete_events_where("DELETE FROM events WHERE seq = ANY($1) RETURNING id, tableoid", &seqs)
    }

    fn replace_payloads(&self, rows: &[(u64, Vec<u8>)]) -> Result<u64> {
        let (seqs, payloads): (Vec<i64>, Vec<&[u8]>) =
            rows.iter().filter_map(|(seq, payload)| Some((i64::try_from(*seq).ok()?, payload.as_slice()))).unzip();
        if seqs.is_empty() {
            return Ok(0);
        }
        // The old row versions stay in the partition until VACUUM: mark it for `purge`.
        let sql = "\
WITH changed AS (
    UPDATE events AS e SET payload = v.payload
    FROM unnest($1::bigint[], $2::bytea[]) AS v (seq, payload)
    WHERE e.seq = v.seq
    RETURNING e.tableoid
), dirty AS (
    INSERT INTO attune_purge_pending (relname)
    SELECT DISTINCT tableoid::regclass::text FROM changed ON CONFLICT DO NOTHING
)
SELECT count(*) FROM changed";
        let n: i64 = self.with_conn(|conn| {
            let statement = conn.prepare(sql)?;
            conn.client.query_one(&statement, &[&seqs, &payloads])?.try_get(0)
        })?;
        Ok(n.max(0) as u64)
    }

    fn delete_expired_events(&self, now_ms: i64) -> Result<u64> {
        let mut deleted = self.drop_expired_partitions(now_ms)?;
        let sql = "\
WITH victims AS (
    SELECT seq, ts_ms FROM events WHERE expires_ms <= $1 LIMIT $2
)
DELETE FROM events USING victims
WHERE events.seq = victims.seq AND events.ts_ms = victims.ts_ms
RETURNING events.id, events.tableoid";
        loop {
            let n = self.delete_events_where_params(sql, &[&now_ms, &EXPIRE_BATCH])?;
            deleted += n;
            if n < EXPIRE_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    fn event_count(&self) -> Result<u64> {
        let n: i64 = self.with_conn(|conn| {
            let statement = conn.prepare("SELECT n_events FROM attune_event_counter")?;
            conn.client.query_one(&statement, &[])?.try_get(0)
        })?;
        Ok(n.max(0) as u64)
    }

    fn count_expired_events(&self, now_ms: i64) -> Result<u64> {
        let n: i64 = self.with_conn(|conn| {
            let statement = conn.prepare("SELECT count(*) FROM events WHERE expires_ms <= $1")?;
            conn.client.query_one(&statement, &[&now_ms])?.try_get(0)
        })?;
        Ok(n.max(0) as u64)
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<()> {
        self.with_conn(|conn| {
            let statement = conn.prepare(
                "INSERT INTO records (tbl, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
            )?;
            conn.client.execute(&statement, &[&table.name(), &key.as_bytes(), &value])
        })
        .map(drop)
    }

    fn put_many(&self, table: Table, entries: &[(String, Vec<u8>)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement may not update a row twice: the last write of a key wins, as it would if
        // the entries were put one after another.
        let mut last_of_key: FxHashMap<&str, usize> = FxHashMap::default();
        for (idx, (key, _)) in entries.iter().enumerate() {
            last_of_key.insert(key.as_str(), idx);
        }
        let mut keys = Vec::with_capacity(last_of_key.len());
        let mut values = Vec::with_capacity(last_of_key.len());
        for (idx, (key, value)) in entries.iter().enumerate() {
            if last_of_key.get(key.as_str()) == Some(&idx) {
                keys.push(key.as_bytes());
                values.push(value.as_slice());
            }
        }
        self.with_conn(|conn| {
            let statement = conn.prepare(
                "INSERT INTO records (tbl, key, value) SELECT $1::text, * FROM unnest($2::bytea[], $3::bytea[]) \
                 ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
            )?;
            conn.client.execute(&statement, &[&table.name(), &keys, &values])
        })
        .map(drop)
    }

    fn add_counters(&self, table: Table, counts: &[(String, u64)]) -> Result<()> {
        let merged = crate::merged_counts(counts);
        if merged.is_empty() {
            return Ok(());
        }
        let keys: Vec<&[u8]> = merged.keys().map(|key| key.as_bytes()).collect();
        let zero = 0u64.to_le_bytes().to_vec();
        // One transaction: create missing counters, lock every row in key order (two servers
        // adding to the same counters wait for each other instead of deadlocking), add, write.
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            tx.execute(
                "INSERT INTO records (tbl, key, value) SELECT $1::text, k, $3 FROM unnest($2::bytea[]) AS k ORDER BY k \
                 ON CONFLICT (tbl, key) DO NOTHING",
                &[&table.name(), &keys, &zero],
            )?;
            let rows = tx.query(
                "SELECT key, value FROM records WHERE tbl = $1 AND key = ANY($2) ORDER BY key FOR UPDATE",
                &[&table.name(), &keys],
            )?;
            let mut new_keys: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
            let mut new_values: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
            for row in &rows {
                let key: Vec<u8> = row.try_get(0)?;
                let value: Vec<u8> = row.try_get(1)?;
                let n = std::str::from_utf8(&key).ok().and_then(|key| merged.get(key)).copied().unwrap_or(0);
                // A record that is not a counter is left alone (and reported below).
                let Ok(before) = crate::counter_value(&value) else { return Ok(Err(value.len())) };
                new_keys.push(key);
                new_values.push(before.saturating_add(n).to_le_bytes().to_vec());
            }
            tx.execute(
                "UPDATE records AS r SET value = v.value FROM unnest($2::bytea[], $3::bytea[]) AS v(key, value) \
                 WHERE r.tbl = $1 AND r.key = v.key",
                &[&table.name(), &new_keys, &new_values],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })?
        .map_err(|n_bytes| StoreError::Corrupt { what: "counter", detail: format!("{n_bytes} bytes") })
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        let row = self.with_conn(|conn| {
            let statement = conn.prepare("SELECT value FROM records WHERE tbl = $1 AND key = $2")?;
            conn.client.query_opt(&statement, &[&table.name(), &key.as_bytes()])
        })?;
        match row {
            Some(row) => Ok(Some(row.try_get(0).map_err(|err| corrupt("record value", err))?)),
            None => Ok(None),
        }
    }

    fn update(&self, table: Table, key: &str, apply: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>) -> Result<Vec<u8>> {
        self.with_conn(|conn| {
            // The row lock (`FOR UPDATE`) orders concurrent updates of the key across servers;
            // a missing row is inserted, and if another transaction inserted it first, it is
            // read (locked) again.
            let mut tx = conn.client.transaction()?;
            loop {
                let current = tx.query_opt(
                    "SELECT value FROM records WHERE tbl = $1 AND key = $2 FOR UPDATE",
                    &[&table.name(), &key.as_bytes()],
                )?;
                match current {
                    Some(row) => {
                        let old: &[u8] = row.try_get(0)?;
                        let value = apply(Some(old));
                        tx.execute(
                            "UPDATE records SET value = $3 WHERE tbl = $1 AND key = $2",
                            &[&table.name(), &key.as_bytes(), &value],
                        )?;
                        tx.commit()?;
                        return Ok(value);
                    }
                    None => {
                        let value = apply(None);
                        let inserted = tx.execute(
                            "INSERT INTO records (tbl, key, value) VALUES ($1, $2, $3) ON CONFLICT (tbl, key) DO NOTHING",
                            &[&table.name(), &key.as_bytes(), &value],
                        )?;
                        if inserted == 1 {
                            tx.commit()?;
                            return Ok(value);
                        }
                    }
                }
            }
        })
    }

    fn delete(&self, table: Table, key: &str) -> Result<bool> {
        let n = self.with_conn(|conn| {
            let statement = conn.prepare("DELETE FROM records WHERE tbl = $1 AND key = $2")?;
            conn.client.execute(&statement, &[&table.name(), &key.as_bytes()])
        })?;
        Ok(n > 0)
    }

    fn scan(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()> {
        let upper = prefix_successor(prefix.as_bytes());
        // `key >= from` where `from` is the prefix, then the key just after the last one seen
        // (appending a zero byte gives the next byte string in bytewise order).
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let rows = self.with_conn(|conn| match &upper {
                Some(upper) => {
                    let statement = conn.prepare(
                        "SELECT key, value FROM records WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                    )?;
                    conn.client.query(&statement, &[&table.name(), &from, upper, &RECORD_PAGE])
                }
                None => {
                    let statement = conn
                        .prepare("SELECT key, value FROM records WHERE tbl = $1 AND key >= $2 ORDER BY key LIMIT $3")?;
                    conn.client.query(&statement, &[&table.name(), &from, &RECORD_PAGE])
                }
            })?;
            let n_rows = rows.len() as i64;
            for row in &rows {
                let (key_str, value) = record_row(row, table)?;
                let key = key_str.as_bytes();
                if !visit(key_str, value) {
                    return Ok(());
                }
                from.clear();
                from.extend_from_slice(key);
                from.push(0);
            }
            if n_rows < RECORD_PAGE {
                return Ok(());
            }
        }
    }

    fn scan_rev(&self, table: Table, prefix: &str, visit: &mut dyn FnMut(&str, &[u8]) -> Continue) -> Result<()> {
        // `key >= prefix AND key < upper`, newest first; each next page ends below the last key
        // seen (every key under the prefix sorts at or above the prefix itself).
        let lower = prefix.as_bytes().to_vec();
        let mut upper = prefix_successor(prefix.as_bytes());
        loop {
            let rows = self.with_conn(|conn| match &upper {
                Some(upper) => {
                    let statement = conn.prepare(
                        "SELECT key, value FROM records WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4",
                    )?;
                    conn.client.query(&statement, &[&table.name(), &lower, upper, &RECORD_PAGE])
                }
                None => {
                    let statement = conn.prepare(
                        "SELECT key, value FROM records WHERE tbl = $1 AND key >= $2 ORDER BY key DESC LIMIT $3",
                    )?;
                    conn.client.query(&statement, &[&table.name(), &lower, &RECORD_PAGE])
                }
            })?;
            let n_rows = rows.len() as i64;
            for row in &rows {
                let (key_str, value) = record_row(row, table)?;
                let key = key_str.as_bytes();
                if !visit(key_str, value) {
                    return Ok(());
                }
                upper = Some(key.to_vec());
            }
            if n_rows < RECORD_PAGE {
                return Ok(());
            }
        }
    }

    fn purge(&self) -> Result<()> {
        // Claim the pending partitions first: a delete that commits after this re-adds its
        // partition for the next purge, instead of being forgotten by this one.
        let claimed: Vec<String> = self.with_conn(|conn| {
            let rows = conn.client.query("DELETE FROM attune_purge_pending RETURNING relname", &[])?;
            Ok(rows.iter().filter_map(|row| row.try_get::<_, String>(0).ok()).collect())
        })?;
        let rewritten = self.rewrite_relations(&claimed);
        if rewritten.is_err() {
            let restored = self.with_conn(|conn| {
                conn.client.execute(
                    "INSERT INTO attune_purge_pending (relname) SELECT * FROM unnest($1::text[]) ON CONFLICT DO NOTHING",
                    &[&claimed],
                )
            });
            if let Err(err) = restored {
                tracing::warn!("purge failed, and so did noting its partitions for the next one: {err}");
            }
        }
        rewritten
    }

    fn disk_bytes(&self) -> u64 {
        let bytes = self.with_conn(|conn| {
            conn.client
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(oid)), 0)::int8 FROM pg_class \
                     WHERE relkind = 'r' \
                       AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
                    &[],
                )?
                .try_get::<_, i64>(0)
        });
        match bytes {
            Ok(bytes) => bytes.max(0) as u64,
            Err(err) => {
                tracing::warn!("measuring the PostgreSQL store's size: {err}");
                0
            }
        }
    }
}

impl PostgresStore {
    /// `VACUUM FULL` of the given event partitions, `event_ids` and `records` (whose overwritten and
    /// deleted values are dead tuples too), then a `CHECKPOINT` if the role may run one.
    fn rewrite_relations(&self, partitions: &[String]) -> Result<()> {
        self.wait_for_older_transactions()?;
        let names = partitions
            .iter()
            .map(String::as_str)
            // Names come from the catalog, but they are spliced into SQL: only ours pass.
            .filter(|name| *name == "events_default" || month_of_partition(name).is_some())
            .chain(["event_ids", "records"]);
        for name in names {
            let vacuumed = self.with_conn_raw(|conn| conn.client.batch_execute(&format!("VACUUM (FULL) {name}")));
            match vacuumed {
                Ok(()) => {}
                // Retention dropped it since: its rows went with its files.
                Err(failure) if failure.is_undefined_table() => {}
                Err(failure) => return Err(failure.into()),
            }
        }
        // Lets PostgreSQL recycle the WAL that still holds the deleted rows; it needs superuser or
        // the pg_checkpoint role, and a server checkpoints on its own within checkpoint_timeout.
        if let Err(err) = self.with_conn(|conn| conn.client.batch_execute("CHECKPOINT")) {
            tracing::info!("purge could not force a checkpoint ({err}); the server's next one recycles the WAL");
        }
        Ok(())
    }
}

impl PostgresStore {
    /// Waits until no transaction that may still see rows deleted before this call is open in
    /// the database (on any server). `VACUUM FULL` keeps a deleted row that some open snapshot can
    /// still see ("recently dead"), so rewriting earlier would copy it into the new files.
    fn wait_for_older_transactions(&self) -> Result<()> {
        let deadline = Instant::now() + PURGE_WAIT;
        // A fresh transaction id: every delete that returned before this call committed below it.
        let horizon: String =
            self.with_conn(|conn| conn.client.query_one("SELECT pg_current_xact_id()::text", &[])?.try_get(0))?;
        loop {
            let blockers: Vec<String> = self.with_conn(|conn| {
                let rows = conn.client.query(OLDER_TRANSACTIONS_SQL, &[&horizon])?;
                Ok(rows.iter().filter_map(|row| row.try_get::<_, String>(0).ok()).collect())
            })?;
            if blockers.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "purge waited {} s for transactions older than the deletes to end: {}",
                    PURGE_WAIT.as_secs(),
                    blockers.join(", ")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How long a purge waits for older transactions (each of ours is one short statement).
const PURGE_WAIT: Duration = Duration::from_secs(120);

/// What still holds back the removal of rows deleted before transaction `$1`: open snapshots and
/// transactions of this database, replication slots (a standby's `hot_standby_feedback`),
/// prepared transactions. `age(x) > age($1)` means `x` is older than `$1`.
const OLDER_TRANSACTIONS_SQL: &str = "\
WITH horizon AS (SELECT age($1::text::xid8::xid) AS age)
SELECT 'backend ' || pid || ' (' || coalesce(application_name, '') || ')'
FROM pg_stat_activity, horizon
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (age(backend_xmin) > horizon.age OR age(backend_xid) > horizon.age)
UNION ALL
SELECT 'replication slot ' || slot_name FROM pg_replication_slots, horizon
WHERE age(xmin) > horizon.age OR (database = current_database() AND age(catalog_xmin) > horizon.age)
UNION ALL
SELECT 'prepared transaction ' || gid FROM pg_prepared_xacts, horizon
WHERE database = current_database() AND age(transaction) > horizon.age";

// ---------------------------------------------------------------------------------------------
// Rows, keys, errors.

fn decode_event(row: &Row) -> Result<StoredEvent> {
    let field = |err: ::postgres::Error| corrupt("event row", err);
    let seq: i64 = row.try_get(0).map_err(field)?;
    Ok(StoredEvent {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt { what: "event row", detail: format!("seq {seq}") })?,
        id: row.try_get(1).map_err(field)?,
        subject: row.try_get(2).map_err(field)?,
        ts_ms: row.try_get(3).map_err(field)?,
        expires_ms: row.try_get(4).map_err(field)?,
        payload: row.try_get(5).map_err(field)?,
    })
}

fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A `(key, value)` row of `records`, the key checked as UTF-8 (`table` names it in the error).
fn record_row(row: &Row, table: Table) -> Result<(&str, &[u8])> {
    let key: &[u8] = row.try_get(0).map_err(|err| corrupt("record key", err))?;
    let value: &[u8] = row.try_get(1).map_err(|err| corrupt("record value", err))?;
    let key = std::str::from_utf8(key)
        .map_err(|_| StoreError::Corrupt { what: "record key", detail: table.name().to_owned() })?;
    Ok((key, value))
}

/// The smallest byte string greater than every string starting with `prefix`, if there is one.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

fn backend_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn corrupt(what: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what, detail: err.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_partition_bounds() {
        assert_eq!(month_start_ms(0), 0);
        assert_eq!(month_start_ms((2026 - 1970) * 12 + 10), 1_793_491_200_000, "2026-11-01");
        assert_eq!(month_start_ms(END_MONTH), 7_258_118_400_000, "2200-01-01, as in the migration");
        assert_eq!(month_start_ms(-1), -2_678_400_000, "1969-12-01");
        assert_eq!(monthly_partition_of(-1), None, "before 1970: the default partition");
        assert_eq!(monthly_partition_of(0), Some(0));
        assert_eq!(monthly_partition_of(7_258_118_400_000), None);
        assert_eq!(monthly_partition_of(7_258_118_400_000 - 1), Some(END_MONTH - 1));
        for month in [0, 1, 11, 12, 25, 685, END_MONTH - 1] {
            assert_eq!(monthly_partition_of(month_start_ms(month)), Some(month));
            assert_eq!(monthly_partition_of(month_start_ms(month + 1) - 1), Some(month));
            assert_eq!(month_of_partition(&partition_name(month)), Some(month));
        }
        assert_eq!(partition_name(682), "events_y2026m11");
        assert_eq!(month_of_partition("events_default"), None);
        assert_eq!(month_of_partition("events_y2026m13"), None);
        assert_eq!(month_of_partition("events_y2026m1"), None);
    }

    #[test]
    fn prefix_successors() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(b"u-1\0"), Some(b"u-1\x01".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
    }
}

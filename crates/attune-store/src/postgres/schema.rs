//! The database schema: the migrations (applied once, under an advisory lock, by the first
//! server of a deployment) and the version check a read replica makes.

use super::*;

/// Migrations, in order: (version, description, SQL). Never edit one that has shipped; add another.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "events partitioned by month, event ids, counter, records",
    r#"
CREATE TABLE attune_event_counter (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_seq bigint NOT NULL,
    n_events bigint NOT NULL
);
INSERT INTO attune_event_counter (next_seq, n_events) VALUES (1, 0);

CREATE TABLE events (
    seq bigint NOT NULL,
    id text NOT NULL,
    subject text NOT NULL,
    ts_ms bigint NOT NULL,
    expires_ms bigint NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (seq, ts_ms)
) PARTITION BY RANGE (ts_ms);
CREATE INDEX events_subject_seq ON events (subject, seq);
CREATE INDEX events_expires ON events (expires_ms);
CREATE TABLE events_default PARTITION OF events DEFAULT;
-- 0 = 1970-01-01, 7258118400000 = 2200-01-01 (UTC): the monthly window. The check lets PostgreSQL
-- create a monthly partition without scanning this one, and refuses a row whose partition is missing.
ALTER TABLE events_default ADD CONSTRAINT events_default_outside_monthly_window
    CHECK (ts_ms < 0 OR ts_ms >= 7258118400000);

CREATE TABLE event_ids (
    id text PRIMARY KEY,
    seq bigint NOT NULL
);

CREATE TABLE records (
    tbl text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tbl, key)
);

-- Event partitions that hold deleted rows which `purge` has not rewritten yet.
CREATE TABLE attune_purge_pending (
    relname text PRIMARY KEY
);
"#,
)];

// ---------------------------------------------------------------------------------------------
// Migrations.

pub(super) fn migrate(client: &mut Client) -> std::result::Result<(), Failure> {
    let schema: Option<String> = client.query_one("SELECT current_schema()", &[])?.try_get(0)?;
    let Some(schema) = schema else {
        return Err(Failure::Other(
            "no schema of the connection's search_path exists: create it, or fix search_path".to_owned(),
        ));
    };
    let mut tx = client.transaction()?;
    // Two servers starting at once: the second waits here, then finds the work done.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", &[&LOCK_MIGRATE])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS attune_schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let current: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM attune_schema_version", &[])?.try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(Failure::Other(format!(
            "the database schema {schema:?} is at version {current}, newer than this build's {SCHEMA_VERSION}: \
             upgrade attune"
        )));
    }
    for &(version, description, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO attune_schema_version (version, description) VALUES ($1, $2)",
            &[&version, &description],
        )?;
        tracing::info!("PostgreSQL schema {schema:?} migrated to version {version}: {description}");
    }
    tx.commit()?;
    Ok(())
}

/// A read-only store's check: the primary has migrated the schema to exactly this build's version.
pub(super) fn check_version(client: &mut Client) -> std::result::Result<(), Failure> {
    let version: Option<i32> = match client.query_one("SELECT max(version) FROM attune_schema_version", &[]) {
        Ok(row) => row.try_get(0)?,
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(err) => return Err(err.into()),
    };
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(version) => Err(Failure::Other(format!(
            "the replica's schema is at version {version}, this build needs {SCHEMA_VERSION}: \
             start a server of this build against the primary first (it migrates), and wait for the replica"
        ))),
        None => Err(Failure::Other(
            "no Attune schema on the replica: start a server against the primary first (it migrates)".to_owned(),
        )),
    }
}

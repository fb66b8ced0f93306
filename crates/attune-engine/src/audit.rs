//! The audit log: who did what to which id, when (`GET /v1/audit`). Entries hold ids only; an
//! erasure rewrites the targets that name the erased person (`privacy/`).

use std::sync::Arc;

use attune_store::{Store, Table};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::Result;
use crate::records::{from_json, to_json};

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Time-ordered id.
    pub id: String,
    /// The key that acted (`open` when the server runs without keys).
    pub key_id: String,
    /// What was done (`items.put`, `users.erase`, `consent.put`, ...).
    pub action: String,
    /// What it was done to (an id, never personal data beyond ids).
    pub target: String,
    /// When.
    pub at_ms: i64,
}

/// Writes and reads the audit log (`Table::Audit`). Holds no state of its own: cheap to clone
/// into every component that audits what it changes.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl AuditLog {
    /// The audit log of `store`, timed by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> AuditLog {
        AuditLog { store, clock }
    }

    /// Records an action.
    pub fn record(&self, key_id: &str, action: &str, target: &str) -> Result<()> {
        let entry = AuditEntry {
            id: ulid::Ulid::generate().to_string(),
            key_id: key_id.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            at_ms: self.clock.now_ms(),
        };
        self.store.put(Table::Audit, &entry.id, &to_json(&entry))?;
        Ok(())
    }

    /// Entries at or after `since_ms`, oldest first, at most `limit`.
    pub fn entries(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut entries = Vec::new();
        let mut failure = None;
        self.store.scan(Table::Audit, "", &mut |_, bytes| match from_json::<AuditEntry>("audit", bytes) {
            Ok(entry) => {
                if entry.at_ms >= since_ms {
                    entries.push(entry);
                }
                entries.len() < limit
            }
            Err(err) => {
                failure = Some(err);
                false
            }
        })?;
        failure.map_or(Ok(entries), Err)
    }
}

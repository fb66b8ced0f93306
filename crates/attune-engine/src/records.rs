//! How the engine's records meet the store: JSON encoding of records, scans that collect or
//! decode a table's records, and event payloads (postcard of [`attune_core::Event`]). The
//! lowest layer of the engine: every component uses it, it uses none.

use attune_core::Event;
use attune_store::{Store, StoredEvent, Table};
use serde::{Deserialize, Serialize};

use crate::error::{Result, corrupt};

/// A record as JSON bytes.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("engine records always serialize to JSON")
}

/// A JSON record decoded (`what` names it in errors).
pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| corrupt(what, err))
}

/// Every record of `table` under `prefix`, in key order.
pub(crate) fn scan_records(store: &dyn Store, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut records = Vec::new();
    store.scan(table, prefix, &mut |key, bytes| {
        records.push((key.to_owned(), bytes.to_vec()));
        true
    })?;
    Ok(records)
}

/// Every record of `table` under `prefix`, decoded from JSON (`what` names it in errors).
pub(crate) fn scan_json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    table: Table,
    prefix: &str,
    what: &'static str,
) -> Result<Vec<(String, T)>> {
    scan_records(store, table, prefix)?.into_iter().map(|(key, bytes)| Ok((key, from_json(what, &bytes)?))).collect()
}

/// Decodes a stored event payload.
pub fn decode_event(payload: &[u8]) -> Result<Event> {
    postcard::from_bytes(payload).map_err(|err| corrupt("event payload", err))
}

/// Runs an event scan of the store (`scan`: `|visit| store.scan_events(0, visit)` or the like)
/// with a visitor that may fail: `visit` answers whether to go on, and its first error stops
/// the scan and is returned.
pub(crate) fn try_events(
    scan: impl FnOnce(&mut dyn FnMut(StoredEvent) -> bool) -> attune_store::Result<()>,
    mut visit: impl FnMut(StoredEvent) -> Result<bool>,
) -> Result<()> {
    let mut failure = None;
    scan(&mut |row| match visit(row) {
        Ok(go_on) => go_on,
        Err(err) => {
            failure = Some(err);
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}

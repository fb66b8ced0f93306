//! Time zone names, interned: a profile keeps the zone it learned as a 2-byte [`ZoneId`] into
//! one process-wide table instead of a `String` per person (at 1M people, 32 bytes of `String`
//! header and a heap block each, for a handful of distinct names).
//!
//! The table only grows and is never persisted: a [`ZoneId`] means something in this process
//! only, and serializes as its name. It holds at most [`MAX_ZONES`] names (the engine interns only
//! names `jiff` knows: a few hundred IANA zones, in whatever letter case events spell them); past
//! that, [`ZoneId::intern`] answers `None`. Interning memoizes and reads no clock, file or
//! randomness, so the crate stays pure.

use std::{
    num::NonZeroU16,
    sync::{LazyLock, RwLock},
};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most names the table holds.
pub const MAX_ZONES: usize = u16::MAX as usize;

/// An interned time zone name: its place in the table plus one (never zero, so an
/// `Option<(i64, ZoneId)>` takes 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneId(NonZeroU16);

#[derive(Default)]
struct Table {
    names: Vec<&'static str>,
    ids: FxHashMap<&'static str, ZoneId>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(|| RwLock::new(Table::default()));

impl ZoneId {
    /// The id of `name`, added to the table the first time; `None` when the table is full.
    pub fn intern(name: &str) -> Option<ZoneId> {
        if let Some(&id) = TABLE.read().unwrap_or_else(|e| e.into_inner()).ids.get(name) {
            return Some(id);
        }
        let mut table = TABLE.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = table.ids.get(name) {
            return Some(id);
        }
        let id = ZoneId(u16::try_from(table.names.len() + 1).ok().and_then(NonZeroU16::new)?);
        // Leaked on purpose: the table lives as long as the process and holds each name once.
        let name: &'static str = Box::leak(name.into());
        table.names.push(name);
        table.ids.insert(name, id);
        Some(id)
    }

    /// The zone's name.
    pub fn name(self) -> &'static str {
        TABLE.read().unwrap_or_else(|e| e.into_inner()).names[usize::from(self.0.get() - 1)]
    }
}

impl Serialize for ZoneId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ZoneId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ZoneId, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        ZoneId::intern(&name).ok_or_else(|| serde::de::Error::custom("the table of time zone names is full"))
    }
}

/// A time zone seen in the context of a decision (`POST /v1/decide`), and when: what the engine
/// keeps per person (and stores, as JSON `{"timezone": …, "at_ms": …}`) so that a zone a site
/// sends only with its decide requests still places the person's quiet hours and send hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenZone {
    /// The zone.
    pub timezone: ZoneId,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once_and_reads_back() {
        let berlin = ZoneId::intern("Europe/Berlin").unwrap();
        let tokyo = ZoneId::intern("Asia/Tokyo").unwrap();
        assert_ne!(berlin, tokyo);
        assert_eq!(ZoneId::intern("Europe/Berlin"), Some(berlin));
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!(tokyo.name(), "Asia/Tokyo");
        assert_eq!(std::mem::size_of::<Option<ZoneId>>(), 2);
    }

    #[test]
    fn it_serializes_as_its_name() {
        let zone = ZoneId::intern("America/New_York").unwrap();
        let json = serde_json::to_string(&zone).unwrap();
        assert_eq!(json, "\"America/New_York\"");
        assert_eq!(serde_json::from_str::<ZoneId>(&json).unwrap(), zone);
    }
}

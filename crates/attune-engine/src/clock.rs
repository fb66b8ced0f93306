//! Time as a dependency: the engine never reads the system clock directly, so tests can move time
//! (retention, decay, journey stages) without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of "now".
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }

    /// Moves the clock.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Advances the clock by `delta_ms`.
    pub fn advance(&self, delta_ms: i64) {
        self.0.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats ms since the epoch as RFC 3339 (UTC, second precision when whole).
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_string(),
        Err(_) => String::from("1970-01-01T00:00:00Z"),
    }
}

/// The person's local hour when `event` happened, if its context says: `local_time` (RFC 3339
/// with the person's offset) or a valid `timezone`.
pub(crate) fn local_hour_of(event: &attune_core::Event) -> Option<u8> {
    local_hour(event.context.local_time.as_deref(), event.context.timezone.as_deref(), event.ts_ms)
}

/// A person's local hour at `ts_ms`: the wall clock of `local_time` (RFC 3339 with the person's
/// offset: the digits after `T`) when it is valid, else `ts_ms` in the IANA zone `timezone`.
pub(crate) fn local_hour(local_time: Option<&str>, timezone: Option<&str>, ts_ms: i64) -> Option<u8> {
    if let Some(local) = local_time
        && local.parse::<jiff::Timestamp>().is_ok()
    {
        return local.split_once('T').and_then(|(_, time)| time.get(..2)?.parse().ok());
    }
    let tz = jiff::tz::TimeZone::get(timezone?).ok()?;
    let ts = jiff::Timestamp::from_millisecond(ts_ms).ok()?;
    Some(ts.to_zoned_datetime(tz).hour() as u8)
}

/// Where decision ids come from: the seam that makes a decision reproducible in tests.
pub trait Ids: Send + Sync {
    /// A new decision id: `dec-…`, or `preview-…` for a preview that is never logged.
    fn decision_id(&self, preview: bool) -> String;
}

/// ULIDs: unique across servers, ordered by time.
#[derive(Debug, Default, Clone, Copy)]
pub struct UlidIds;

impl Ids for UlidIds {
    fn decision_id(&self, preview: bool) -> String {
        format!("{}-{}", if preview { "preview" } else { "dec" }, ulid::Ulid::generate())
    }
}

/// Numbered ids (`dec-1`, `dec-2`, …) for tests.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicI64);

impl Ids for SequentialIds {
    fn decision_id(&self, preview: bool) -> String {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{}-{n}", if preview { "preview" } else { "dec" })
    }
}

//! Explicit preferences: what a person told us (an onboarding quiz, a preferences page).

use serde::{Deserialize, Serialize};

use crate::SeenZone;

/// Quiet hours in the person's time zone, `HH:MM` to `HH:MM` (may wrap past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Minutes after midnight when quiet starts.
    pub start_min: u16,
    /// Minutes after midnight when quiet ends.
    pub end_min: u16,
}

impl QuietHours {
    /// Parses `"21:00"`-style times.
    pub fn parse(start: &str, end: &str) -> Option<QuietHours> {
        Some(QuietHours { start_min: parse_hhmm(start)?, end_min: parse_hhmm(end)? })
    }

    /// Whether the minute of day `min` is inside quiet hours.
    pub fn contains(&self, min: u16) -> bool {
        if self.start_min <= self.end_min {
            (self.start_min..self.end_min).contains(&min)
        } else {
            min >= self.start_min || min < self.end_min
        }
    }

    /// Formats a minute of day as `HH:MM`.
    pub fn format(min: u16) -> String {
        format!("{:02}:{:02}", min / 60, min % 60)
    }
}

fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A person's explicit preferences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preferences {
    /// Declared goals (tags), e.g. `stress_relief`.
    pub goals: Vec<String>,
    /// Tags to show less of: items carrying them are never recommended.
    pub less_of: Vec<String>,
    /// `false` when the person paused personalization.
    pub personalization: bool,
    /// Quiet hours for notifications.
    pub quiet_hours: Option<QuietHours>,
    /// The person's time zone, if they told us.
    pub timezone: Option<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences { goals: Vec::new(), less_of: Vec::new(), personalization: true, quiet_hours: None, timezone: None }
    }
}

impl Preferences {
    /// The time zone in force for a person: the one set here, else the latest one seen for
    /// them — in the `context.timezone` of their events (`profile`) or of their decide requests
    /// (`decided`; on a tie in time, the events') — with where it comes from (`preferences`,
    /// `events` or `decide`). `None`: UTC.
    pub fn zone_in_force<'a>(
        &'a self,
        profile: Option<&crate::Profile>,
        decided: Option<SeenZone>,
    ) -> Option<(&'a str, &'static str)> {
        if let Some(zone) = &self.timezone {
            return Some((zone.as_str(), "preferences"));
        }
        latest_seen_zone(profile, decided)
    }
}

/// The latest time zone seen for a person, in their events' context (`profile`) or their
/// decide requests' (`decided`; a tie in time goes to the events), with its source name
/// (`events` or `decide`).
pub fn latest_seen_zone(
    profile: Option<&crate::Profile>,
    decided: Option<SeenZone>,
) -> Option<(&'static str, &'static str)> {
    let from_events = profile.and_then(|p| p.timezone.map(|zone| (p.timezone_ms, zone)));
    match (from_events, decided) {
        (Some((at_ms, _)), Some(seen)) if seen.at_ms > at_ms => Some((seen.timezone.name(), "decide")),
        (Some((_, zone)), _) => Some((zone.name(), "events")),
        (None, Some(seen)) => Some((seen.timezone.name(), "decide")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = QuietHours::parse("21:00", "08:00").unwrap();
        assert!(q.contains(22 * 60));
        assert!(q.contains(7 * 60 + 59));
        assert!(!q.contains(8 * 60));
        assert!(!q.contains(12 * 60));
        assert_eq!(QuietHours::parse("25:00", "08:00"), None);
        assert_eq!(QuietHours::parse("9:00", "08:00"), None);
        assert_eq!(QuietHours::format(q.start_min), "21:00");
    }

    #[test]
    fn the_zone_in_force_is_the_preferences_else_the_latest_seen() {
        let profile =
            crate::Profile { timezone: crate::ZoneId::intern("Asia/Tokyo"), timezone_ms: 1_000, ..Default::default() };
        let seen = |at_ms| Some(SeenZone { timezone: crate::ZoneId::intern("Europe/Berlin").unwrap(), at_ms });
        let none = Preferences::default();
        assert_eq!(none.zone_in_force(None, None), None);
        assert_eq!(none.zone_in_force(Some(&profile), None), Some(("Asia/Tokyo", "events")));
        assert_eq!(none.zone_in_force(None, seen(5)), Some(("Europe/Berlin", "decide")));
        // The later of the two; a tie goes to the events.
        assert_eq!(none.zone_in_force(Some(&profile), seen(999)), Some(("Asia/Tokyo", "events")));
        assert_eq!(none.zone_in_force(Some(&profile), seen(1_000)), Some(("Asia/Tokyo", "events")));
        assert_eq!(none.zone_in_force(Some(&profile), seen(1_001)), Some(("Europe/Berlin", "decide")));
        let set = Preferences { timezone: Some("America/New_York".into()), ..Preferences::default() };
        assert_eq!(set.zone_in_force(Some(&profile), seen(1_001)), Some(("America/New_York", "preferences")));
    }
}

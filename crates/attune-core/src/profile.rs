//! Profiles: what Attune knows about one consenting person, folded incrementally from events.
//!
//! Every signal that fades is a [`Decayed`] sum: `value · 2^(-(t - as_of)/half_life)`. Adding a
//! contribution at time `t` gives the same result whatever order events arrive in, so a profile
//! folded live equals the one rebuilt from the store at start (tested below).

use serde::{Deserialize, Serialize};

use crate::{BuiltinType, Channel, EventType, JourneySignal, ZoneId};

/// A dense item index (the engine interns item ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemIdx(pub u32);

/// A dense tag index (the engine interns tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TagIdx(pub u32);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Half-life of tag affinities.
pub const AFFINITY_HALF_LIFE_MS: i64 = 30 * DAY_MS;
/// Half-life of the activity behind `engagement`.
pub const ACTIVITY_HALF_LIFE_MS: i64 = 14 * DAY_MS;
/// Half-life of buying intent (product views, carts).
pub const INTENT_HALF_LIFE_MS: i64 = 7 * DAY_MS;
/// A gap longer than this starts a new session.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;
/// How many recent items a profile keeps.
pub const MAX_RECENT: usize = 50;
/// How many tag affinities a profile keeps (the weakest are dropped).
pub const MAX_AFFINITIES: usize = 64;

/// An exponentially decayed sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Decayed {
    value: f32,
    as_of_ms: i64,
}

impl Decayed {
    /// Adds `weight` observed at `ts_ms`.
    pub fn add(&mut self, weight: f32, ts_ms: i64, half_life_ms: i64) {
        if self.value == 0.0 {
            *self = Decayed { value: weight, as_of_ms: ts_ms };
        } else if ts_ms >= self.as_of_ms {
            self.value = self.value * decay(ts_ms - self.as_of_ms, half_life_ms) + weight;
            self.as_of_ms = ts_ms;
        } else {
            self.value += weight * decay(self.as_of_ms - ts_ms, half_life_ms);
        }
    }

    /// The value at `now_ms` (never grows into the future; a past `now` reads the stored value).
    pub fn value_at(&self, now_ms: i64, half_life_ms: i64) -> f32 {
        self.value * decay((now_ms - self.as_of_ms).max(0), half_life_ms)
    }
}

fn decay(elapsed_ms: i64, half_life_ms: i64) -> f32 {
    (-(elapsed_ms as f64) / half_life_ms as f64 * std::f64::consts::LN_2).exp() as f32
}

/// One tag affinity: the tag and its decayed sum in 16 bytes (a `(TagIdx, Decayed)` pair takes
/// 24, padding included).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affinity {
    /// The tag.
    pub tag: TagIdx,
    value: f32,
    as_of_ms: i64,
}

impl Affinity {
    fn new(tag: TagIdx, decayed: Decayed) -> Affinity {
        Affinity { tag, value: decayed.value, as_of_ms: decayed.as_of_ms }
    }

    /// The decayed sum.
    pub fn decayed(&self) -> Decayed {
        Decayed { value: self.value, as_of_ms: self.as_of_ms }
    }

    fn add(&mut self, weight: f32, ts_ms: i64) {
        let mut decayed = self.decayed();
        decayed.add(weight, ts_ms, AFFINITY_HALF_LIFE_MS);
        *self = Affinity::new(self.tag, decayed);
    }

    /// The affinity at `now_ms` (see [`Decayed::value_at`]).
    pub fn value_at(&self, now_ms: i64) -> f32 {
        self.decayed().value_at(now_ms, AFFINITY_HALF_LIFE_MS)
    }
}

/// Events by local hour (0–23), 2 bytes a count: when one count reaches `u16::MAX`, every count
/// is halved, which keeps the shape of the day (what a send hour is learned from) where an `f32`
/// count would take twice the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCounts([u16; 24]);

impl HourCounts {
    /// Counts one event at `hour` (ignored unless below 24).
    pub fn add(&mut self, hour: u8) {
        let Some(count) = self.0.get_mut(hour as usize) else { return };
        if *count == u16::MAX {
            for count in &mut self.0 {
                *count /= 2;
            }
        }
        self.0[hour as usize] += 1;
    }

    /// The count at `hour`.
    pub fn get(&self, hour: usize) -> u16 {
        self.0.get(hour).copied().unwrap_or(0)
    }

    /// The counts as numbers, by hour.
    pub fn to_f32(&self) -> [f32; 24] {
        self.0.map(f32::from)
    }
}

/// One item in a person's recent history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecentItem {
    /// The item.
    pub item: ItemIdx,
    /// The last time the person engaged with it.
    pub ts_ms: i64,
    /// How strongly (the largest weight seen).
    pub strength: f32,
}

/// What folding needs to know about an event; the engine resolves items and tags to indices.
#[derive(Debug, Clone, Copy)]
pub struct FoldEvent<'a> {
    /// The event's type.
    pub kind: &'a EventType,
    /// The item, interned.
    pub item: Option<ItemIdx>,
    /// The item's tags, interned (empty when the item is unknown).
    pub tags: &'a [TagIdx],
    /// Whether the item is something one buys.
    pub purchasable: bool,
    /// When it happened.
    pub ts_ms: i64,
    /// `properties.dwell_ms`.
    pub dwell_ms: Option<f64>,
    /// `properties.scroll_depth`.
    pub scroll_depth: Option<f64>,
    /// `properties.value`.
    pub value: Option<f64>,
    /// `properties.rating` (0–10 scale, 5 stars map to 5).
    pub rating: Option<f64>,
    /// `properties.score` of a survey.
    pub score: Option<f64>,
    /// The event's `context.timezone` (an IANA name the engine checked).
    pub timezone: Option<&'a str>,
    /// The person's local hour when it happened (0–23), when the event's context said (its
    /// time zone or local time); the engine computes it.
    pub local_hour: Option<u8>,
    /// Where it happened.
    pub channel: Channel,
    /// For a declared type whose schema declares a signal: what it means, resolved.
    pub signal: Option<FoldSignal<'a>>,
}

/// A declared event's [`crate::Signal`], resolved by the engine for one event: the tags it
/// speaks for (interned), its strength and its journey step.
#[derive(Debug, Clone, Copy)]
pub struct FoldSignal<'a> {
    /// Positive for liking, negative for aversion (built-in scale: a view is 1).
    pub strength: f32,
    /// The tags (fixed, from a property, the item's), interned.
    pub tags: &'a [TagIdx],
    /// A step towards a journey stage.
    pub journey: Option<JourneySignal>,
}

/// A person's profile, folded from their events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Recent items, oldest first, at most [`MAX_RECENT`].
    pub recent: Vec<RecentItem>,
    /// Tag affinities (may be negative after dismissals), at most [`MAX_AFFINITIES`] (one more
    /// while the weakest is chosen).
    pub affinities: Vec<Affinity>,
    /// Activity behind `engagement`.
    pub activity: Decayed,
    /// Buying intent: product views, carts.
    pub intent: Decayed,
    /// Deep reads: long dwell or deep scroll.
    pub deep_reads: Decayed,
    /// Items bought (sorted, unique): never recommended again. (Rare events: a list of exactly
    /// its length, rebuilt one longer at each new item, 16 bytes where a `Vec` takes 24.)
    pub bought: Box<[ItemIdx]>,
    /// Items dismissed with `not_interested` (sorted, unique): never recommended again.
    pub dismissed: Box<[ItemIdx]>,
    /// Every item the person viewed, clicked, read, rated or bought (sorted, unique): what a
    /// slot with `repeats: false` (the default) does not offer again. Unlike `recent`, never
    /// truncated.
    pub consumed: Vec<ItemIdx>,
    /// Items put in a cart, with when (the latest per item).
    pub carts: Box<[(ItemIdx, i64)]>,
    /// Number of events folded.
    pub n_events: u32,
    /// Number of sessions (gaps over 30 minutes).
    pub n_sessions: u32,
    /// Number of purchases and their total value.
    pub n_purchases: u32,
    /// Total purchase value.
    pub revenue: f64,
    /// Sum and count of survey scores.
    pub survey_sum: f64,
    /// Count of survey answers.
    pub survey_count: u32,
    /// First event time.
    pub first_seen_ms: i64,
    /// Latest event time.
    pub last_seen_ms: i64,
    /// Time of the latest purchase.
    pub last_purchase_ms: Option<i64>,
    /// The time zone of the latest event that named one: the person's zone when their
    /// preferences set none. (Two bytes beside the other small fields: the profile is 368
    /// bytes, so that a person's whole state fits the allocator's 512-byte blocks.)
    pub timezone: Option<ZoneId>,
    /// The time of the event [`Profile::timezone`] came from.
    pub timezone_ms: i64,
    /// Engaged events by local hour (views, clicks, reading, carts, purchases, opens).
    pub active_hours: HourCounts,
    /// Email and notification opens by local hour: when sends are read.
    pub open_hours: HourCounts,
    /// Events per channel, indexed by [`Channel::index`]: where the person engages.
    #[serde(default)]
    pub channels: [u32; 6],
}

impl Profile {
    /// Bytes the profile holds outside its own struct (its lists), by capacity: what a memory
    /// report adds to `size_of::<Profile>()`. (Time zone names live once per process in
    /// [`crate::zone`]'s table.)
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.recent.capacity() * size_of::<RecentItem>()
            + self.affinities.capacity() * size_of::<Affinity>()
            + (self.bought.len() + self.dismissed.len() + self.consumed.capacity()) * size_of::<ItemIdx>()
            + self.carts.len() * size_of::<(ItemIdx, i64)>()
    }

    /// The time zone learned from the person's events (see [`Profile::timezone`]).
    pub fn timezone_name(&self) -> Option<&'static str> {
        self.timezone.map(ZoneId::name)
    }

    /// Folds one event into the profile.
    pub fn fold(&mut self, event: &FoldEvent<'_>) {
        let ts = event.ts_ms;
        if self.n_events == 0 {
            self.first_seen_ms = ts;
            self.last_seen_ms = ts;
            self.n_sessions = 1;
        } else {
            if ts > self.last_seen_ms + SESSION_GAP_MS {
                self.n_sessions += 1;
            }
            self.first_seen_ms = self.first_seen_ms.min(ts);
            self.last_seen_ms = self.last_seen_ms.max(ts);
        }
        self.n_events += 1;
        self.channels[event.channel.index()] += 1;
        if let Some(zone) = event.timezone {
            // The latest wins; a tie in time by name, so any fold order gives the same zone.
            let newer = self.timezone.is_none_or(|z| (ts, zone) > (self.timezone_ms, z.name()));
            if newer && let Some(zone) = ZoneId::intern(zone) {
                self.timezone = Some(zone);
                self.timezone_ms = ts;
            }
        }

        let Some(builtin) = event.kind.builtin() else {
            self.fold_declared(event);
            return;
        };
        let (strength, activity) = signal_weights(builtin, event);
        self.activity.add(activity, ts, ACTIVITY_HALF_LIFE_MS);
        if let Some(hour) = event.local_hour.filter(|h| *h < 24) {
            match builtin {
                BuiltinType::EmailOpen | BuiltinType::NotificationOpen => {
                    self.open_hours.add(hour);
                    self.active_hours.add(hour);
                }
                BuiltinType::NotInterested | BuiltinType::Search | BuiltinType::Survey | BuiltinType::Rating => {}
                _ => self.active_hours.add(hour),
            }
        }

        match builtin {
            BuiltinType::Survey => {
                if let Some(score) = event.score {
                    self.survey_sum += score;
                    self.survey_count += 1;
                }
            }
            BuiltinType::Purchase => {
                self.n_purchases += 1;
                self.revenue += event.value.unwrap_or(0.0);
                self.last_purchase_ms = Some(self.last_purchase_ms.map_or(ts, |t| t.max(ts)));
            }
            _ => {}
        }
        let Some(item) = event.item else { return };
        match builtin {
            BuiltinType::Purchase => {
                insert_sorted_boxed(&mut self.bought, item);
                insert_sorted(&mut self.consumed, item);
            }
            BuiltinType::NotInterested => insert_sorted_boxed(&mut self.dismissed, item),
            BuiltinType::View | BuiltinType::Click | BuiltinType::Dwell | BuiltinType::Rating => {
                insert_sorted(&mut self.consumed, item)
            }
            BuiltinType::AddToCart => match self.carts.iter_mut().find(|(i, _)| *i == item) {
                Some(cart) => cart.1 = cart.1.max(ts),
                None => {
                    let end = self.carts.len();
                    insert_boxed(&mut self.carts, end, (item, ts));
                }
            },
            _ => {}
        }
        if event.purchasable && matches!(builtin, BuiltinType::View | BuiltinType::Click | BuiltinType::AddToCart) {
            let weight = if builtin == BuiltinType::AddToCart { 3.0 } else { 1.0 };
            self.intent.add(weight, ts, INTENT_HALF_LIFE_MS);
        }
        let deep = event.dwell_ms.is_some_and(|d| d >= 60_000.0) || event.scroll_depth.is_some_and(|s| s >= 0.7);
        if deep {
            self.deep_reads.add(1.0, ts, ACTIVITY_HALF_LIFE_MS);
        }
        self.add_affinities(event.tags, strength, ts);
        if strength > 0.0 {
            self.touch_recent(item, ts, strength);
        }
    }

    /// A declared type: activity, and with a declared signal its tags, item and journey step.
    /// Without a signal it counts as activity and nothing more.
    fn fold_declared(&mut self, event: &FoldEvent<'_>) {
        let ts = event.ts_ms;
        let Some(signal) = event.signal.filter(|s| s.strength.is_finite() && s.strength != 0.0) else {
            self.activity.add(0.5, ts, ACTIVITY_HALF_LIFE_MS);
            return;
        };
        let strength = signal.strength;
        self.activity.add(strength.max(0.5), ts, ACTIVITY_HALF_LIFE_MS);
        if strength > 0.0
            && let Some(hour) = event.local_hour.filter(|h| *h < 24)
        {
            self.active_hours.add(hour);
        }
        match signal.journey {
            Some(JourneySignal::Researching) => self.deep_reads.add(1.0, ts, ACTIVITY_HALF_LIFE_MS),
            Some(JourneySignal::ReadyToBuy) => self.intent.add(1.5, ts, INTENT_HALF_LIFE_MS),
            Some(JourneySignal::Customer) => {
                self.n_purchases += 1;
                self.last_purchase_ms = Some(self.last_purchase_ms.map_or(ts, |t| t.max(ts)));
            }
            None => {}
        }
        self.add_affinities(signal.tags, strength, ts);
        if strength > 0.0
            && let Some(item) = event.item
        {
            insert_sorted(&mut self.consumed, item);
            self.touch_recent(item, ts, strength);
        }
    }

    fn add_affinities(&mut self, tags: &[TagIdx], strength: f32, ts: i64) {
        for &tag in tags {
            match self.affinities.iter_mut().find(|a| a.tag == tag) {
                Some(affinity) => affinity.add(strength, ts),
                None => {
                    let mut decayed = Decayed::default();
                    decayed.add(strength, ts, AFFINITY_HALF_LIFE_MS);
                    // Past the limit only by this event's new tags, while the weakest are
                    // chosen below: the list never holds room for more.
                    reserve_one(&mut self.affinities, MAX_AFFINITIES + tags.len());
                    self.affinities.push(Affinity::new(tag, decayed));
                }
            }
        }
        if self.affinities.len() > MAX_AFFINITIES {
            let at = self.last_seen_ms;
            self.affinities.sort_by(|a, b| b.value_at(at).abs().total_cmp(&a.value_at(at).abs()));
            self.affinities.truncate(MAX_AFFINITIES);
        }
    }

    fn touch_recent(&mut self, item: ItemIdx, ts: i64, strength: f32) {
        if let Some(pos) = self.recent.iter().position(|r| r.item == item) {
            let mut recent = self.recent.remove(pos);
            recent.ts_ms = recent.ts_ms.max(ts);
            recent.strength = recent.strength.max(strength);
            let at = self.recent.partition_point(|r| r.ts_ms <= recent.ts_ms);
            self.recent.insert(at, recent);
        } else {
            let at = self.recent.partition_point(|r| r.ts_ms <= ts);
            let recent = RecentItem { item, ts_ms: ts, strength };
            if self.recent.len() < MAX_RECENT {
                reserve_one(&mut self.recent, MAX_RECENT);
                self.recent.insert(at, recent);
            } else if at > 0 {
                // Full: the oldest leaves first, so the list never needs room for one more.
                // (Older than all of them, the item would be the one to leave.)
                self.recent.remove(0);
                self.recent.insert(at - 1, recent);
            }
        }
    }

    /// Engagement in 0–1, saturating: recent activity (14-day half-life) plus a lasting share of
    /// the whole history, so a person who engaged deeply a month ago is not a stranger today.
    /// Two views give about 0.15, fifteen events about 0.45, fifty about 0.8.
    pub fn engagement(&self, now_ms: i64) -> f32 {
        let activity = self.activity.value_at(now_ms, ACTIVITY_HALF_LIFE_MS) + 0.2 * self.n_events as f32;
        (1.0 - (-activity / 15.0).exp()).clamp(0.0, 1.0)
    }

    /// Tag affinities at `now_ms`, strongest first, positive only, normalized so the strongest is 1.
    pub fn top_affinities(&self, now_ms: i64, limit: usize) -> Vec<(TagIdx, f32)> {
        let mut weights: Vec<(TagIdx, f32)> =
            self.affinities.iter().map(|a| (a.tag, a.value_at(now_ms))).filter(|(_, w)| *w > 0.0).collect();
        weights.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        weights.truncate(limit);
        let max = weights.first().map_or(1.0, |(_, w)| *w);
        for (_, w) in &mut weights {
            *w /= max;
        }
        weights
    }

    /// Whether the person bought or dismissed `item`.
    pub fn excludes(&self, item: ItemIdx) -> bool {
        self.bought.binary_search(&item).is_ok() || self.dismissed.binary_search(&item).is_ok()
    }
}

fn insert_sorted(items: &mut Vec<ItemIdx>, item: ItemIdx) {
    if let Err(pos) = items.binary_search(&item) {
        reserve_one(items, usize::MAX);
        items.insert(pos, item);
    }
}

/// Inserts into a sorted list of exactly its length (rare events: purchases, dismissals).
fn insert_sorted_boxed(items: &mut Box<[ItemIdx]>, item: ItemIdx) {
    if let Err(pos) = items.binary_search(&item) {
        insert_boxed(items, pos, item);
    }
}

/// Inserts `value` at `at` into a list of exactly its length: a new block one longer.
fn insert_boxed<T: Copy>(list: &mut Box<[T]>, at: usize, value: T) {
    let mut grown = Vec::with_capacity(list.len() + 1);
    grown.extend_from_slice(&list[..at]);
    grown.push(value);
    grown.extend_from_slice(&list[at..]);
    *list = grown.into_boxed_slice();
}

/// Makes room for one more element in a full list: its capacity grows by half (at least to 4),
/// never past `limit`, where `Vec` would double it. A list grown by half has at most a third of
/// its room empty (by doubling, half), and a bounded list never has room past its bound.
fn reserve_one<T>(list: &mut Vec<T>, limit: usize) {
    let len = list.len();
    if len == list.capacity() {
        let target = (len + len / 2).clamp(4, limit.max(len + 1));
        list.reserve_exact(target - len);
    }
}

/// (strength towards the item and its tags, activity weight) of one built-in event.
fn signal_weights(builtin: BuiltinType, event: &FoldEvent<'_>) -> (f32, f32) {
    match builtin {
        BuiltinType::View => (1.0, 1.0),
        BuiltinType::Click => (1.5, 1.5),
        BuiltinType::Dwell => {
            // Time and depth of reading say how engaged the person is, as much as what they like.
            let minutes = event.dwell_ms.unwrap_or(0.0) / 60_000.0;
            let depth = event.scroll_depth.unwrap_or(0.0);
            let strength = (0.5 + minutes.min(3.0) * 0.5 + depth * 0.5) as f32;
            (strength, strength)
        }
        BuiltinType::AddToCart => (3.0, 3.0),
        BuiltinType::Purchase => (5.0, 5.0),
        BuiltinType::Rating => {
            // 0–10 scale (5 stars send 0–5: both read as "above the middle is liked").
            let rating = event.rating.unwrap_or(0.0);
            let scale = if rating <= 5.0 { 5.0 } else { 10.0 };
            (((rating / scale) - 0.5) as f32 * 4.0, 1.0)
        }
        BuiltinType::NotInterested => (-3.0, 0.5),
        BuiltinType::Search | BuiltinType::Survey => (0.0, 1.0),
        BuiltinType::EmailOpen | BuiltinType::NotificationOpen => (0.5, 0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold_all(events: &[(BuiltinType, u32, i64)]) -> Profile {
        let tags = [[TagIdx(0), TagIdx(1)], [TagIdx(1), TagIdx(2)], [TagIdx(3), TagIdx(0)]];
        let mut profile = Profile::default();
        for (kind, item, ts) in events {
            let kind = EventType::Builtin(*kind);
            profile.fold(&FoldEvent {
                kind: &kind,
                item: Some(ItemIdx(*item)),
                tags: &tags[*item as usize % 3],
                purchasable: item % 2 == 0,
                ts_ms: *ts,
                dwell_ms: Some(90_000.0),
                scroll_depth: None,
                value: Some(10.0),
                rating: Some(4.0),
                score: None,
                timezone: None,
                local_hour: None,
                channel: Channel::Web,
                signal: None,
            });
        }
        profile
    }

    #[test]
    fn decayed_halves_per_half_life() {
        let mut d = Decayed::default();
        d.add(8.0, 0, DAY_MS);
        assert!((d.value_at(2 * DAY_MS, DAY_MS) - 2.0).abs() < 1e-4);
        d.add(2.0, 2 * DAY_MS, DAY_MS);
        assert!((d.value_at(2 * DAY_MS, DAY_MS) - 4.0).abs() < 1e-4);
    }

    #[test]
    fn purchases_and_dismissals_exclude() {
        let profile =
            fold_all(&[(BuiltinType::View, 1, 0), (BuiltinType::Purchase, 2, 10), (BuiltinType::NotInterested, 3, 20)]);
        assert!(profile.excludes(ItemIdx(2)));
        assert!(profile.excludes(ItemIdx(3)));
        assert!(!profile.excludes(ItemIdx(1)));
        assert_eq!(profile.n_purchases, 1);
        assert_eq!(profile.recent.iter().map(|r| r.item.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn engagement_grows_with_activity() {
        let few = fold_all(&[(BuiltinType::View, 1, 0)]);
        let many: Vec<_> = (0..40).map(|i| (BuiltinType::Click, i % 7, i as i64 * 1000)).collect();
        let many = fold_all(&many);
        assert!(few.engagement(0) < many.engagement(40_000));
        assert!(many.engagement(40_000) <= 1.0);
    }

    #[test]
    fn declared_signals_shape_affinities_items_and_journey() {
        let quiz = EventType::Declared("quiz_answer".into());
        let meditation = EventType::Declared("meditation_done".into());
        let mut profile = Profile::default();
        let fold = |profile: &mut Profile,
                    kind: &EventType,
                    item: Option<u32>,
                    tags: &[TagIdx],
                    strength: f32,
                    journey: Option<JourneySignal>,
                    ts: i64| {
            profile.fold(&FoldEvent {
                kind,
                item: item.map(ItemIdx),
                tags: &[],
                purchasable: false,
                ts_ms: ts,
                dwell_ms: None,
                scroll_depth: None,
                value: None,
                rating: None,
                score: None,
                timezone: None,
                local_hour: Some(7),
                channel: Channel::App,
                signal: Some(FoldSignal { strength, tags, journey }),
            });
        };
        fold(&mut profile, &quiz, None, &[TagIdx(4)], 2.0, None, 0);
        fold(&mut profile, &meditation, Some(9), &[TagIdx(5)], 1.5, Some(JourneySignal::Researching), 10);
        fold(&mut profile, &meditation, Some(8), &[TagIdx(5)], 1.5, Some(JourneySignal::Researching), 20);
        fold(&mut profile, &quiz, None, &[TagIdx(6)], -1.0, None, 30);
        let top = profile.top_affinities(30, 8);
        assert_eq!(top.first().map(|(t, _)| *t), Some(TagIdx(5)), "{top:?}");
        assert!(top.iter().any(|(t, _)| *t == TagIdx(4)));
        assert!(!top.iter().any(|(t, _)| *t == TagIdx(6)), "a negative signal is no liking");
        assert_eq!(profile.consumed, vec![ItemIdx(8), ItemIdx(9)]);
        assert_eq!(profile.recent.len(), 2);
        assert_eq!(profile.channels[Channel::App.index()], 4);
        assert_eq!(crate::JourneyStage::detect(Some(&profile), 30), crate::JourneyStage::Researching);
        // Without a signal a declared event is activity only.
        let mut plain = Profile::default();
        plain.fold(&FoldEvent { signal: None, ..sample_fold(&quiz) });
        assert!(plain.affinities.is_empty() && plain.recent.is_empty());
    }

    fn sample_fold(kind: &EventType) -> FoldEvent<'_> {
        FoldEvent {
            kind,
            item: Some(ItemIdx(1)),
            tags: &[TagIdx(1)],
            purchasable: false,
            ts_ms: 0,
            dwell_ms: None,
            scroll_depth: None,
            value: None,
            rating: None,
            score: None,
            timezone: None,
            local_hour: None,
            channel: Channel::Web,
            signal: None,
        }
    }

    fn arb_event() -> impl Strategy<Value = (BuiltinType, u32, i64)> {
        (
            prop::sample::select(vec![BuiltinType::View, BuiltinType::Click, BuiltinType::Dwell, BuiltinType::Rating]),
            0u32..6,
            0i64..(90 * DAY_MS),
        )
    }

    #[test]
    fn a_profile_stays_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<Affinity>(), 16);
        assert_eq!(size_of::<RecentItem>(), 16);
        assert_eq!(size_of::<HourCounts>(), 48);
        assert_eq!(size_of::<Option<ZoneId>>(), 2);
        // 504 bytes before the affinities, hours and time zone were made compact.
        assert!(size_of::<Profile>() <= 368, "{}", size_of::<Profile>());
    }

    #[test]
    fn bounded_lists_hold_exactly_their_bound() {
        // 60 items, each with its own tags: more than MAX_RECENT items and MAX_AFFINITIES tags.
        let mut profile = Profile::default();
        let kind = EventType::Builtin(BuiltinType::View);
        for i in 0..60u32 {
            let tags = [TagIdx(2 * i), TagIdx(2 * i + 1)];
            profile.fold(&FoldEvent {
                item: Some(ItemIdx(i)),
                tags: &tags,
                ts_ms: i64::from(i) * 1000,
                ..sample_fold(&kind)
            });
        }
        assert_eq!(profile.recent.len(), MAX_RECENT);
        assert_eq!(profile.recent.capacity(), MAX_RECENT);
        assert_eq!(profile.recent.first().map(|r| r.item), Some(ItemIdx(10)), "the oldest left");
        assert_eq!(profile.recent.last().map(|r| r.item), Some(ItemIdx(59)));
        assert_eq!(profile.affinities.len(), MAX_AFFINITIES);
        assert!(profile.affinities.capacity() <= MAX_AFFINITIES + 2, "{}", profile.affinities.capacity());
        // Unbounded lists grow by half, not by doubling.
        assert_eq!(profile.consumed.len(), 60);
        assert!(profile.consumed.capacity() < 90, "{}", profile.consumed.capacity());
        // An item older than every one of a full list does not enter it.
        profile.fold(&FoldEvent { item: Some(ItemIdx(99)), ts_ms: 0, ..sample_fold(&kind) });
        assert!(!profile.recent.iter().any(|r| r.item == ItemIdx(99)));
        assert_eq!(profile.recent.capacity(), MAX_RECENT);
    }

    #[test]
    fn hour_counts_halve_instead_of_overflowing() {
        let mut hours = HourCounts::default();
        hours.add(7);
        hours.add(7);
        hours.add(24);
        assert_eq!(hours.get(7), 2);
        assert_eq!(hours.to_f32().iter().sum::<f32>(), 2.0);
        for _ in 0..u16::MAX {
            hours.add(8);
        }
        assert_eq!(hours.get(8), u16::MAX, "no halving before the top");
        hours.add(8);
        // 8 was at the top: everything was halved, then counted on.
        assert_eq!(hours.get(7), 1);
        assert_eq!(hours.get(8), u16::MAX / 2 + 1);
    }

    #[test]
    fn the_latest_time_zone_wins_and_a_tie_goes_by_name() {
        let kind = EventType::Builtin(BuiltinType::View);
        let fold = |zones: &[(&str, i64)]| {
            let mut profile = Profile::default();
            for (zone, ts) in zones {
                profile.fold(&FoldEvent { timezone: Some(zone), ts_ms: *ts, ..sample_fold(&kind) });
            }
            profile.timezone_name()
        };
        assert_eq!(fold(&[("Asia/Tokyo", 5), ("Europe/Berlin", 3)]), Some("Asia/Tokyo"));
        assert_eq!(fold(&[("Europe/Berlin", 3), ("Asia/Tokyo", 5)]), Some("Asia/Tokyo"));
        assert_eq!(fold(&[("Europe/Berlin", 5), ("Asia/Tokyo", 5)]), Some("Europe/Berlin"));
        assert_eq!(fold(&[("Asia/Tokyo", 5), ("Europe/Berlin", 5)]), Some("Europe/Berlin"));
        assert_eq!(fold(&[]), None);
    }

    /// The recent list as it was kept before its capacity was bounded: insert, then drop the
    /// oldest when over the limit.
    fn naive_recent(events: &[(u32, i64, f32)]) -> Vec<RecentItem> {
        let mut recent: Vec<RecentItem> = Vec::new();
        for &(item, ts, strength) in events {
            let item = ItemIdx(item);
            if let Some(pos) = recent.iter().position(|r| r.item == item) {
                let mut r = recent.remove(pos);
                r.ts_ms = r.ts_ms.max(ts);
                r.strength = r.strength.max(strength);
                let at = recent.partition_point(|x| x.ts_ms <= r.ts_ms);
                recent.insert(at, r);
            } else {
                let at = recent.partition_point(|r| r.ts_ms <= ts);
                recent.insert(at, RecentItem { item, ts_ms: ts, strength });
            }
            if recent.len() > MAX_RECENT {
                recent.remove(0);
            }
        }
        recent
    }

    proptest! {
        /// The bounded recent list keeps what the unbounded one kept, in the same order.
        #[test]
        fn the_recent_list_is_what_it_was(
            events in prop::collection::vec((0u32..120, 0i64..1000, 0.5f32..5.0), 1..300)
        ) {
            let mut profile = Profile::default();
            for &(item, ts, strength) in &events {
                profile.touch_recent(ItemIdx(item), ts, strength);
            }
            prop_assert_eq!(&profile.recent, &naive_recent(&events));
            prop_assert!(profile.recent.capacity() <= MAX_RECENT);
        }
    }

    proptest! {
        /// The store replays events in arrival order, the live path folds them as they come: both
        /// must give the same tag affinities and counts, whatever the order of timestamps.
        #[test]
        fn affinities_do_not_depend_on_order(events in prop::collection::vec(arb_event(), 1..40)) {
            let forward = fold_all(&events);
            let mut reversed_events = events.clone();
            reversed_events.reverse();
            let reversed = fold_all(&reversed_events);
            let now = 100 * DAY_MS;
            let a = forward.top_affinities(now, 64);
            let b = reversed.top_affinities(now, 64);
            prop_assert_eq!(a.len(), b.len());
            for ((ta, wa), (tb, wb)) in a.iter().zip(&b) {
                prop_assert_eq!(ta, tb);
                prop_assert!((wa - wb).abs() < 1e-3);
            }
            prop_assert_eq!(forward.n_events, reversed.n_events);
            prop_assert!((forward.engagement(now) - reversed.engagement(now)).abs() < 1e-4);
        }
    }
}

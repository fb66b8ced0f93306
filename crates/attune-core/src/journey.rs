//! Journey stages: where a person is, from behavior alone.
//!
//! | stage | signals |
//! |---|---|
//! | `ready_to_buy` | an item in the cart in the last 7 days and not bought since, or strong buying intent (product views and carts, 7-day half-life, ≥ 3) |
//! | `customer` | bought before, and not ready to buy again |
//! | `new` | fewer than 3 events (and neither of the above) |
//! | `researching` | deep reads (≥ 60 s dwell or ≥ 70 % scroll, 14-day half-life) ≥ 1.5 (two recent ones), or ≥ 3 sessions with some product interest |
//! | `exploring` | everything else |

use crate::profile::{ACTIVITY_HALF_LIFE_MS, INTENT_HALF_LIFE_MS, Profile};

/// Where a person is in their journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JourneyStage {
    /// First steps: little or no history.
    New,
    /// Browsing broadly.
    Exploring,
    /// Reading deeply, comparing: wants education and trust.
    Researching,
    /// Close to buying: wants the product and reassurance.
    ReadyToBuy,
    /// Has bought: wants to get the most of it, and what comes next.
    Customer,
}

impl JourneyStage {
    /// Every stage.
    pub const ALL: [JourneyStage; 5] = [
        JourneyStage::New,
        JourneyStage::Exploring,
        JourneyStage::Researching,
        JourneyStage::ReadyToBuy,
        JourneyStage::Customer,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JourneyStage::New => "new",
            JourneyStage::Exploring => "exploring",
            JourneyStage::Researching => "researching",
            JourneyStage::ReadyToBuy => "ready_to_buy",
            JourneyStage::Customer => "customer",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<JourneyStage> {
        JourneyStage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Detects the stage of a profile at `now_ms`. No profile is `new`.
    pub fn detect(profile: Option<&Profile>, now_ms: i64) -> JourneyStage {
        let Some(profile) = profile else { return JourneyStage::New };
        const WEEK_MS: i64 = 7 * 24 * 3_600_000;
        let open_cart = profile
            .carts
            .iter()
            .any(|(item, ts)| now_ms - ts <= WEEK_MS && profile.bought.binary_search(item).is_err());
        let intent = profile.intent.value_at(now_ms, INTENT_HALF_LIFE_MS);
        if open_cart || intent >= 3.0 {
            return JourneyStage::ReadyToBuy;
        }
        if profile.n_purchases > 0 {
            return JourneyStage::Customer;
        }
        if profile.n_events < 3 {
            return JourneyStage::New;
        }
        let deep = profile.deep_reads.value_at(now_ms, ACTIVITY_HALF_LIFE_MS);
        if deep >= 1.5 || (profile.n_sessions >= 3 && intent >= 1.0) {
            return JourneyStage::Researching;
        }
        JourneyStage::Exploring
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinType, EventType, FoldEvent, ItemIdx};

    fn fold(profile: &mut Profile, kind: BuiltinType, item: u32, purchasable: bool, ts: i64, dwell: f64) {
        let kind = EventType::Builtin(kind);
        profile.fold(&FoldEvent {
            kind: &kind,
            item: Some(ItemIdx(item)),
            tags: &[],
            purchasable,
            ts_ms: ts,
            dwell_ms: Some(dwell),
            scroll_depth: None,
            value: None,
            rating: None,
            score: None,
            timezone: None,
            local_hour: None,
            channel: crate::Channel::Web,
            signal: None,
        });
    }

    #[test]
    fn stages_follow_behavior() {
        assert_eq!(JourneyStage::detect(None, 0), JourneyStage::New);
        let mut p = Profile::default();
        fold(&mut p, BuiltinType::View, 1, false, 0, 1000.0);
        assert_eq!(JourneyStage::detect(Some(&p), 0), JourneyStage::New);
        fold(&mut p, BuiltinType::View, 2, false, 1, 1000.0);
        fold(&mut p, BuiltinType::View, 3, false, 2, 1000.0);
        assert_eq!(JourneyStage::detect(Some(&p), 3), JourneyStage::Exploring);
        fold(&mut p, BuiltinType::Dwell, 3, false, 3, 120_000.0);
        fold(&mut p, BuiltinType::Dwell, 4, false, 4, 120_000.0);
        assert_eq!(JourneyStage::detect(Some(&p), 5), JourneyStage::Researching);
        fold(&mut p, BuiltinType::AddToCart, 9, true, 6, 0.0);
        assert_eq!(JourneyStage::detect(Some(&p), 7), JourneyStage::ReadyToBuy);
        fold(&mut p, BuiltinType::Purchase, 9, true, 8, 0.0);
        let month_later = 8 + 30 * 24 * 3_600_000;
        assert_eq!(JourneyStage::detect(Some(&p), month_later), JourneyStage::Customer);
    }
}

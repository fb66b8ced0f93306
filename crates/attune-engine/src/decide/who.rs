//! Stage 1, who: what the pipeline may know about the person, within their consent.

use attune_core::{
    Consent, ItemIdx, JourneyStage, Preferences, TagIdx, preferences::latest_seen_zone, profile::RecentItem,
};

use super::DecideCtx;

/// What the pipeline knows about the person.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    /// The resolved person id (aliases followed), if any.
    pub id: Option<String>,
    pub consent: Consent,
    pub preferences: Preferences,
    /// Whether something personal was there to use: a history or declared goals.
    pub personalized: bool,
    pub stage: JourneyStage,
    /// The most recent items (oldest first), with strength and time: what the ranker scores.
    pub recent: Vec<RecentItem>,
    /// Every item consumed (sorted): left out unless a slot allows repeats.
    pub consumed: Vec<ItemIdx>,
    /// The strongest tag affinities.
    pub affinities: Vec<(TagIdx, f32)>,
    /// Engagement, 0–1 (0 without personalization).
    pub engagement: f32,
    /// Bought and dismissed items (sorted): never shown, whatever the consent.
    pub excluded: Vec<ItemIdx>,
    /// The person's time zone: their preferences', else the latest their events' or decide
    /// requests' context named.
    pub timezone: Option<String>,
    /// The latest time zone seen for the person (events, decide requests), whatever their
    /// preferences set: a decide request naming another one is remembered.
    pub seen_zone: Option<&'static str>,
}

impl Who {
    /// Someone the engine knows nothing about, under the default consent.
    pub fn anonymous(consent: Consent) -> Who {
        Who {
            id: None,
            consent,
            preferences: Preferences::default(),
            personalized: false,
            stage: JourneyStage::New,
            recent: Vec::new(),
            consumed: Vec::new(),
            affinities: Vec::new(),
            engagement: 0.0,
            excluded: Vec::new(),
            timezone: None,
            seen_zone: None,
        }
    }

    /// What the pipeline knows about the same person without personalization consent (the
    /// control arm and the global holdout): the id, the stored preferences and the exclusions
    /// (bought, dismissed) stay, as [`DecideCtx::who`](super::DecideCtx) keeps them for such a person.
    pub fn without_personalization(self) -> Who {
        let mut consent = self.consent;
        consent.personalization = false;
        Who {
            consent,
            personalized: false,
            stage: JourneyStage::New,
            recent: Vec::new(),
            consumed: Vec::new(),
            affinities: Vec::new(),
            engagement: 0.0,
            ..self
        }
    }

    /// The person's history length, which picks the ranker's engagement level.
    pub fn history_len(&self) -> usize {
        self.consumed.len().max(self.recent.len())
    }
}

impl DecideCtx<'_> {
    pub(crate) fn who(&self, subject: Option<&str>, now_ms: i64) -> Who {
        let Some(subject) = subject else {
            return Who::anonymous(self.people.default_consent());
        };
        let person = self.people.resolve(subject);
        self.people.read(&person, |state| {
            let consent = state.and_then(|s| s.consent).unwrap_or(self.people.default_consent());
            let preferences = state.and_then(|s| s.preferences.as_deref().cloned()).unwrap_or_default();
            let profile = state.and_then(|s| s.profile.as_ref()).filter(|_| consent.personalization);
            let decided = state.and_then(|s| s.decided_zone).filter(|_| profile.is_some());
            let personalized = consent.personalization
                && preferences.personalization
                && (profile.is_some_and(|p| p.n_events > 0) || !preferences.goals.is_empty());
            let excluded: Vec<ItemIdx> = state.map(|s| s.excluded.clone()).unwrap_or_default();
            let used = profile.filter(|_| personalized);
            Who {
                consent,
                personalized,
                stage: if personalized { JourneyStage::detect(used, now_ms) } else { JourneyStage::New },
                recent: used.map(|p| p.recent.clone()).unwrap_or_default(),
                consumed: used.map(|p| p.consumed.clone()).unwrap_or_default(),
                affinities: used.map(|p| p.top_affinities(now_ms, 8)).unwrap_or_default(),
                engagement: used.map_or(0.0, |p| p.engagement(now_ms)),
                timezone: preferences.zone_in_force(profile, decided).map(|(zone, _)| zone.to_owned()),
                seen_zone: latest_seen_zone(profile, decided).map(|(zone, _)| zone),
                preferences,
                excluded,
                id: Some(person.clone()),
            }
        })
    }
}

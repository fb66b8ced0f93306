//! The decide pipeline: what to show this person in each slot, now, and why — as stages over
//! read-only inputs, each a function of its own file:
//!
//! 1. **Who** ([`who`]): resolve the id, read consent, preferences and the profile (never an
//!    error for an unknown person: they get the non-personalized default).
//! 2. **Rank** ([`rank`]): the filters (unavailable, bought, dismissed, flagged, `less_of`, rule
//!    exclusions) and two candidate rankings. The *personal* one is the served
//!    [`attune_rank::Ranker`] over the person's recency-weighted history — the models, half-lives
//!    and blend weights (popularity's included, per engagement level) chosen on a time split of
//!    the store's own data at every training — or, before a person has a history, their declared
//!    goals and tag affinities (content: the cold start). The *general* one (trending,
//!    popularity, new, the moment, the journey stage) is the default for everyone else.
//! 3. **Fill** ([`fill`]): per slot an editorial share of human picks matched to the audience, a
//!    serendipity share from adjacent interests, then the rest from the rankings by MMR over tags
//!    (calm feeds), without what the person already consumed unless the slot allows `repeats`,
//!    and never one item twice in a response.
//! 4. **Explain** ([`explain`]): reasons from the evidence actually used — the history items that
//!    contributed most to a model-sourced item under the served ranker, an editor's note, a goal.
//! 5. **Variant and log** (here): the slot's presentation variant (rules, then the bandit), the
//!    decision id from the engine's [`crate::Ids`] seam, experiment exposures and the log.
//!
//! Everything heavy is precomputed at training; a decision allocates its scratch once per thread.

mod explain;
mod fill;
mod rank;
mod who;

use std::{cell::RefCell, sync::Arc};

use attune_core::{Channel, Item, ItemIdx, JourneyStage, Purpose};

use crate::catalog::Catalog;
use crate::clock::{Clock, Ids};
use crate::decisions::{DecisionLog, LoggedDecision, LoggedPlacement};
use crate::editorial::{Editorial, EditorialSettings, Situation, SlotSettings};
use crate::error::{Result, UserError};
use crate::experiments::{Experiments, Policy};
use crate::models::{ModelSnapshot, Models};
use crate::people::People;
use crate::variants::VariantBandits;

pub(crate) use who::Who;

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Item-kNN of the person's recent items.
    Collaborative,
    /// The iALS model.
    Predictive,
    /// The moment: time of day, device, weather.
    Contextual,
    /// Declared goals and tag affinities.
    Content,
    /// An editor's pick.
    Editorial,
    /// Serendipity: something new from adjacent interests.
    Explore,
    /// Popular and trending: the default.
    Popular,
}

impl Source {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Collaborative => "collaborative",
            Source::Predictive => "predictive",
            Source::Contextual => "contextual",
            Source::Content => "content",
            Source::Editorial => "editorial",
            Source::Explore => "explore",
            Source::Popular => "popular",
        }
    }
}

/// The kind of a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonKind {
    /// "Because you read …".
    SimilarTo,
    /// "Matches your goal: …".
    Goal,
    /// "Because you often explore …".
    Affinity,
    /// "Fits your evening".
    Context,
    /// "Popular with people whose interests match yours".
    PopularWithSimilar,
    /// "Editor's pick".
    EditorPick,
    /// "Something new to explore".
    Explore,
    /// "Popular this week".
    Trending,
    /// "A good place to start".
    Default,
}

impl ReasonKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::SimilarTo => "similar_to",
            ReasonKind::Goal => "goal",
            ReasonKind::Affinity => "affinity",
            ReasonKind::Context => "context",
            ReasonKind::PopularWithSimilar => "popular_with_similar",
            ReasonKind::EditorPick => "editor_pick",
            ReasonKind::Explore => "explore",
            ReasonKind::Trending => "trending",
            ReasonKind::Default => "default",
        }
    }
}

/// Why an item is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The kind.
    pub kind: ReasonKind,
    /// The item it refers to (for `similar_to`).
    pub item: Option<String>,
    /// The tag it refers to (for `goal`, `affinity`).
    pub tag: Option<String>,
    /// Plain words.
    pub text: String,
}

/// The moment of a decision.
#[derive(Debug, Clone, Default)]
pub struct DecideContext {
    /// `mobile`, `desktop`, `tablet`.
    pub device: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// The person's local time (RFC 3339 with offset).
    pub local_time: Option<String>,
    /// The weather (used only with contextual consent).
    pub weather: Option<String>,
    /// Where the decision is shown (default `web`): rules and slot settings may depend on it.
    pub channel: Channel,
}

/// One slot to fill.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    /// The slot.
    pub slot: String,
    /// How many items (1–100).
    pub count: usize,
}

/// A decide request.
#[derive(Debug, Clone, Default)]
pub struct DecideRequest {
    /// The person or anonymous id, if known.
    pub subject: Option<String>,
    /// The moment.
    pub context: DecideContext,
    /// The slots, in page order.
    pub placements: Vec<PlacementRequest>,
    /// Whether to explain every item.
    pub explain: bool,
    /// A preview (the console's "what would this person see"): decided like any other, but not
    /// logged, not counted as an experiment exposure and not open to attribution.
    pub preview: bool,
    /// Item ids never to show in this decision, whatever the source (an email digest leaves out
    /// what the person's recent digests sent).
    pub exclude: Vec<String>,
}

/// One decided item.
#[derive(Debug, Clone)]
pub struct DecidedItem {
    /// The item.
    pub item: Arc<Item>,
    /// Its blended score (0–1 scale, higher is better).
    pub score: f32,
    /// Where it came from.
    pub source: Source,
    /// Why (empty unless asked to explain).
    pub reasons: Vec<Reason>,
    /// The copy variant chosen for the person's journey stage.
    pub copy_variant: &'static str,
}

/// One filled slot.
#[derive(Debug, Clone)]
pub struct PlacementDecision {
    /// The slot.
    pub slot: String,
    /// The presentation variant.
    pub variant: String,
    /// The context the variant bandit chose `variant` in; `None` when a rule forced it.
    pub variant_context: Option<crate::variants::VariantContext>,
    /// The items, in order.
    pub items: Vec<DecidedItem>,
}

/// A decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// `dec-…`.
    pub id: String,
    /// Whether the person's profile or preferences shaped it.
    pub personalized: bool,
    /// The detected journey stage.
    pub journey_stage: JourneyStage,
    /// The filled slots.
    pub placements: Vec<PlacementDecision>,
    /// Experiment assignments (experiment id, arm).
    pub experiments: Vec<(String, String)>,
    /// Where it is shown.
    pub channel: Channel,
}

/// How much of a feed draws on declared goals before a person has a history. Once there is a
/// history, the served ranker decides alone: how much of the general (popularity) ranking a
/// person's feed keeps at each engagement level is learned at training (see
/// [`attune_rank::Ranker`]), so personalization grows with engagement as far as the data says it
/// helps. Set with `attune serve --goals-share`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Revelation {
    /// Share of positions drawn from declared goals (content) for a person without a history.
    pub goals_share: f32,
}

impl Default for Revelation {
    fn default() -> Self {
        Revelation { goals_share: 0.6 }
    }
}

/// Diversity weight of MMR: 1 is pure relevance.
const MMR_LAMBDA: f32 = 0.95;
/// Candidates kept per ranking.
const POOL: usize = 300;

/// What every stage reads: the moment's snapshot of the engine's state (read-only).
pub(crate) struct Inputs<'a> {
    pub now_ms: i64,
    pub catalog: &'a crate::catalog::ItemIndex,
    pub editorial: &'a EditorialSettings,
    pub models: &'a ModelSnapshot,
    pub revelation: Revelation,
}

/// The moment of a decision: its context features (local hour band, device, and the weather only
/// with contextual consent) as the served ranker's learned context effects name them, and the
/// device for rule conditions.
pub(crate) struct Moment<'a> {
    /// The person's local hour, if known.
    pub hour: Option<u8>,
    /// Active features of [`attune_rank::ContextEffects`] (empty without learned effects).
    pub features: Vec<u32>,
    pub device: Option<&'a str>,
    pub channel: Channel,
}

impl<'a> Moment<'a> {
    fn of(inputs: &Inputs<'_>, who: &Who, context: &'a DecideContext) -> Moment<'a> {
        // `local_time` if sent, else now in the request's time zone, else the person's.
        let timezone = context.timezone.as_deref().or(who.timezone.as_deref());
        let hour = crate::clock::local_hour(context.local_time.as_deref(), timezone, inputs.now_ms);
        let weather = context.weather.as_deref().filter(|_| who.consent.allows(Purpose::Contextual));
        let mut features = Vec::new();
        if let Some(effects) = inputs.models.ranker.as_ref().and_then(|r| r.context()) {
            let names = [
                hour.map(|h| crate::models::context_feature("hour_band", crate::variants::hour_band(h))),
                context.device.as_deref().map(|d| crate::models::context_feature("device", d)),
                weather.map(|w| crate::models::context_feature("weather", w)),
            ];
            features.extend(names.iter().flatten().filter_map(|name| effects.feature(name)));
        }
        Moment { hour, features, device: context.device.as_deref(), channel: context.channel }
    }

    /// The learned context effects, if the moment has any feature they know.
    pub fn effects<'m>(&self, inputs: &Inputs<'m>) -> Option<&'m attune_rank::ContextEffects> {
        inputs.models.ranker.as_ref().and_then(|r| r.context()).filter(|_| !self.features.is_empty())
    }
}

/// Per-thread buffers of one decision, reused: one entry per catalog item.
#[derive(Default)]
pub(crate) struct Scratch {
    pub personal: Vec<f32>,
    pub general: Vec<f32>,
    pub source: Vec<Source>,
    pub allowed: Vec<bool>,
    pub ranker: attune_rank::RankerScratch,
    /// The history as the ranker scored it (item indices, strengths, timestamps).
    pub history: (Vec<u32>, Vec<f32>, Vec<i64>),
    /// The pools being selected, per ranking, as the scores are computed.
    pub personal_candidates: attune_rank::TopK,
    pub general_candidates: attune_rank::TopK,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        for buffer in [&mut self.personal, &mut self.general] {
            buffer.clear();
            buffer.resize(n, 0.0);
        }
        self.source.clear();
        self.source.resize(n, Source::Popular);
        self.allowed.clear();
        self.allowed.resize(n, true);
        self.history.0.clear();
        self.history.1.clear();
        self.history.2.clear();
    }

    fn history_query(&self) -> attune_rank::Query<'_> {
        attune_rank::Query {
            user_idx: None,
            items: &self.history.0,
            weights: &self.history.1,
            timestamps: Some(&self.history.2),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The copy variant for a journey stage.
pub fn copy_variant(stage: JourneyStage, has_context: bool) -> &'static str {
    match stage {
        JourneyStage::New | JourneyStage::Researching => "foundational",
        JourneyStage::Exploring if has_context => "contextual",
        JourneyStage::Exploring => "foundational",
        JourneyStage::ReadyToBuy | JourneyStage::Customer => "emotional",
    }
}

/// What a decision reads (and, unless it is a preview, logs and exposes): the components, by
/// reference, for one call.
pub(crate) struct DecideCtx<'a> {
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn Ids,
    pub revelation: Revelation,
    pub catalog: &'a Catalog,
    pub editorial: &'a Editorial,
    pub models: &'a Models,
    pub people: &'a People,
    pub experiments: &'a Experiments,
    pub variants: &'a VariantBandits,
    pub decisions: &'a DecisionLog,
}

impl DecideCtx<'_> {
    /// Decides what to show. Never fails for an unknown person or an empty history.
    pub fn decide(&self, request: &DecideRequest) -> Result<Decision> {
        let now_ms = self.clock.now_ms();
        let models = self.models.current();
        let mut who = self.who(request.subject.as_deref(), now_ms);
        // Experiment arms and the global holdout are engine state: looked up before the pure
        // stages. People in the global holdout enter no experiment.
        let in_holdout = who.id.as_deref().is_some_and(|person| self.experiments.in_global_holdout(person));
        let arms: Vec<Option<(String, String, Policy)>> = request
            .placements
            .iter()
            .map(|p| if in_holdout { None } else { self.experiments.experiment_arm(&p.slot, who.id.as_deref()) })
            .collect();
        // A clean control: the holdout and a `popular` arm get, for the whole response, exactly
        // what a person without personalization consent gets.
        if in_holdout || arms.iter().flatten().any(|(_, _, policy)| *policy == Policy::Popular) {
            who = who.without_personalization();
        }
        let catalog = self.catalog.read();
        if !request.exclude.is_empty() {
            who.excluded.extend(request.exclude.iter().filter_map(|id| catalog.lookup(id)));
            who.excluded.sort_unstable();
            who.excluded.dedup();
        }
        let editorial = self.editorial.read();
        let inputs =
            Inputs { now_ms, catalog: &catalog, editorial: &editorial, models: &models, revelation: self.revelation };
        let mut local_hour = None;
        let mut placements = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let moment = Moment::of(&inputs, &who, &request.context);
            local_hour = moment.hour;
            let pools = rank::rank(&inputs, &who, &moment, &request.placements, &mut scratch);
            let filled = fill::fill(&inputs, &who, &pools, &request.placements, &arms, &moment, &scratch);
            explain::explain(&inputs, &who, &moment, filled, request.explain, &scratch)
        });
        let mut experiments: Vec<(String, String)> = Vec::new();
        for (experiment, arm, _) in arms.into_iter().flatten() {
            if !experiments.iter().any(|(e, _)| *e == experiment) {
                experiments.push((experiment, arm));
            }
        }
        let situation_goals = if who.personalized { who.preferences.goals.clone() } else { Vec::new() };
        let variant_context = crate::variants::VariantContext::new(
            request.context.device.as_deref(),
            local_hour,
            who.stage,
            who.engagement,
        );
        for placement in &mut placements {
            let settings = editorial.slot_settings(&placement.slot, request.context.channel);
            let situation = Situation {
                slot: &placement.slot,
                journey_stage: who.stage,
                goals: &situation_goals,
                device: request.context.device.as_deref(),
                personalized: who.personalized,
                channel: request.context.channel,
            };
            let (variant, learned) = self.choose_variant(&settings, &situation, &editorial.rules, &variant_context);
            placement.variant = variant;
            placement.variant_context = learned;
        }
        let decision = Decision {
            id: self.ids.decision_id(request.preview),
            personalized: who.personalized,
            journey_stage: who.stage,
            placements,
            experiments,
            channel: request.context.channel,
        };
        if !request.preview {
            if let Some(person) = who.id.as_deref() {
                for (experiment, arm) in &decision.experiments {
                    self.experiments.expose(experiment, arm, person, now_ms);
                }
            }
            self.decisions.log(logged(who.id.as_deref(), &decision, now_ms), self.variants);
            // The zone the request names is the latest seen for the person: remembered (with
            // personalization consent) for their quiet hours, send hour and moment.
            if let (Some(person), Some(zone)) = (who.id.as_deref(), request.context.timezone.as_deref())
                && who.seen_zone != Some(zone)
            {
                self.people.note_decided_zone(person, zone, now_ms);
            }
        }
        Ok(decision)
    }

    /// The slot's variant: the slot's own rules, then personalization rules that set a variant
    /// (by id) — forced, returned without a context — then the slot's bandit in `context`.
    fn choose_variant(
        &self,
        settings: &SlotSettings,
        situation: &Situation<'_>,
        rules: &rustc_hash::FxHashMap<String, crate::editorial::Rule>,
        context: &crate::variants::VariantContext,
    ) -> (String, Option<crate::variants::VariantContext>) {
        for rule in &settings.rules {
            if rule.when.matches(situation) && settings.variants.contains(&rule.variant) {
                return (rule.variant.clone(), None);
            }
        }
        let mut ids: Vec<&String> = rules.keys().collect();
        ids.sort();
        for id in ids {
            let rule = &rules[id];
            if let Some(variant) = &rule.then.variant
                && rule.when.matches(situation)
                && settings.variants.contains(variant)
            {
                return (variant.clone(), None);
            }
        }
        let Some(variant) = settings.variants.get(self.variants.choose(situation.slot, &settings.variants, context))
        else {
            return (crate::editorial::DEFAULT_VARIANTS[0].to_owned(), None);
        };
        (variant.clone(), Some(context.clone()))
    }

    /// Items similar to `id` (the served ranker's item-kNN neighbours; content similarity for
    /// items the models have not seen). Unavailable and flagged items are left out.
    pub fn similar_items(&self, id: &str, count: usize) -> Result<Vec<(Arc<Item>, f32)>> {
        let models = self.models.current();
        let catalog = self.catalog.read();
        let idx = catalog
            .lookup(id)
            .filter(|i| catalog.item(*i).is_some())
            .ok_or_else(|| UserError::not_found("item", id))?;
        let editorial = self.editorial.read();
        let mut neighbours: Vec<(u32, f32)> = models.knn().map(|k| k.neighbors(idx.0).to_vec()).unwrap_or_default();
        if neighbours.len() < count
            && let Some(content) = &models.content
            && (idx.0 as usize) < content.n_items()
        {
            for (j, score) in content.similar_items(idx.0, count * 2) {
                if !neighbours.iter().any(|(k, _)| *k == j) {
                    neighbours.push((j, score * 0.5));
                }
            }
        }
        Ok(neighbours
            .into_iter()
            .filter(|(j, _)| *j != idx.0)
            .filter_map(|(j, score)| {
                let item = catalog.item(ItemIdx(j))?;
                (item.available && !editorial.flags.contains_key(&item.id)).then(|| (Arc::clone(item), score))
            })
            .take(count)
            .collect())
    }
}

/// What the decision log keeps of a decision (ids, sources and reasons' texts).
fn logged(person: Option<&str>, decision: &Decision, now_ms: i64) -> LoggedDecision {
    LoggedDecision {
        id: decision.id.clone(),
        person: person.map(str::to_owned),
        at_ms: now_ms,
        personalized: decision.personalized,
        journey_stage: decision.journey_stage.as_str().to_owned(),
        placements: decision
            .placements
            .iter()
            .map(|p| LoggedPlacement {
                slot: p.slot.clone(),
                variant: p.variant.clone(),
                items: p
                    .items
                    .iter()
                    .map(|i| {
                        (
                            i.item.id.clone(),
                            i.source.as_str().to_owned(),
                            i.reasons.iter().map(|r| r.text.clone()).collect(),
                        )
                    })
                    .collect(),
                learned: p.variant_context.clone(),
            })
            .collect(),
        experiments: decision.experiments.clone(),
        channel: decision.channel.as_str().to_owned(),
    }
}

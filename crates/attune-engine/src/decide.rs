//! The decide pipeline: what to show this person in each slot, now, and why.
//!
//! 1. **Who**: resolve the id, read consent, preferences and the profile (never an error for an
//!    unknown person: they get the non-personalized default).
//! 2. **Candidates** per source, each scaled to 0–1 over the catalog: collaborative (item-kNN of
//!    recent items, with the history item that contributed most as evidence), predictive (iALS; a
//!    vector folded in from recent items for people newer than the model), content (declared goals
//!    and tag affinities — the cold start), contextual (time of day in the person's time zone,
//!    device; weather only with `contextual` consent), popular/trending (the default).
//! 3. **Blend** with gradual revelation: the personalized share grows with engagement
//!    ([`Revelation`]); the journey stage shapes it (education when researching, products
//!    when ready to buy); personalization rules boost or exclude tags.
//! 4. **Filters**, always: unavailable, bought, dismissed, flagged, `less_of`, already seen, and
//!    never twice in one response.
//! 5. **Calm**: per slot, an editorial share of human picks matched to the audience, a
//!    serendipity share from adjacent interests, and diversity (MMR over tags) for the rest.
//! 6. **Variant** per slot (rules first, then Thompson sampling on clicks), copy variant per item
//!    by journey stage, reasons from the evidence actually used, the decision logged.
//!
//! Everything heavy is precomputed at training; a decision allocates its scratch once per thread.

use std::{cell::RefCell, sync::Arc};

use attune_core::{Consent, Item, ItemIdx, JourneyStage, Preferences, Purpose, TagIdx, profile::RecentItem};
use attune_rank::Query;
use rustc_hash::FxHashSet;

use crate::{
    Engine, Result,
    editorial::{Situation, SlotSettings},
};

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
}

/// Gradual revelation: how much of a feed is personal, by engagement.
///
/// The personal share at engagement `e` (0–1, see `Profile::engagement`) is
/// `floor + (ceiling − floor) · e`, where the floor is `floor_with_goals` when the person declared
/// goals (explicit wishes are honored from the first visit) and `floor` otherwise. The share is of
/// *positions*: with a share of 0.4, four of ten main positions come from the personal ranking and
/// six from the general one (popular, trending, new), interleaved. Defaults: 0.1, 0.6, 0.9 — a new
/// visitor without goals sees a mostly popular, foundational feed; an engaged person a mostly
/// personal one. Set with `attune serve --revelation FLOOR,GOALS_FLOOR,CEILING`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Revelation {
    /// Share at zero engagement without declared goals.
    pub floor: f32,
    /// Share at zero engagement with declared goals.
    pub floor_with_goals: f32,
    /// Share at full engagement.
    pub ceiling: f32,
}

impl Default for Revelation {
    fn default() -> Self {
        Revelation { floor: 0.1, floor_with_goals: 0.6, ceiling: 0.9 }
    }
}

impl Revelation {
    /// The personal share at engagement `engagement`.
    pub fn personal_share(&self, engagement: f32, has_goals: bool) -> f32 {
        let floor = if has_goals { self.floor_with_goals } else { self.floor };
        (floor + (self.ceiling - floor) * engagement.clamp(0.0, 1.0)).clamp(0.0, 1.0)
    }
}

/// Diversity weight of MMR: 1 is pure relevance.
const MMR_LAMBDA: f32 = 0.75;
/// Candidates kept after blending.
const POOL: usize = 300;

#[derive(Default)]
struct Scratch {
    collab: Vec<f32>,
    evidence: Vec<(u32, f32)>,
    predictive: Vec<f32>,
    content: Vec<f32>,
    blended: Vec<f32>,
    general: Vec<f32>,
    source: Vec<Source>,
    allowed: Vec<bool>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        for buffer in [&mut self.collab, &mut self.predictive, &mut self.content, &mut self.blended, &mut self.general]
        {
            buffer.clear();
            buffer.resize(n, 0.0);
        }
        self.evidence.clear();
        self.evidence.resize(n, (u32::MAX, 0.0));
        self.source.clear();
        self.source.resize(n, Source::Popular);
        self.allowed.clear();
        self.allowed.resize(n, true);
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What the pipeline knows about the person.
struct Who {
    id: Option<String>,
    consent: Consent,
    preferences: Preferences,
    personalized: bool,
    stage: JourneyStage,
    engagement: f32,
    recent: Vec<RecentItem>,
    affinities: Vec<(TagIdx, f32)>,
    excluded: Vec<ItemIdx>,
}

fn scale_to_unit(values: &mut [f32]) {
    let max = values.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        for v in values.iter_mut() {
            *v = (*v / max).max(0.0);
        }
    } else {
        values.fill(0.0);
    }
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

fn verb(kind: &str) -> &'static str {
    match kind {
        "article" | "guide" | "story" => "read",
        "meditation" | "podcast" | "audio" => "listened to",
        "course" => "followed",
        "product" | "retreat" => "looked at",
        _ => "viewed",
    }
}

fn pretty_tag(tag: &str) -> String {
    tag.replace(['_', '-'], " ")
}

/// Tags that fit a local hour, and how a reason says so.
fn moment_tags(hour: i8) -> (&'static str, &'static [&'static str]) {
    match hour {
        5..=9 => ("A good fit for your morning", &["morning", "energy", "breathing", "focus"]),
        10..=16 => ("Fits the middle of your day", &["focus", "movement", "walking", "nature"]),
        17..=20 => ("Fits your evening", &["evening", "stress_relief", "relaxation", "yoga"]),
        _ => ("For winding down tonight", &["sleep", "evening", "body_scan", "relaxation"]),
    }
}

fn weather_tags(weather: &str) -> &'static [&'static str] {
    match weather {
        "rain" | "rainy" | "snow" | "storm" | "cold" => &["indoor", "tea", "journaling", "reading"],
        "sun" | "sunny" | "clear" | "warm" => &["nature", "walking", "outdoor", "movement"],
        _ => &[],
    }
}

fn jaccard(a: &[TagIdx], b: &[TagIdx]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let shared = a.iter().filter(|t| b.contains(t)).count();
    shared as f32 / (a.len() + b.len() - shared) as f32
}

impl Engine {
    fn who(&self, subject: Option<&str>, now_ms: i64) -> Who {
        let Some(subject) = subject else {
            return Who {
                id: None,
                consent: self.config.default_consent,
                preferences: Preferences::default(),
                personalized: false,
                stage: JourneyStage::New,
                engagement: 0.0,
                recent: Vec::new(),
                affinities: Vec::new(),
                excluded: Vec::new(),
            };
        };
        let person = self.resolve(subject);
        self.people.read(&person, |state| {
            let consent = state.and_then(|s| s.consent).unwrap_or(self.config.default_consent);
            let preferences = state.and_then(|s| s.preferences.clone()).unwrap_or_default();
            let profile = state.and_then(|s| s.profile.as_ref()).filter(|_| consent.personalization);
            // Personalized means something personal was there to use: a history or declared goals.
            let personalized = consent.personalization
                && preferences.personalization
                && (profile.is_some_and(|p| p.n_events > 0) || !preferences.goals.is_empty());
            let excluded: Vec<ItemIdx> = state.map(|s| s.excluded.clone()).unwrap_or_default();
            let used = profile.filter(|_| personalized);
            Who {
                consent,
                personalized,
                stage: if personalized { JourneyStage::detect(used, now_ms) } else { JourneyStage::New },
                engagement: used.map_or(0.0, |p| p.engagement(now_ms)),
                recent: used.map(|p| p.recent.clone()).unwrap_or_default(),
                affinities: used.map(|p| p.top_affinities(now_ms, 8)).unwrap_or_default(),
                preferences,
                excluded,
                id: Some(person.clone()),
            }
        })
    }

    /// Decides what to show. Never fails for an unknown person or an empty history.
    pub fn decide(&self, request: &DecideRequest) -> Result<Decision> {
        let now_ms = self.now_ms();
        let models = self.models();
        let who = self.who(request.subject.as_deref(), now_ms);
        let erased = who.id.as_ref().is_some_and(|id| self.erased_since_training.read().contains(id));
        let catalog = self.catalog.read();
        let editorial = self.editorial.read();
        let n = catalog.len();
        let goals: Vec<TagIdx> = if who.personalized {
            who.preferences.goals.iter().filter_map(|g| catalog.lookup_tag(g)).collect()
        } else {
            Vec::new()
        };
        let less_of: Vec<TagIdx> = who.preferences.less_of.iter().filter_map(|g| catalog.lookup_tag(g)).collect();

        // The moment: local hour, device, weather (with contextual consent only).
        let local_hour = local_hour(&request.context, &who.preferences, now_ms);
        let (moment, hour_tags) = local_hour.map(moment_tags).unwrap_or(("", &[]));
        let weather = request.context.weather.as_deref().filter(|_| who.consent.allows(Purpose::Contextual));
        let mut context_tags: Vec<TagIdx> = hour_tags.iter().filter_map(|t| catalog.lookup_tag(t)).collect();
        if let Some(weather) = weather {
            context_tags.extend(weather_tags(weather).iter().filter_map(|t| catalog.lookup_tag(t)));
        }
        let has_context = !context_tags.is_empty();

        let situation_goals = if who.personalized { who.preferences.goals.clone() } else { Vec::new() };
        let mut rule_boost: Vec<TagIdx> = Vec::new();
        let mut rule_exclude: Vec<TagIdx> = Vec::new();

        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let s = &mut *scratch;
            s.reset(n);

            // Sources.
            let history: Vec<u32> = who.recent.iter().map(|r| r.item.0).collect();
            let strengths: Vec<f32> = who.recent.iter().map(|r| r.strength.max(0.1)).collect();
            let model_items = models.n_items.min(n);
            if who.personalized && !history.is_empty() {
                let known: Vec<(u32, f32)> = history
                    .iter()
                    .zip(&strengths)
                    .filter(|(i, _)| (**i as usize) < model_items)
                    .map(|(i, w)| (*i, *w))
                    .collect();
                let (items, weights): (Vec<u32>, Vec<f32>) = known.iter().copied().unzip();
                let query = Query::anonymous(&items, &weights);
                if let Some(knn) = &models.knn {
                    knn.score_with_evidence(&query, &mut s.collab[..model_items], &mut s.evidence[..model_items]);
                    scale_to_unit(&mut s.collab);
                }
                if let Some(ials) = &models.ials {
                    let row = who.id.as_ref().filter(|_| !erased).and_then(|id| models.users.get(id));
                    let vector = match row.and_then(|r| ials.user_vector(*r)) {
                        Some(v) => v.to_vec(),
                        None if !known.is_empty() => ials.fold_in(&known),
                        None => Vec::new(),
                    };
                    if !vector.is_empty() {
                        ials.score_vector(&vector, &mut s.predictive[..model_items]);
                        scale_to_unit(&mut s.predictive);
                    }
                }
            }
            if who.personalized
                && (!goals.is_empty() || !who.affinities.is_empty())
                && let Some(content) = &models.content
            {
                let mut terms: Vec<(String, f32)> = Vec::new();
                for goal in &who.preferences.goals {
                    terms.push((attune_rank::Content::term("tag", goal), 1.0));
                }
                for (tag, weight) in &who.affinities {
                    terms.push((attune_rank::Content::term("tag", catalog.tag_name(*tag)), 0.6 * weight));
                }
                let borrowed: Vec<(&str, f32)> = terms.iter().map(|(t, w)| (t.as_str(), *w)).collect();
                let covered = content.n_items().min(n);
                content.score_for_terms(&borrowed, &mut s.content[..covered]);
                scale_to_unit(&mut s.content);
            }

            // Blend.
            let personal = if who.personalized {
                self.config.revelation.personal_share(who.engagement, !goals.is_empty())
            } else {
                0.0
            };
            let (w_collab, w_pred, w_content) = if history.is_empty() { (0.0, 0.0, 1.0) } else { (0.4, 0.3, 0.3) };
            let w_ctx = if has_context { 0.15 } else { 0.0 };
            let situation = Situation {
                slot: "",
                journey_stage: who.stage,
                goals: &situation_goals,
                device: request.context.device.as_deref(),
                personalized: who.personalized,
            };
            for rule in editorial.rules.values() {
                if matches_ignoring_slot(&rule.when, &situation) {
                    rule_boost.extend(rule.then.boost_tags.iter().filter_map(|t| catalog.lookup_tag(t)));
                    rule_exclude.extend(rule.then.exclude_tags.iter().filter_map(|t| catalog.lookup_tag(t)));
                }
            }
            // Two rankings: the personal one (collaborative, predictive, content) and the general
            // one (popular, trending, new). Both lean on the moment and the journey stage.
            // Flags hold items back: mark them once instead of looking up every item's id.
            for flagged in editorial.flags.keys() {
                if let Some(idx) = catalog.lookup(flagged) {
                    s.allowed[idx.0 as usize] = false;
                }
            }
            // What the person already engaged with is not offered again.
            if who.personalized {
                for &i in &history {
                    if let Some(allowed) = s.allowed.get_mut(i as usize) {
                        *allowed = false;
                    }
                }
            }
            for &idx in &who.excluded {
                if let Some(allowed) = s.allowed.get_mut(idx.0 as usize) {
                    *allowed = false;
                }
            }
            // Per-tag roles as one byte each, so the loop below tests membership by index.
            const CTX: u8 = 1;
            const EXCLUDE: u8 = 2;
            const BOOST: u8 = 4;
            let mut tag_roles = vec![0u8; catalog.n_tags()];
            for t in &context_tags {
                tag_roles[t.0 as usize] |= CTX;
            }
            for t in less_of.iter().chain(&rule_exclude) {
                tag_roles[t.0 as usize] |= EXCLUDE;
            }
            for t in &rule_boost {
                tag_roles[t.0 as usize] |= BOOST;
            }
            let recency_scale = 180.0 * 86_400_000.0;
            // The candidate pools (the best POOL allowed items of each ranking) are collected
            // while scoring, in bounded heaps.
            let mut personal_top = TopK::new(POOL);
            let mut general_top = TopK::new(POOL);
            for i in 0..n {
                let idx = ItemIdx(i as u32);
                let traits = catalog.traits(idx);
                let tags = catalog.tags_of(idx);
                let roles = tags.iter().fold(0u8, |acc, t| acc | tag_roles[t.0 as usize]);
                let allowed = s.allowed[i] && traits.available && roles & EXCLUDE == 0;
                s.allowed[i] = allowed;
                if !allowed {
                    continue;
                }
                let pop = if i < models.popularity.len() {
                    0.6 * models.trending[i] + 0.4 * models.popularity[i]
                } else {
                    0.0
                };
                let recency_prior =
                    traits.published_ms.map_or(0.0, |p| 0.05 * (-((now_ms - p).max(0) as f32) / recency_scale).exp());
                let ctx = if roles & CTX != 0 {
                    w_ctx * tags.iter().filter(|t| tag_roles[t.0 as usize] & CTX != 0).count().min(2) as f32 / 2.0
                } else {
                    0.0
                };
                let mut factor = stage_factor(who.stage, traits);
                if roles & BOOST != 0 {
                    factor *= 1.5;
                }
                let parts = [
                    (Source::Collaborative, w_collab * s.collab[i]),
                    (Source::Predictive, w_pred * s.predictive[i]),
                    (Source::Content, w_content * s.content[i]),
                ];
                let personal_score: f32 = parts.iter().map(|(_, v)| v).sum();
                let (source, best_part) =
                    parts.iter().copied().fold((Source::Content, 0.0), |a, b| if b.1 > a.1 { b } else { a });
                s.blended[i] = if personal_score > 0.0 { (personal_score + ctx) * factor } else { 0.0 };
                s.source[i] = if ctx > best_part { Source::Contextual } else { source };
                s.general[i] = (pop + recency_prior + ctx) * factor;
                if s.blended[i] > 0.0 {
                    personal_top.push(s.blended[i], i as u32);
                }
                general_top.push(s.general[i], i as u32);
            }

            // The candidate pools: the best POOL allowed items of each ranking.
            let personal_pool = if personal > 0.0 { personal_top.into_sorted() } else { Vec::new() };
            let general_pool = general_top.into_sorted();
            let unit = |scores: &[f32], pool: &[u32]| pool.first().map_or(1.0, |i| scores[*i as usize]).max(1e-6);
            let (personal_best, general_best) = (unit(&s.blended, &personal_pool), unit(&s.general, &general_pool));
            // What an item is worth, on one 0–1 scale, for the score in the answer.
            let worth = |i: u32| {
                personal * s.blended[i as usize] / personal_best
                    + (1.0 - personal) * s.general[i as usize] / general_best
            };

            let mut used: FxHashSet<u32> = FxHashSet::default();
            let mut placements = Vec::with_capacity(request.placements.len());
            let mut experiments: Vec<(String, String)> = Vec::new();
            let top_interest: Vec<TagIdx> =
                goals.iter().copied().chain(who.affinities.iter().take(3).map(|(t, _)| *t)).collect();
            for placement in &request.placements {
                let settings = editorial.slots.get(&placement.slot).cloned().unwrap_or_default();
                let slot_situation = Situation { slot: &placement.slot, ..situation };
                let count = settings.max_items.map_or(placement.count, |m| placement.count.min(m as usize));
                let n_editorial = (count as f32 * settings.editorial_share).round() as usize;
                let n_explore =
                    if count >= 3 { (count as f32 * settings.serendipity_share).round() as usize } else { 0 };

                // Editorial picks for this audience.
                let mut picks: Vec<(&crate::editorial::Pick, u32)> = editorial
                    .picks
                    .values()
                    .filter(|p| p.applies(&slot_situation, now_ms))
                    .filter_map(|p| catalog.lookup(&p.item).map(|idx| (p, idx.0)))
                    .filter(|(_, idx)| s.allowed[*idx as usize] && !used.contains(idx))
                    .collect();
                picks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
                picks.dedup_by_key(|(_, idx)| *idx);
                picks.truncate(n_editorial.min(count));
                for (_, idx) in &picks {
                    used.insert(*idx);
                }

                // Serendipity: well-regarded items outside the person's main interests, from below
                // the top of the general ranking.
                let mut explore: Vec<u32> = Vec::new();
                if n_explore > 0 {
                    for &i in general_pool.iter().skip(count) {
                        if explore.len() >= n_explore {
                            break;
                        }
                        let tags = catalog.tags_of(ItemIdx(i));
                        let novel = top_interest.is_empty() || !tags.iter().any(|t| top_interest.contains(t));
                        if novel && !used.contains(&i) {
                            explore.push(i);
                            used.insert(i);
                        }
                    }
                }

                // An experiment on this slot may hold the person to the non-personalized default.
                let share = match self.experiment_arm(&placement.slot, who.id.as_deref()) {
                    Some((experiment, arm, policy)) => {
                        if !experiments.iter().any(|(e, _)| *e == experiment) {
                            experiments.push((experiment, arm));
                        }
                        if policy == crate::experiments::Policy::Popular { 0.0 } else { personal }
                    }
                    None => personal,
                };

                // The rest: positions shared between the personal and the general ranking by the
                // personal share (gradual revelation), each pick by MMR over tags for diversity.
                let n_main = count.saturating_sub(picks.len() + explore.len());
                let mut main: Vec<(u32, Source)> = Vec::with_capacity(n_main);
                let mut n_personal_taken = 0usize;
                while main.len() < n_main {
                    let want_personal = ((main.len() + 1) as f32 * share).round() as usize > n_personal_taken;
                    let choose = |pool: &[u32], scores: &[f32], best: f32| -> Option<u32> {
                        pool.iter()
                            .copied()
                            .filter(|i| !used.contains(i))
                            .take(n_main * 4 + 8)
                            .map(|i| {
                                let tags = catalog.tags_of(ItemIdx(i));
                                let redundancy = main
                                    .iter()
                                    .map(|(j, _)| jaccard(tags, catalog.tags_of(ItemIdx(*j))))
                                    .fold(0.0f32, f32::max);
                                (i, MMR_LAMBDA * scores[i as usize] / best - (1.0 - MMR_LAMBDA) * redundancy)
                            })
                            .fold(
                                None,
                                |a: Option<(u32, f32)>, b| if a.is_none_or(|a| b.1 > a.1) { Some(b) } else { a },
                            )
                            .map(|(i, _)| i)
                    };
                    let from_personal =
                        if want_personal { choose(&personal_pool, &s.blended, personal_best) } else { None };
                    let next = match from_personal {
                        Some(i) => {
                            n_personal_taken += 1;
                            Some((i, s.source[i as usize]))
                        }
                        None => choose(&general_pool, &s.general, general_best).map(|i| {
                            let source = if s.general[i as usize] > 0.0 && s.source[i as usize] == Source::Contextual {
                                Source::Contextual
                            } else {
                                Source::Popular
                            };
                            (i, source)
                        }),
                    };
                    let Some((i, source)) = next else { break };
                    used.insert(i);
                    main.push((i, source));
                }

                // Lay out: picks spread through the list, explore items towards the end.
                let mut order = main;
                let step = if picks.is_empty() { 1 } else { (count / picks.len()).max(1) };
                for (k, (_, idx)) in picks.iter().enumerate() {
                    let at = (1 + k * step).min(order.len());
                    order.insert(at, (*idx, Source::Editorial));
                }
                for (k, &i) in explore.iter().enumerate() {
                    let at = order.len().saturating_sub(k * 2).min(order.len());
                    order.insert(at, (i, Source::Explore));
                }

                let copy = copy_variant(who.stage, has_context);
                let items = order
                    .into_iter()
                    .filter_map(|(i, source)| {
                        let idx = ItemIdx(i);
                        let item = Arc::clone(catalog.item(idx)?);
                        let reasons = if request.explain {
                            self.reasons(ReasonInput {
                                catalog: &catalog,
                                idx,
                                source,
                                evidence: s.evidence[i as usize],
                                goals: &goals,
                                affinities: &who.affinities,
                                context_tags: &context_tags,
                                moment,
                                weather,
                                trending: models.trending.get(i as usize).copied().unwrap_or(0.0),
                                pick_note: None,
                            })
                        } else {
                            Vec::new()
                        };
                        let copy_variant = if item.variants.contains_key(copy) { copy } else { "foundational" };
                        Some(DecidedItem { item, score: worth(i), source, reasons, copy_variant })
                    })
                    .collect();
                let variant = self.choose_variant(&settings, &slot_situation, &editorial.rules);
                placements.push(PlacementDecision { slot: placement.slot.clone(), variant, items });
            }

            let decision = Decision {
                id: format!("{}-{}", if request.preview { "preview" } else { "dec" }, ulid::Ulid::generate()),
                personalized: who.personalized,
                journey_stage: who.stage,
                placements,
                experiments,
            };
            if !request.preview {
                for (experiment, arm) in &decision.experiments {
                    self.expose(experiment, arm);
                }
                self.log_decision(who.id.as_deref(), &decision, now_ms);
            }
            Ok(decision)
        })
    }

    fn choose_variant(
        &self,
        settings: &SlotSettings,
        situation: &Situation<'_>,
        rules: &rustc_hash::FxHashMap<String, crate::editorial::Rule>,
    ) -> String {
        for rule in &settings.rules {
            if rule.when.matches(situation) && settings.variants.contains(&rule.variant) {
                return rule.variant.clone();
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
                return variant.clone();
            }
        }
        self.decisions.choose_variant(situation.slot, &settings.variants)
    }

    fn reasons(&self, input: ReasonInput<'_>) -> Vec<Reason> {
        let ReasonInput {
            catalog,
            idx,
            source,
            evidence,
            goals,
            affinities,
            context_tags,
            moment,
            weather,
            trending,
            pick_note,
        } = input;
        let tags = catalog.tags_of(idx);
        let goal = tags.iter().find(|t| goals.contains(t));
        let affinity = tags.iter().find(|t| affinities.iter().any(|(a, _)| a == *t));
        let mut reasons = Vec::with_capacity(2);
        let goal_reason = |tag: TagIdx| Reason {
            kind: ReasonKind::Goal,
            item: None,
            tag: Some(catalog.tag_name(tag).to_owned()),
            text: format!("Matches your goal: {}", pretty_tag(catalog.tag_name(tag))),
        };
        match source {
            Source::Collaborative if evidence.0 != u32::MAX => {
                let from = ItemIdx(evidence.0);
                let (title, kind) = catalog
                    .item(from)
                    .map_or((catalog.id(from).to_owned(), String::new()), |i| (i.title.clone(), i.kind.clone()));
                reasons.push(Reason {
                    kind: ReasonKind::SimilarTo,
                    item: Some(catalog.id(from).to_owned()),
                    tag: None,
                    text: format!("Because you {} “{}”", verb(&kind), title),
                });
            }
            Source::Predictive | Source::Collaborative => reasons.push(Reason {
                kind: ReasonKind::PopularWithSimilar,
                item: None,
                tag: None,
                text: "Popular with people whose interests match yours".into(),
            }),
            Source::Content => match (goal, affinity) {
                (Some(tag), _) => reasons.push(goal_reason(*tag)),
                (None, Some(tag)) => reasons.push(Reason {
                    kind: ReasonKind::Affinity,
                    item: None,
                    tag: Some(catalog.tag_name(*tag).to_owned()),
                    text: format!("Because you often explore {}", pretty_tag(catalog.tag_name(*tag))),
                }),
                (None, None) => {}
            },
            Source::Contextual => {
                let text = match weather
                    .filter(|w| !weather_tags(w).is_empty() && tags.iter().any(|t| context_tags.contains(t)))
                {
                    Some(weather) => format!("For a {} day", pretty_tag(weather)),
                    None if !moment.is_empty() => moment.to_owned(),
                    None => "Fits the moment".into(),
                };
                reasons.push(Reason { kind: ReasonKind::Context, item: None, tag: None, text });
            }
            Source::Editorial => reasons.push(Reason {
                kind: ReasonKind::EditorPick,
                item: None,
                tag: None,
                text: pick_note.map_or_else(|| "Editor's pick".to_owned(), |n| format!("Editor's pick: {n}")),
            }),
            Source::Explore => reasons.push(Reason {
                kind: ReasonKind::Explore,
                item: None,
                tag: None,
                text: "Something new to explore".into(),
            }),
            Source::Popular => {}
        }
        if let Some(tag) = goal
            && !reasons.iter().any(|r| r.kind == ReasonKind::Goal)
            && source != Source::Editorial
        {
            reasons.push(goal_reason(*tag));
        }
        if reasons.is_empty() {
            reasons.push(if trending >= 0.3 {
                Reason { kind: ReasonKind::Trending, item: None, tag: None, text: "Popular this week".into() }
            } else {
                Reason { kind: ReasonKind::Default, item: None, tag: None, text: "A good place to start".into() }
            });
        }
        reasons
    }

    /// Items similar to `id` (item-kNN neighbours; content similarity for items the models have
    /// not seen). Unavailable and flagged items are left out.
    pub fn similar_items(&self, id: &str, count: usize) -> Result<Vec<(Arc<Item>, f32)>> {
        let models = self.models();
        let catalog = self.catalog.read();
        let idx = catalog
            .lookup(id)
            .filter(|i| catalog.item(*i).is_some())
            .ok_or_else(|| crate::UserError::not_found("item", id))?;
        let editorial = self.editorial.read();
        let mut neighbours: Vec<(u32, f32)> =
            models.knn.as_ref().map(|k| k.neighbors(idx.0).to_vec()).unwrap_or_default();
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

/// The `k` best (score, item) pairs seen, by score then lower item index.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Scored>>,
}

#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    /// Higher score is greater; on a tie the lower item index is greater (it ranks first).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k + 1) }
    }

    fn push(&mut self, score: f32, item: u32) {
        let scored = Scored(score, item);
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(scored));
        } else if self.heap.peek().is_some_and(|min| scored > min.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(scored));
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<u32> {
        let mut all: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.into_iter().map(|s| s.1).collect()
    }
}

struct ReasonInput<'a> {
    catalog: &'a crate::Catalog,
    idx: ItemIdx,
    source: Source,
    evidence: (u32, f32),
    goals: &'a [TagIdx],
    affinities: &'a [(TagIdx, f32)],
    context_tags: &'a [TagIdx],
    moment: &'a str,
    weather: Option<&'a str>,
    trending: f32,
    pick_note: Option<&'a str>,
}

fn matches_ignoring_slot(when: &crate::editorial::Conditions, situation: &Situation<'_>) -> bool {
    // Personalization rules that name a slot are applied per slot by the variant choice; tag
    // effects apply to the whole decision when the rest of the conditions match.
    crate::editorial::Conditions { slot: None, ..when.clone() }.matches(situation)
}

/// How much the journey stage favours an item.
fn stage_factor(stage: JourneyStage, traits: crate::catalog::ItemTraits) -> f32 {
    let crate::catalog::ItemTraits { purchasable, educational, beginner, .. } = traits;
    match stage {
        JourneyStage::New if beginner => 1.1,
        JourneyStage::Researching if educational => 1.2,
        JourneyStage::Researching if purchasable => 0.85,
        JourneyStage::ReadyToBuy if purchasable => 1.3,
        JourneyStage::Customer if !purchasable => 1.1,
        _ => 1.0,
    }
}

/// The person's local hour: `local_time` if sent, else now in their time zone (request or
/// preferences), else none.
fn local_hour(context: &DecideContext, preferences: &Preferences, now_ms: i64) -> Option<i8> {
    if let Some(local) = &context.local_time
        && local.parse::<jiff::Timestamp>().is_ok()
    {
        // An RFC 3339 time with offset: its wall clock (the digits after `T`) is the person's.
        return local.split_once('T').and_then(|(_, time)| time.get(..2)?.parse().ok());
    }
    let tz = context.timezone.as_deref().or(preferences.timezone.as_deref())?;
    let tz = jiff::tz::TimeZone::get(tz).ok()?;
    let ts = jiff::Timestamp::from_millisecond(now_ms).ok()?;
    Some(ts.to_zoned_datetime(tz).hour())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The bounded heap keeps exactly what sort-and-truncate keeps, in the same order.
        #[test]
        fn top_k_equals_sort_and_truncate(scores in prop::collection::vec(0u8..20, 0..200), k in 1usize..30) {
            let mut top = TopK::new(k);
            for (i, &score) in scores.iter().enumerate() {
                top.push(f32::from(score), i as u32);
            }
            let mut expected: Vec<u32> = (0..scores.len() as u32).collect();
            expected.sort_by(|&a, &b| scores[b as usize].cmp(&scores[a as usize]).then(a.cmp(&b)));
            expected.truncate(k);
            prop_assert_eq!(top.into_sorted(), expected);
        }
    }

    #[test]
    fn revelation_grows_with_engagement() {
        let curve = Revelation::default();
        assert!((curve.personal_share(0.0, false) - 0.1).abs() < 1e-6);
        assert!((curve.personal_share(0.0, true) - 0.6).abs() < 1e-6);
        assert!((curve.personal_share(1.0, false) - 0.9).abs() < 1e-6);
        assert!(curve.personal_share(0.5, false) > curve.personal_share(0.2, false));
    }
}

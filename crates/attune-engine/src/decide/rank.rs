//! Stage 2, rank: the filters and the two candidate rankings (see the module documentation of
//! [`crate::decide`]).

use attune_core::{ItemIdx, JourneyStage, TagIdx};

use super::{Inputs, Moment, POOL, PlacementRequest, Scratch, Source, Who};
use crate::catalog::ItemTraits;
use crate::models::{GENERAL_PERIOD_MS, GeneralKey, GeneralOrder};

/// The time scale of a new item's recency prior in the general ranking (180 days).
const RECENCY_SCALE_MS: f32 = 180.0 * 86_400_000.0;

/// Where the personal ranking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Personal {
    /// The served ranker over the person's history.
    Ranker,
    /// Declared goals and tag affinities (no history yet).
    Content,
    /// Nothing personal: the general ranking only.
    None,
}

/// The candidates of both rankings, best first, with the personal share of positions.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    pub personal: Vec<u32>,
    pub general: Vec<u32>,
    /// Share of a slot's main positions taken from the personal ranking.
    pub share: f32,
    /// Goals (interned) when the person is personalized.
    pub goals: Vec<TagIdx>,
}

/// Marks what may be shown, scores both rankings into `s` and collects their pools.
pub(crate) fn rank(
    inputs: &Inputs<'_>,
    who: &Who,
    moment: &Moment<'_>,
    placements: &[PlacementRequest],
    s: &mut Scratch,
) -> Pools {
    let catalog = inputs.catalog;
    let editorial = inputs.editorial;
    let models = inputs.models;
    let n = catalog.len();
    s.reset(n);
    let goals: Vec<TagIdx> = if who.personalized {
        who.preferences.goals.iter().filter_map(|g| catalog.lookup_tag(g)).collect()
    } else {
        Vec::new()
    };
    let less_of: Vec<TagIdx> = who.preferences.less_of.iter().filter_map(|g| catalog.lookup_tag(g)).collect();

    // Editors' personalization rules that match the person (their slot conditions apply to the
    // variant choice): tags to boost or leave out.
    let situation_goals = if who.personalized { who.preferences.goals.clone() } else { Vec::new() };
    let situation = crate::editorial::Situation {
        slot: "",
        journey_stage: who.stage,
        goals: &situation_goals,
        device: moment.device,
        personalized: who.personalized,
        channel: moment.channel,
    };
    let mut boost: Vec<TagIdx> = Vec::new();
    let mut exclude: Vec<TagIdx> = Vec::new();
    for rule in editorial.rules.values() {
        let when = crate::editorial::Conditions { slot: None, ..rule.when.clone() };
        if when.matches(&situation) {
            boost.extend(rule.then.boost_tags.iter().filter_map(|t| catalog.lookup_tag(t)));
            exclude.extend(rule.then.exclude_tags.iter().filter_map(|t| catalog.lookup_tag(t)));
        }
    }

    // Filters: flags, bought and dismissed; consumed items unless a requested slot allows them
    // (then each slot filters them itself).
    for flagged in editorial.flags.keys() {
        if let Some(idx) = catalog.lookup(flagged) {
            s.allowed[idx.0 as usize] = false;
        }
    }
    let repeats_somewhere = placements.iter().any(|p| editorial.repeats(&p.slot, moment.channel));
    let never = who.excluded.iter().chain(if repeats_somewhere { &[][..] } else { &who.consumed[..] });
    for idx in never {
        if let Some(allowed) = s.allowed.get_mut(idx.0 as usize) {
            *allowed = false;
        }
    }

    // The personal ranking.
    let mut kind = Personal::None;
    if who.personalized
        && !who.recent.is_empty()
        && let Some(ranker) = &models.ranker
    {
        let covered = ranker.n_items().min(n);
        for r in who.recent.iter().filter(|r| (r.item.0 as usize) < covered) {
            s.history.0.push(r.item.0);
            s.history.1.push(r.strength.max(0.1));
            s.history.2.push(r.ts_ms);
        }
        if !s.history.0.is_empty() && covered == ranker.n_items() {
            let Scratch { personal, ranker: ranker_scratch, history, .. } = &mut *s;
            let query = attune_rank::Query {
                user_idx: None,
                items: &history.0,
                weights: &history.1,
                timestamps: Some(&history.2),
            };
            ranker.score_in_context(
                &query,
                who.history_len(),
                &moment.features,
                &mut personal[..covered],
                ranker_scratch,
            );
            // Items newer than the models have no evidence: they rank below every scored one.
            let floor = personal[..covered].iter().copied().fold(f32::INFINITY, f32::min);
            personal[covered..].fill(if floor.is_finite() { floor } else { 0.0 });
            s.source.fill(Source::Collaborative);
            kind = Personal::Ranker;
        }
    }
    if kind == Personal::None
        && who.personalized
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
        content.score_for_terms(&borrowed, &mut s.personal[..covered]);
        s.source.fill(Source::Content);
        kind = Personal::Content;
    }

    // Per-tag roles as one byte each, so the loop below tests membership by index.
    const EXCLUDE: u8 = 2;
    const BOOST: u8 = 4;
    let mut tag_roles = vec![0u8; catalog.n_tags()];
    for t in less_of.iter().chain(&exclude) {
        tag_roles[t.0 as usize] |= EXCLUDE;
    }
    for t in &boost {
        tag_roles[t.0 as usize] |= BOOST;
    }
    // Most decisions have no tag to boost or leave out: then no item's tags are read.
    let any_roles = !(less_of.is_empty() && exclude.is_empty() && boost.is_empty());
    // The general ranking: trending and all-time popularity, new items, the moment, the journey
    // stage — the non-personalized default, and the cold start. It is the same for everyone in
    // a moment, so it is scored and sorted once per moment (cached in the model snapshot) and
    // walked past what this person may not see; editors' tag roles change it per person, and
    // then every item is scored here.
    // The learned context effects at the general ranking's weights, on the scale of the
    // popularity mix they were validated against (standardized popularity).
    let context_rows: Vec<(&[f32], f32)> = moment
        .effects(inputs)
        .map(|effects| effects.weighted_rows(&moment.features, false))
        .unwrap_or_default()
        .into_iter()
        .map(|(row, weight)| (row, weight * models.general_scale))
        .collect();
    let general_now = inputs.now_ms - inputs.now_ms.rem_euclid(GENERAL_PERIOD_MS);
    let pool = POOL + if repeats_somewhere { who.consumed.len() } else { 0 };
    // The cached order of this moment, unless tag roles apply (or, defensively, it is not this
    // catalog's: then every item is scored here as well).
    let cached = (!any_roles)
        .then(|| {
            let key = GeneralKey {
                catalog_generation: catalog.generation(),
                stage: who.stage,
                features: moment.features.clone(),
                period_ms: general_now,
            };
            models.general.get_or_compute(key, || general_order(inputs, who.stage, &context_rows, general_now))
        })
        .filter(|order| order.scores.len() == n);
    let general = if let Some(order) = cached {
        for (allowed, &available) in s.allowed.iter_mut().zip(&order.available) {
            *allowed &= available;
        }
        s.general.copy_from_slice(&order.scores);
        let mut general = Vec::with_capacity(pool);
        for &i in &order.order {
            if general.len() == pool {
                break;
            }
            if s.allowed[i as usize] {
                general.push(i);
            }
        }
        if kind == Personal::None {
            for &i in &general {
                if order.lifted[i as usize] {
                    s.source[i as usize] = Source::Contextual;
                }
            }
        }
        general
    } else {
        s.general_candidates.reset(pool);
        for i in 0..n {
            let idx = ItemIdx(i as u32);
            let traits = catalog.traits(idx);
            let roles = catalog.tags_of(idx).iter().fold(0u8, |acc, t| acc | tag_roles[t.0 as usize]);
            let allowed = s.allowed[i] && traits.available && roles & EXCLUDE == 0;
            s.allowed[i] = allowed;
            if !allowed {
                continue;
            }
            let (score, lifted) = general_score(inputs, who.stage, &context_rows, general_now, i, traits);
            s.general[i] = if roles & BOOST != 0 { 1.5 * score } else { score };
            if kind == Personal::None && lifted {
                s.source[i] = Source::Contextual;
            }
            s.general_candidates.offer(i as u32, s.general[i]);
        }
        s.general_candidates.take_sorted()
    };
    if kind != Personal::None {
        let Scratch { personal, allowed, personal_candidates, .. } = &mut *s;
        personal_candidates.reset(pool);
        let any_score = kind == Personal::Ranker;
        personal_candidates.offer_dense(&personal[..n], |i, score| allowed[i] && (any_score || score > 0.0));
    }
    let mut personal = if kind == Personal::None { Vec::new() } else { s.personal_candidates.take_sorted() };
    // The personal scores on one 0–1 scale over the pool (the ranker's are standardized sums);
    // editors' boosts then count half as much again.
    if let (Some(&best), Some(&worst)) = (personal.first(), personal.last()) {
        let (hi, lo) =
            (s.personal[best as usize], if kind == Personal::Ranker { s.personal[worst as usize] } else { 0.0 });
        let span = (hi - lo).max(1e-6);
        for &i in &personal {
            let tags = catalog.tags_of(ItemIdx(i));
            let boosted = tags.iter().any(|t| tag_roles[t.0 as usize] & BOOST != 0);
            let unit = ((s.personal[i as usize] - lo) / span).clamp(0.0, 1.0);
            s.personal[i as usize] = if boosted { unit * 1.5 } else { unit };
        }
        if !boost.is_empty() {
            personal.sort_by(|&a, &b| s.personal[b as usize].total_cmp(&s.personal[a as usize]).then(a.cmp(&b)));
        }
    }
    let general_best = general.first().map_or(1.0, |&i| s.general[i as usize]).max(1e-6);
    for &i in &general {
        s.general[i as usize] /= general_best;
    }
    let share = match kind {
        Personal::Ranker => 1.0,
        Personal::Content => inputs.revelation.goals_share,
        Personal::None => 0.0,
    };
    Pools { personal, general, share, goals }
}

/// An item's general score (before editors' boosts) at `now_ms`, and whether the moment lifted
/// it (see [`lifted`]).
fn general_score(
    inputs: &Inputs<'_>,
    stage: JourneyStage,
    context_rows: &[(&[f32], f32)],
    now_ms: i64,
    i: usize,
    traits: ItemTraits,
) -> (f32, bool) {
    let models = inputs.models;
    let pop = if i < models.popularity.len() { 0.6 * models.trending[i] + 0.4 * models.popularity[i] } else { 0.0 };
    let recency_prior =
        traits.published_ms.map_or(0.0, |p| 0.05 * (-((now_ms - p).max(0) as f32) / RECENCY_SCALE_MS).exp());
    let ctx: f32 = context_rows.iter().map(|(row, weight)| row.get(i).map_or(0.0, |z| weight * z)).sum();
    ((pop + recency_prior + ctx).max(0.0) * stage_factor(stage, traits), lifted(ctx, pop + recency_prior))
}

/// The general ranking of every item for a journey stage and a moment, sorted (what
/// [`GeneralCache`](crate::models::GeneralCache) keeps).
fn general_order(
    inputs: &Inputs<'_>,
    stage: JourneyStage,
    context_rows: &[(&[f32], f32)],
    now_ms: i64,
) -> GeneralOrder {
    let catalog = inputs.catalog;
    let n = catalog.len();
    let mut scores = vec![0.0; n];
    let mut available = vec![false; n];
    let mut lifted = vec![false; n];
    let mut ranked: Vec<(u32, f32)> = Vec::with_capacity(n);
    for i in 0..n {
        let traits = catalog.traits(ItemIdx(i as u32));
        if !traits.available {
            continue;
        }
        let (score, lift) = general_score(inputs, stage, context_rows, now_ms, i, traits);
        (scores[i], available[i], lifted[i]) = (score, true, lift);
        ranked.push((i as u32, score));
    }
    ranked.sort_unstable_by(attune_rank::by_score_desc);
    GeneralOrder { scores, available, lifted, order: ranked.into_iter().map(|(i, _)| i).collect() }
}

/// Whether the moment lifted an item of the general ranking enough for the item to be said to
/// fit it (source `contextual`, a reason of kind `context`): its context term is positive and at
/// least a quarter of the rest of its score.
pub(crate) fn lifted(context: f32, rest: f32) -> bool {
    context > 0.0 && context >= 0.25 * rest.max(0.0)
}

/// How much the journey stage favours an item in the general ranking.
fn stage_factor(stage: JourneyStage, traits: ItemTraits) -> f32 {
    let ItemTraits { purchasable, educational, beginner, .. } = traits;
    match stage {
        JourneyStage::New if beginner => 1.1,
        JourneyStage::Researching if educational => 1.2,
        JourneyStage::Researching if purchasable => 0.85,
        JourneyStage::ReadyToBuy if purchasable => 1.3,
        JourneyStage::Customer if !purchasable => 1.1,
        _ => 1.0,
    }
}

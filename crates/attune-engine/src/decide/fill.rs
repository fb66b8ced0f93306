//! Stage 3, fill: each slot's picks, serendipity and main positions (see [`crate::decide`]).

use attune_core::{ItemIdx, TagIdx};
use rustc_hash::FxHashSet;

use super::rank::Pools;
use super::{Inputs, MMR_LAMBDA, Moment, PlacementRequest, Scratch, Source, Who};
use crate::editorial::Situation;
use crate::experiments::Policy;

/// One filled slot, before explanations: items in order with their source, and the editor's
/// note of a pick.
#[derive(Debug, Clone)]
pub(crate) struct Filled {
    pub slot: String,
    pub items: Vec<FilledItem>,
}

/// One item of a filled slot.
#[derive(Debug, Clone)]
pub(crate) struct FilledItem {
    pub idx: u32,
    pub source: Source,
    /// The item's worth on one 0–1 scale (the answer's `score`).
    pub score: f32,
    pub pick_note: Option<String>,
}

fn jaccard(a: &[TagIdx], b: &[TagIdx]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let shared = a.iter().filter(|t| b.contains(t)).count();
    shared as f32 / (a.len() + b.len() - shared) as f32
}

/// Fills every requested slot in page order; an item shown in one slot is not shown again.
pub(crate) fn fill(
    inputs: &Inputs<'_>,
    who: &Who,
    pools: &Pools,
    placements: &[PlacementRequest],
    arms: &[Option<(String, String, Policy)>],
    moment: &Moment<'_>,
    s: &Scratch,
) -> Vec<Filled> {
    let catalog = inputs.catalog;
    let editorial = inputs.editorial;
    let situation_goals = if who.personalized { who.preferences.goals.clone() } else { Vec::new() };
    let top_interest: Vec<TagIdx> =
        pools.goals.iter().copied().chain(who.affinities.iter().take(3).map(|(t, _)| *t)).collect();
    let mut used: FxHashSet<u32> = FxHashSet::default();
    let mut out = Vec::with_capacity(placements.len());
    for (placement, arm) in placements.iter().zip(arms) {
        let settings = editorial.slot_settings(&placement.slot, moment.channel);
        let situation = Situation {
            slot: &placement.slot,
            journey_stage: who.stage,
            goals: &situation_goals,
            device: moment.device,
            personalized: who.personalized,
            channel: moment.channel,
        };
        let consumed = |i: u32| who.consumed.binary_search(&ItemIdx(i)).is_ok();
        let open = |i: u32, used: &FxHashSet<u32>| {
            s.allowed[i as usize] && !used.contains(&i) && (settings.repeats || !consumed(i))
        };
        let count = settings.max_items.map_or(placement.count, |m| placement.count.min(m as usize));
        let n_editorial = (count as f32 * settings.editorial_share).round() as usize;
        let n_explore = if count >= 3 { (count as f32 * settings.serendipity_share).round() as usize } else { 0 };

        // Editorial picks for this audience.
        let mut picks: Vec<(&crate::editorial::Pick, u32)> = editorial
            .picks
            .values()
            .filter(|p| p.applies(&situation, inputs.now_ms))
            .filter_map(|p| catalog.lookup(&p.item).map(|idx| (p, idx.0)))
            .filter(|(_, idx)| open(*idx, &used))
            .collect();
        picks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        picks.dedup_by_key(|(_, idx)| *idx);
        picks.truncate(n_editorial.min(count));
        for (_, idx) in &picks {
            used.insert(*idx);
        }

        // Serendipity: well-regarded items outside the person's main interests, from below the
        // top of the general ranking.
        let mut explore: Vec<u32> = Vec::new();
        if n_explore > 0 {
            for &i in pools.general.iter().skip(count) {
                if explore.len() >= n_explore {
                    break;
                }
                let tags = catalog.tags_of(ItemIdx(i));
                let novel = top_interest.is_empty() || !tags.iter().any(|t| top_interest.contains(t));
                if novel && open(i, &used) {
                    explore.push(i);
                    used.insert(i);
                }
            }
        }

        // An experiment on this slot may hold the person to the non-personalized default.
        let share = match arm {
            Some((_, _, Policy::Popular)) => 0.0,
            _ => pools.share,
        };
        let worth = |i: u32| share * s.personal[i as usize] + (1.0 - share) * s.general[i as usize];

        // The rest: positions shared between the personal and the general ranking by the
        // personal share, each by MMR over tags for calm, varied feeds.
        let n_main = count.saturating_sub(picks.len() + explore.len());
        let mut main: Vec<(u32, Source)> = Vec::with_capacity(n_main);
        let mut n_personal_taken = 0usize;
        while main.len() < n_main {
            let want_personal = ((main.len() + 1) as f32 * share).round() as usize > n_personal_taken;
            let choose = |pool: &[u32], scores: &[f32], used: &FxHashSet<u32>| -> Option<u32> {
                pool.iter()
                    .copied()
                    .filter(|&i| open(i, used))
                    .take(n_main * 4 + 8)
                    .map(|i| {
                        let tags = catalog.tags_of(ItemIdx(i));
                        let redundancy = main
                            .iter()
                            .map(|(j, _)| jaccard(tags, catalog.tags_of(ItemIdx(*j))))
                            .fold(0.0f32, f32::max);
                        (i, MMR_LAMBDA * scores[i as usize] - (1.0 - MMR_LAMBDA) * redundancy)
                    })
                    .fold(None, |a: Option<(u32, f32)>, b| if a.is_none_or(|a| b.1 > a.1) { Some(b) } else { a })
                    .map(|(i, _)| i)
            };
            let from_personal = if want_personal { choose(&pools.personal, &s.personal, &used) } else { None };
            let next = match from_personal {
                Some(i) => {
                    n_personal_taken += 1;
                    Some((i, s.source[i as usize]))
                }
                None => choose(&pools.general, &s.general, &used).map(|i| {
                    let source =
                        if s.source[i as usize] == Source::Contextual { Source::Contextual } else { Source::Popular };
                    (i, source)
                }),
            };
            let Some((i, source)) = next else { break };
            used.insert(i);
            main.push((i, source));
        }

        // Lay out: picks spread through the list, explore items towards the end.
        let mut order: Vec<FilledItem> = main
            .into_iter()
            .map(|(idx, source)| FilledItem { idx, source, score: worth(idx), pick_note: None })
            .collect();
        let step = if picks.is_empty() { 1 } else { (count / picks.len()).max(1) };
        for (k, (pick, idx)) in picks.iter().enumerate() {
            let at = (1 + k * step).min(order.len());
            let item =
                FilledItem { idx: *idx, source: Source::Editorial, score: worth(*idx), pick_note: pick.note.clone() };
            order.insert(at, item);
        }
        for (k, &idx) in explore.iter().enumerate() {
            let at = order.len().saturating_sub(k * 2).min(order.len());
            order.insert(at, FilledItem { idx, source: Source::Explore, score: worth(idx), pick_note: None });
        }
        out.push(Filled { slot: placement.slot.clone(), items: order });
    }
    out
}

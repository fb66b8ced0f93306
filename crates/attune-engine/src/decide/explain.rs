//! Stage 4, explain: each item's source made precise and its reasons, from the evidence used.

use std::sync::Arc;

use attune_core::{ItemIdx, TagIdx};

use super::fill::{Filled, FilledItem};
use super::{
    DecidedItem, Inputs, Moment, PlacementDecision, Reason, ReasonKind, Scratch, Source, Who, copy_variant,
    weather_tags,
};

/// History items named in a "Because you …" reason at most.
const EVIDENCE_NAMED: usize = 2;

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

/// Turns filled slots into answered placements (the variant is chosen afterwards).
pub(crate) fn explain(
    inputs: &Inputs<'_>,
    who: &Who,
    moment: &Moment<'_>,
    filled: Vec<Filled>,
    explain: bool,
    s: &Scratch,
) -> Vec<PlacementDecision> {
    let catalog = inputs.catalog;
    let goals: Vec<TagIdx> = if who.personalized {
        who.preferences.goals.iter().filter_map(|g| catalog.lookup_tag(g)).collect()
    } else {
        Vec::new()
    };
    let copy = copy_variant(who.stage, !moment.tags.is_empty());
    filled
        .into_iter()
        .map(|slot| {
            let items = slot
                .items
                .into_iter()
                .filter_map(|filled| {
                    let FilledItem { idx, source, score, pick_note } = filled;
                    let item = Arc::clone(catalog.item(ItemIdx(idx))?);
                    // A ranker-sourced item is collaborative when history items carry its score,
                    // predictive when only the latent and popularity parts do.
                    let evidence = match (source, &inputs.models.ranker) {
                        (Source::Collaborative, Some(ranker)) => {
                            ranker.evidence(&s.history_query(), idx, &s.ranker, EVIDENCE_NAMED)
                        }
                        _ => Vec::new(),
                    };
                    let source = if source == Source::Collaborative && evidence.is_empty() {
                        Source::Predictive
                    } else {
                        source
                    };
                    let reasons = if explain {
                        reasons(inputs, who, moment, &goals, idx, source, &evidence, pick_note.as_deref())
                    } else {
                        Vec::new()
                    };
                    let copy_variant = if item.variants.contains_key(copy) { copy } else { "foundational" };
                    Some(DecidedItem { item, score, source, reasons, copy_variant })
                })
                .collect();
            PlacementDecision { slot: slot.slot, variant: String::new(), items }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // One call site; the inputs are the stage's.
fn reasons(
    inputs: &Inputs<'_>,
    who: &Who,
    moment: &Moment<'_>,
    goals: &[TagIdx],
    idx: u32,
    source: Source,
    evidence: &[(u32, f32)],
    pick_note: Option<&str>,
) -> Vec<Reason> {
    let catalog = inputs.catalog;
    let idx = ItemIdx(idx);
    let tags = catalog.tags_of(idx);
    let goal = tags.iter().find(|t| goals.contains(t));
    let affinity = tags.iter().find(|t| who.affinities.iter().any(|(a, _)| a == *t));
    let mut reasons = Vec::with_capacity(2);
    let goal_reason = |tag: TagIdx| Reason {
        kind: ReasonKind::Goal,
        item: None,
        tag: Some(catalog.tag_name(tag).to_owned()),
        text: format!("Matches your goal: {}", pretty_tag(catalog.tag_name(tag))),
    };
    match source {
        Source::Collaborative if !evidence.is_empty() => {
            let named: Vec<(String, String, String)> = evidence
                .iter()
                .map(|&(h, _)| {
                    let from = ItemIdx(h);
                    let (title, kind) = catalog
                        .item(from)
                        .map_or((catalog.id(from).to_owned(), String::new()), |i| (i.title.clone(), i.kind.clone()));
                    (catalog.id(from).to_owned(), title, kind)
                })
                .collect();
            let (first_id, first_title, first_kind) = &named[0];
            let mut text = format!("Because you {} “{}”", verb(first_kind), first_title);
            if let Some((_, title, kind)) = named.get(1) {
                let verb = verb(kind);
                if verb == self::verb(first_kind) {
                    text.push_str(&format!(" and “{title}”"));
                } else {
                    text.push_str(&format!(" and {verb} “{title}”"));
                }
            }
            reasons.push(Reason { kind: ReasonKind::SimilarTo, item: Some(first_id.clone()), tag: None, text });
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
            let text = match moment
                .weather
                .filter(|w| !weather_tags(w).is_empty() && tags.iter().any(|t| moment.tags.contains(t)))
            {
                Some(weather) => format!("For a {} day", pretty_tag(weather)),
                None if !moment.text.is_empty() => moment.text.to_owned(),
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
        let trending = inputs.models.trending.get(idx.0 as usize).copied().unwrap_or(0.0);
        reasons.push(if trending >= 0.3 {
            Reason { kind: ReasonKind::Trending, item: None, tag: None, text: "Popular this week".into() }
        } else {
            Reason { kind: ReasonKind::Default, item: None, tag: None, text: "A good place to start".into() }
        });
    }
    reasons
}

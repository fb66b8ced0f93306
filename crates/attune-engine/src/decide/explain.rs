//! Stage 4, explain: each item's source made precise and its reasons, from the evidence used.

use std::sync::Arc;

use attune_core::{ItemIdx, TagIdx};

use super::fill::{Filled, FilledItem};
use super::{DecidedItem, Inputs, Moment, PlacementDecision, Reason, ReasonKind, Scratch, Source, Who, copy_variant};

/// A personal-ranking item's context contribution (in the ranker's standardized units) from
/// which its reasons also say that it fits the moment.
const PERSONAL_CONTEXT_REASON: f32 = 0.5;

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
    let copy = copy_variant(who.stage, moment.effects(inputs).is_some());
    // The evidence of every ranker-sourced item of the response, found at once.
    let collaborative: Vec<u32> = filled
        .iter()
        .flat_map(|slot| &slot.items)
        .filter(|item| item.source == Source::Collaborative)
        .map(|item| item.idx)
        .collect();
    let mut found: Vec<Vec<(u32, f32)>> = match &inputs.models.ranker {
        Some(ranker) if !collaborative.is_empty() => {
            ranker.evidence_of_items(&s.history_query(), &collaborative, &s.ranker, EVIDENCE_NAMED)
        }
        _ => Vec::new(),
    };
    let mut evidence_of =
        |idx: u32| collaborative.iter().position(|&i| i == idx).and_then(|t| found.get_mut(t)).map(std::mem::take);
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
                    let evidence = match source {
                        Source::Collaborative => evidence_of(idx).unwrap_or_default(),
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
            PlacementDecision { slot: slot.slot, variant: String::new(), variant_context: None, items }
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
        Source::Contextual => reasons.push(context_reason(inputs, moment, idx.0, false)),
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
    // A model-sourced item the moment lifted says so too.
    if matches!(source, Source::Collaborative | Source::Predictive)
        && moment
            .effects(inputs)
            .is_some_and(|effects| effects.score(&moment.features, idx.0, true) >= PERSONAL_CONTEXT_REASON)
    {
        reasons.push(context_reason(inputs, moment, idx.0, true));
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

/// The reason of an item the moment lifted: in the words of the context feature that lifted it
/// most (the personal or the general ranking's weights).
fn context_reason(inputs: &Inputs<'_>, moment: &Moment<'_>, idx: u32, personal: bool) -> Reason {
    let strongest = moment.effects(inputs).and_then(|effects| {
        moment
            .features
            .iter()
            .map(|&f| (effects.feature_name(f), effects.contribution(f, idx, personal)))
            .filter(|(_, c)| *c > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, _)| name)
    });
    let (dimension, value) = strongest.and_then(|name| name.split_once('=')).unwrap_or(("", ""));
    let text = match (dimension, value) {
        ("hour_band", "morning") => "A good fit for your morning".to_owned(),
        ("hour_band", "midday") => "Fits the middle of your day".to_owned(),
        ("hour_band", "evening") => "Fits your evening".to_owned(),
        ("hour_band", _) => "For winding down tonight".to_owned(),
        ("device", "mobile") => "Often chosen on a phone".to_owned(),
        ("device", "desktop") => "Often chosen at a computer".to_owned(),
        ("device", "tablet") => "Often chosen on a tablet".to_owned(),
        ("device", other) => format!("Often chosen on {}", pretty_tag(other)),
        ("weather", weather) => match weather {
            "rain" | "rainy" => "For a rainy day".to_owned(),
            "snow" | "snowy" => "For a snowy day".to_owned(),
            "clouds" | "cloudy" => "For a cloudy day".to_owned(),
            "fog" | "foggy" => "For a foggy day".to_owned(),
            "sun" | "sunny" | "clear" => "For a clear day".to_owned(),
            other => format!("For {} weather", pretty_tag(other)),
        },
        _ => "Fits the moment".to_owned(),
    };
    Reason { kind: ReasonKind::Context, item: None, tag: None, text }
}

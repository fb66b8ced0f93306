//! `GET /console/person`: who a person is to Attune and what they would be shown now (a preview,
//! never logged or exposed), with reasons.

use attune_engine::{
    PersonView,
    decide::{DecideContext, DecideRequest, Decision, PlacementRequest},
};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    page::{Titles, ago, decision_log, failure, page},
    session::SignedIn,
};
use crate::{AppState, blocking};

/// `GET /console/person?id=…&slot=…`.
#[derive(Debug, Deserialize)]
pub struct PersonQuery {
    id: String,
    slot: Option<String>,
}

/// `GET /console/person`: who this is to Attune, and what they would be shown now, with reasons.
pub async fn get_person(
    State(state): State<AppState>,
    _editor: SignedIn,
    Query(query): Query<PersonQuery>,
) -> Response {
    let id = query.id.trim().to_owned();
    let slot = query.slot.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("home_feed").to_owned();
    if attune_core::check_id(&id).is_err() || attune_core::check_id(&slot).is_err() {
        return page(StatusCode::BAD_REQUEST, "Not an id", html! { p { "Ids are 1–128 printable characters." } });
    }
    let (id_for_engine, slot_for_engine) = (id.clone(), slot.clone());
    let loaded = blocking(&state, move |engine| {
        let view = engine.person(&id_for_engine).ok();
        let preview = engine.decide(&DecideRequest {
            subject: Some(id_for_engine.clone()),
            context: DecideContext::default(),
            placements: vec![PlacementRequest { slot: slot_for_engine, count: 8 }],
            explain: true,
            preview: true,
            exclude: Vec::new(),
        })?;
        let person = view.as_ref().map_or(id_for_engine.as_str(), |v| v.id.as_str()).to_owned();
        let decisions = engine.decisions_of(&person, 10)?;
        let recent =
            view.as_ref().map(|v| v.recent.iter().map(|(item, _)| item).collect::<Vec<_>>()).unwrap_or_default();
        let mut titles = Titles::of_decisions(engine, &decisions);
        titles.0.extend(Titles::of(engine, recent.into_iter()).0);
        Ok((view, preview, decisions, titles))
    })
    .await;
    let (view, preview, decisions, titles) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(error),
    };
    let now_ms = state.engine.now_ms();
    page(
        StatusCode::OK,
        &format!("Person {id}"),
        html! {
            @match &view {
                Some(view) => (person_summary(view, &titles, now_ms)),
                None => p { "Attune holds no profile for " code { (id) } ": they see what a newcomer sees." },
            }
            section aria-labelledby="preview" {
                h2 #preview { "What " (id) " would see now in " code { (slot) } }
                (preview_list(&preview))
            }
            section aria-labelledby="history" {
                h2 #history { "Their latest decisions" }
                (decision_log(&state.engine, &decisions, &titles, now_ms))
            }
        },
    )
}

fn person_summary(view: &PersonView, titles: &Titles, now_ms: i64) -> Markup {
    html! {
        section aria-labelledby="who" {
            h2 #who { "Who they are to Attune" }
            dl.numbers {
                dt { "Personalization" } dd { @if view.personalization_on { "on" } @else { "off" } }
                dt { "Journey stage" } dd { (view.journey_stage.as_str()) }
                dt { "Engagement" } dd { (format!("{:.2}", view.engagement)) }
                dt { "Events" } dd { (view.n_events) }
                dt { "Time zone" } dd { (zone_words(view)) }
                dt { "Send hour" } dd {
                    @match view.send_hour {
                        Some(hour) => { (format!("{hour:02}:00 their time, learned from when they engage")) }
                        None => { (format!("{:02}:00 their time, the default (not enough history yet)", attune_engine::measure::PREFERRED_HOUR)) }
                    }
                }
                dt { "Goals" } dd { @if view.preferences.goals.is_empty() { "none stated" } @else { (view.preferences.goals.join(", ")) } }
                dt { "Less of" } dd { @if view.preferences.less_of.is_empty() { "—" } @else { (view.preferences.less_of.join(", ")) } }
                dt { "Strongest interests" }
                dd { (view.affinities.iter().take(6).map(|(tag, w)| format!("{tag} {w:.2}")).collect::<Vec<_>>().join(", ")) }
            }
            @if !view.recent.is_empty() {
                h3 { "Recently" }
                ul {
                    @for (item, at_ms) in view.recent.iter().take(8) {
                        li { (titles.get(item)) " " span.small { (ago(now_ms - at_ms)) } }
                    }
                }
            }
        }
    }
}

fn preview_list(decision: &Decision) -> Markup {
    html! {
        @for placement in &decision.placements {
            p.small { "Variant " (placement.variant) @if !decision.personalized { " · not personalized" } }
            ol.preview {
                @for decided in &placement.items {
                    li {
                        strong { (decided.item.title) } " " span.source { "(" (decided.source.as_str()) ")" }
                        @if !decided.reasons.is_empty() {
                            br; span.small { (decided.reasons.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(" · ")) }
                        }
                    }
                }
            }
        }
    }
}

/// The time zone Attune uses for a person and where it comes from, in words.
fn zone_words(view: &PersonView) -> String {
    match (view.timezone.as_deref(), view.timezone_source) {
        (Some(zone), "preferences") => format!("{zone}, set in preferences"),
        (Some(zone), "events") => format!("{zone}, from the context of their events"),
        (Some(zone), _) => format!("{zone}, from the context of decide requests for them"),
        (None, _) => "not known: UTC".to_owned(),
    }
}

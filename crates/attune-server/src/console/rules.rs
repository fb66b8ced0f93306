//! `GET /console/rules`: every personalization rule, the ones due for their quarterly review
//! first, and `POST /console/rules/review` to confirm one for another quarter.

use attune_engine::editorial::{Conditions, Rule};
use axum::{
    Form,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;

use super::{
    editorial::IdForm,
    page::{Done, done_line, failure, page},
    session::SignedIn,
};
use crate::{AppState, blocking, routes::rfc3339};

/// Days a reviewed rule is good for: a quarter.
const REVIEW_DAYS: i64 = 91;

/// `GET /console/rules`: every rule, the ones due for review first.
pub async fn get_rules(State(state): State<AppState>, _editor: SignedIn, Query(done): Query<Done>) -> Response {
    let now_ms = state.engine.now_ms();
    let mut rules = state.engine.rules(false);
    rules.sort_by(|a, b| (!a.due(now_ms), &a.review_by, &a.id).cmp(&(!b.due(now_ms), &b.review_by, &b.id)));
    page(
        StatusCode::OK,
        "Rules",
        html! {
            (done_line(done.done.as_deref()))
            p { "Each rule names an owner and a review date. Past the date it is due: confirm it still holds (another "
                (REVIEW_DAYS) " days) or change it over the API (" code { "PUT /v1/rules/{id}" } ")." }
            @if rules.is_empty() { p { "No rules." } }
            @else {
                table {
                    thead { tr { th { "Rule" } th { "When" } th { "Then" } th { "Owner" } th { "Review by" } th {} } }
                    tbody {
                        @for rule in &rules {
                            tr.due[rule.due(now_ms)] {
                                td { (rule.id) }
                                td { (conditions_text(&rule.when)) }
                                td { (effect_text(rule)) }
                                td { (rule.owner) }
                                td { (rule.review_by) @if rule.due(now_ms) { " " strong { "due" } } }
                                td {
                                    form method="post" action="/console/rules/review" {
                                        input type="hidden" name="id" value=(rule.id);
                                        button type="submit" { "Reviewed " span.visually-hidden { (rule.id) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn conditions_text(when: &Conditions) -> String {
    let mut parts = Vec::new();
    if let Some(slot) = &when.slot {
        parts.push(format!("slot {slot}"));
    }
    if let Some(stage) = &when.journey_stage {
        parts.push(format!("stage {stage}"));
    }
    if !when.goals.is_empty() {
        parts.push(format!("goals {}", when.goals.join("/")));
    }
    if let Some(device) = &when.device {
        parts.push(format!("device {device}"));
    }
    if let Some(personalized) = when.personalized {
        parts.push(if personalized { "personalized".into() } else { "not personalized".into() });
    }
    if !when.channel.is_empty() {
        parts.push(format!("channel {}", when.channel.join("/")));
    }
    if parts.is_empty() { "always".into() } else { parts.join(", ") }
}

fn effect_text(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if !rule.then.boost_tags.is_empty() {
        parts.push(format!("boost {}", rule.then.boost_tags.join(", ")));
    }
    if !rule.then.exclude_tags.is_empty() {
        parts.push(format!("exclude {}", rule.then.exclude_tags.join(", ")));
    }
    if let Some(variant) = &rule.then.variant {
        parts.push(format!("variant {variant}"));
    }
    parts.join("; ")
}

/// `POST /console/rules/review`: the rule still holds; due again in a quarter.
pub async fn post_review_rule(State(state): State<AppState>, editor: SignedIn, Form(form): Form<IdForm>) -> Response {
    let key_id = editor.key_id().to_owned();
    let Some(mut rule) = state.engine.rule(&form.id) else {
        return page(StatusCode::NOT_FOUND, "No such rule", html! { p { "The rule no longer exists." } });
    };
    let next = state.engine.now_ms() + REVIEW_DAYS * 86_400_000;
    rule.review_by = rfc3339(next).get(..10).unwrap_or_default().to_owned();
    match blocking(&state, move |engine| engine.put_rule(rule, &key_id)).await {
        Ok(()) => Redirect::to("/console/rules?done=reviewed").into_response(),
        Err(error) => failure(error),
    }
}

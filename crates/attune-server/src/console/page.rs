//! The page frame (navigation, style, the CSRF placeholder in every form) and the pieces several
//! pages share: titles, the decision log table, confirmations, time and number formatting.

use attune_engine::{Engine, decisions::LoggedDecision};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::{CSRF_PLACEHOLDER, session::with_hidden_field};
use crate::{error::ApiError, routes::rfc3339};

pub(super) fn form_error(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "That did not work",
        html! {
            p.error role="alert" { (message) }
            p { a href="/console/editorial" { "Back" } }
        },
    )
}

pub(super) fn failure(error: ApiError) -> Response {
    page(error.code.status(), "That did not work", html! { p.error role="alert" { (error.message) } })
}

/// A moment as `YYYY-MM-DD HH:MM UTC`.
pub(super) fn when(ms: i64) -> String {
    let text = rfc3339(ms);
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => text,
    }
}

pub(super) fn ago(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

const STYLE: &str = "
body { font: 16px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem; color: #1f2a2a; background: #fbfaf7; }
header nav a { margin-right: 1rem; }
h1 { font-weight: 500; } h2 { font-weight: 500; border-bottom: 1px solid #dcd8cf; padding-bottom: .25rem; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #e7e3da; }
tr.due td { background: #fff4e0; }
.small, .source { color: #5b6666; font-size: .875rem; }
.status { background: #e6f2ea; padding: .5rem .75rem; } .error { background: #fbe9e7; padding: .5rem .75rem; }
.field { margin: .5rem 0; } .field label { display: block; } input { font: inherit; padding: .25rem .4rem; min-width: 18rem; }
button { font: inherit; padding: .3rem .8rem; cursor: pointer; }
form.inline { display: inline; margin-left: .5rem; }
dl.numbers { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dl.numbers dt { color: #5b6666; } dl.numbers dd { margin: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); gap: 1rem; }
figure.chart { margin: .75rem 0; } .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: .5rem 1.5rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
";

/// A console page with the navigation.
pub(super) fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    render(status, title, body, true)
}

/// A page without the navigation (signing in, refusals).
pub(super) fn bare_page(status: StatusCode, title: &str, body: Markup) -> Response {
    render(status, title, body, false)
}

fn render(status: StatusCode, title: &str, body: Markup, navigation: bool) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Attune console" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                @if navigation { header {
                    nav aria-label="Console" {
                        a href="/console" { "Overview" }
                        a href="/console/editorial" { "Editorial" }
                        a href="/console/rules" { "Rules" }
                        a href="/console/measure" { "Measurement" }
                        form.inline method="post" action="/console/logout" { button type="submit" { "Sign out" } }
                    }
                } }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    // Every form that posts carries the CSRF token (filled in by `guard`).
    let hidden = format!("<input type=\"hidden\" name=\"csrf\" value=\"{CSRF_PLACEHOLDER}\">");
    let html = with_hidden_field(&markup.into_string(), &hidden);
    let mut response = (status, PreEscaped(html)).into_response();
    crate::me::protect_html(response.headers_mut());
    response
}

/// Item titles for display, looked up once.
pub(super) struct Titles(pub(super) rustc_hash::FxHashMap<String, String>);

impl Titles {
    pub(super) fn of_decisions(engine: &Engine, decisions: &[LoggedDecision]) -> Titles {
        let ids = decisions.iter().flat_map(|d| &d.placements).flat_map(|p| &p.items).map(|(item, _, _)| item);
        Titles::of(engine, ids)
    }

    pub(super) fn of<'a>(engine: &Engine, ids: impl Iterator<Item = &'a String>) -> Titles {
        let mut titles = rustc_hash::FxHashMap::default();
        for id in ids {
            if !titles.contains_key(id) {
                titles.insert(id.clone(), engine.item(id).map_or_else(|| id.clone(), |item| item.title.clone()));
            }
        }
        Titles(titles)
    }

    pub(super) fn get<'a>(&'a self, id: &'a str) -> &'a str {
        self.0.get(id).map_or(id, String::as_str)
    }
}

/// The decision log as a table. People appear under the keyed pseudonym of the review log
/// (`Engine::pseudonym`), never by their id: an editor sees what is recommended to whom without
/// learning who they are.
pub(super) fn decision_log(engine: &Engine, decisions: &[LoggedDecision], titles: &Titles, now_ms: i64) -> Markup {
    html! {
        @if decisions.is_empty() {
            p { "No decisions yet." }
        } @else {
            table {
                thead { tr { th { "When" } th { "Who" } th { "Slot" } th { "Items (source)" } } }
                tbody {
                    @for decision in decisions {
                        @for placement in &decision.placements {
                            tr {
                                td { (ago(now_ms - decision.at_ms)) }
                                td {
                                    @match &decision.person {
                                        Some(person) => code { (engine.pseudonym(person)) },
                                        None => "anonymous",
                                    }
                                    br; span.small { (decision.journey_stage) @if !decision.personalized { ", not personalized" } }
                                }
                                td { (placement.slot) br; span.small { (placement.variant) " · " (decision.channel) } }
                                td {
                                    ol {
                                        @for (item, source, reasons) in &placement.items {
                                            li title=(reasons.join(" · ")) { (titles.get(item)) " " span.source { "(" (source) ")" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Which change a page confirms after a redirect.
#[derive(Debug, Deserialize)]
pub struct Done {
    pub(super) done: Option<String>,
}

pub(super) fn done_line(done: Option<&str>) -> Markup {
    let line = match done {
        Some("pinned") => "The pick was pinned.",
        Some("removed") => "The pick was removed.",
        Some("cleared") => "The flag was cleared.",
        Some("shares") => "The slot's shares were saved.",
        Some("reviewed") => "The rule was marked reviewed for another quarter.",
        _ => return html! {},
    };
    html! { p.status role="status" { (line) } }
}

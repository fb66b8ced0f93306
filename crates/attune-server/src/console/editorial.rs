//! `GET /console/editorial`: slot shares, picks (pin and remove) and flagged items (clear), with
//! the forms that change them.

use attune_engine::editorial::{Conditions, Pick, SlotSettings};
use axum::{
    Form,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    page::{Done, Titles, done_line, failure, form_error, page, when},
    session::SignedIn,
};
use crate::{AppState, blocking};

/// How each slot's presentation variants perform (`GET /v1/slots/{slot}/variants`), one row
/// per slot and variant: the bandit's exposures, clicks and estimated rate, its figures by
/// device, and what rules forced.
fn variants_table(engine: &attune_engine::Engine) -> Markup {
    let rows: Vec<(String, crate::routes::variants::VariantOut)> = engine
        .variant_slots()
        .into_iter()
        .flat_map(|slot| {
            let out = crate::routes::variants::variants_out(&slot, engine.variant_performance(&slot));
            out.variants.into_iter().map(move |v| (slot.clone(), v))
        })
        .collect();
    let percent = |rate: f64| format!("{:.1}%", rate * 100.0);
    html! {
        section aria-labelledby="variants" {
            h2 #variants { "Presentation variants" }
            p.small { "Chosen per slot by a contextual bandit over device, local hour, journey stage and engagement; a click on a decision's item rewards its variant. Forced: shown by a rule, not learned from." }
            @if rows.is_empty() { p { "No variant has been shown yet." } }
            @else {
                table {
                    thead { tr { th { "Slot" } th { "Variant" } th { "Exposures" } th { "Clicks" } th { "Estimated rate (95%)" } th { "By device" } th { "Forced" } } }
                    tbody {
                        @for (slot, v) in &rows {
                            tr {
                                td { (slot) }
                                td { (v.variant) @if !v.configured { " " span.small { "(no longer offered)" } } }
                                td { (v.figures.exposures) }
                                td { (v.figures.clicks) }
                                td { (percent(v.figures.estimated_rate)) " " span.small { "(" (percent(v.figures.interval[0])) "–" (percent(v.figures.interval[1])) ")" } }
                                td.small {
                                    @for c in v.by_context.iter().filter(|c| c.dimension == "device") {
                                        (c.value) ": " (c.figures.clicks) "/" (c.figures.exposures) " "
                                    }
                                }
                                td { (v.forced.clicks) "/" (v.forced.exposures) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/editorial`: slot shares and how their variants perform, picks (add and
/// remove), flagged items (clear).
pub async fn get_editorial(State(state): State<AppState>, _editor: SignedIn, Query(done): Query<Done>) -> Response {
    let engine = &state.engine;
    let now_ms = engine.now_ms();
    let mut picks = engine.picks();
    picks.sort_by(|a, b| a.id.cmp(&b.id));
    let titles = Titles::of(engine, picks.iter().map(|p| &p.item));
    let mut slots = engine.slots();
    slots.sort_by(|a, b| a.0.cmp(&b.0));
    let flags = engine.flags();
    page(
        StatusCode::OK,
        "Editorial",
        html! {
            (done_line(done.done.as_deref()))
            section aria-labelledby="slots" {
                h2 #slots { "Slots" }
                @if slots.is_empty() {
                    p { "Every slot uses the defaults: 20% editorial picks, 10% serendipity." }
                } @else {
                    table {
                        thead { tr { th { "Slot" } th { "Editorial share" } th { "Serendipity share" } th { "Variants" } } }
                        tbody {
                            @for (slot, settings) in &slots {
                                tr {
                                    td { (slot) }
                                    td { (format!("{:.0}%", settings.editorial_share * 100.0)) }
                                    td { (format!("{:.0}%", settings.serendipity_share * 100.0)) }
                                    td { (settings.variants.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
            (variants_table(engine))
            section aria-labelledby="shares" {
                h3 #shares { "Set a slot's shares" }
                p.small { "Of each response: the editorial share is filled with picks, the serendipity share with less obvious items; together at most 100%." }
                form method="post" action="/console/slots" {
                    div.field { label for="slot-id" { "Slot" } input #slot-id name="slot" value="home_feed" required; }
                    div.field { label for="slot-editorial" { "Editorial share (%)" } input #slot-editorial name="editorial" inputmode="numeric" required; }
                    div.field { label for="slot-serendipity" { "Serendipity share (%)" } input #slot-serendipity name="serendipity" inputmode="numeric" required; }
                    button type="submit" { "Save shares" }
                }
            }
            section aria-labelledby="picks" {
                h2 #picks { "Editorial picks" }
                @if picks.is_empty() { p { "No picks yet." } }
                @else {
                    table {
                        thead { tr { th { "Pick" } th { "Item" } th { "For" } th { "Slots" } th { "Until" } th {} } }
                        tbody {
                            @for pick in &picks {
                                tr {
                                    td { (pick.id) @if let Some(note) = &pick.note { br; span.small { (note) } } }
                                    td { (titles.get(&pick.item)) }
                                    td { @if pick.audience.goals.is_empty() { "everyone" } @else { "goals: " (pick.audience.goals.join(", ")) } }
                                    td { @if pick.slots.is_empty() { "all" } @else { (pick.slots.join(", ")) } }
                                    td {
                                        @match pick.until_ms {
                                            Some(until) if until <= now_ms => "ended",
                                            Some(until) => (when(until)),
                                            None => "—",
                                        }
                                    }
                                    td {
                                        form method="post" action="/console/picks/remove" {
                                            input type="hidden" name="id" value=(pick.id);
                                            button type="submit" { "Remove " span.visually-hidden { (pick.id) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                h3 { "Pin a pick" }
                form method="post" action="/console/picks" {
                    div.field { label for="pick-id" { "Pick id" } input #pick-id name="id" required; }
                    div.field { label for="pick-item" { "Item id" } input #pick-item name="item" required; }
                    div.field { label for="pick-goals" { "For people with any of these goals (commas; empty: everyone)" } input #pick-goals name="goals"; }
                    div.field { label for="pick-slots" { "Slots (commas; empty: all)" } input #pick-slots name="slots"; }
                    div.field { label for="pick-days" { "Days it runs (empty: until removed)" } input #pick-days name="days" inputmode="numeric"; }
                    div.field { label for="pick-note" { "Note (shown as the reason)" } input #pick-note name="note"; }
                    button type="submit" { "Pin" }
                }
            }
            section aria-labelledby="flags" {
                h2 #flags { "Flagged items" }
                @if flags.is_empty() { p { "Nothing is held back." } }
                @else {
                    ul {
                        @for flag in &flags {
                            li {
                                (flag.item) " — " (flag.note) " " span.small { "(" (flag.key_id) ", " (when(flag.at_ms)) ")" }
                                form.inline method="post" action="/console/flags/clear" {
                                    input type="hidden" name="item" value=(flag.item);
                                    button type="submit" { "Clear" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The pick form.
#[derive(Debug, Deserialize)]
pub struct PickForm {
    id: String,
    item: String,
    #[serde(default)]
    goals: String,
    #[serde(default)]
    slots: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    note: String,
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `POST /console/picks`.
pub async fn post_pick(State(state): State<AppState>, editor: SignedIn, Form(form): Form<PickForm>) -> Response {
    let key_id = editor.key_id().to_owned();
    let (id, item) = (form.id.trim().to_owned(), form.item.trim().to_owned());
    let goals = list(&form.goals);
    let slots = list(&form.slots);
    let ids_ok = [&id, &item].into_iter().chain(&goals).chain(&slots).all(|s| attune_core::check_id(s).is_ok());
    let days = match form.days.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(days) if (1..=3650).contains(&days) => Some(i64::from(days)),
            _ => return form_error("Days must be a whole number from 1 to 3650."),
        },
    };
    if !ids_ok {
        return form_error("Ids, goals and slots are 1–128 printable characters each.");
    }
    if state.engine.item(&item).is_none() {
        return form_error(&format!("There is no item `{item}` in the catalog."));
    }
    let now_ms = state.engine.now_ms();
    let note = form.note.trim();
    // The engine's rules and limits, as for the API.
    let audience = Conditions { goals, ..Conditions::default() };
    let until_ms = days.map(|days| now_ms + days * 86_400_000);
    let note = (!note.is_empty()).then(|| note.to_owned());
    let pick = match Pick::new(id, item, audience, slots, None, until_ms, note) {
        Ok(pick) => pick,
        Err(error) => return form_error(&error.to_string()),
    };
    match blocking(&state, move |engine| engine.put_pick(pick, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=pinned").into_response(),
        Err(error) => failure(error),
    }
}

/// The slot-shares form (percentages).
#[derive(Debug, Deserialize)]
pub struct SharesForm {
    slot: String,
    editorial: String,
    serendipity: String,
}

/// `POST /console/slots`: a slot's editorial and serendipity shares; its variants and variant
/// rules stay as they are.
pub async fn post_shares(State(state): State<AppState>, editor: SignedIn, Form(form): Form<SharesForm>) -> Response {
    let key_id = editor.key_id().to_owned();
    let slot = form.slot.trim().to_owned();
    if attune_core::check_id(&slot).is_err() {
        return form_error("A slot is 1–128 printable characters.");
    }
    let percent =
        |text: &str| text.trim().trim_end_matches('%').trim().parse::<f32>().ok().filter(|p| (0.0..=100.0).contains(p));
    let (Some(editorial), Some(serendipity)) = (percent(&form.editorial), percent(&form.serendipity)) else {
        return form_error("Shares are percentages from 0 to 100.");
    };
    let current = state.engine.slot(&slot);
    // The engine's rules and limits, as for the API.
    let settings = match SlotSettings::new(
        editorial / 100.0,
        serendipity / 100.0,
        current.max_items,
        current.variants,
        current.rules,
        current.repeats,
        current.channels,
    ) {
        Ok(settings) => settings,
        Err(error) => return form_error(&error.to_string()),
    };
    match blocking(&state, move |engine| engine.put_slot(&slot, settings, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=shares").into_response(),
        Err(error) => failure(error),
    }
}

/// A form naming one pick, item or rule.
#[derive(Debug, Deserialize)]
pub struct IdForm {
    #[serde(alias = "item")]
    pub(super) id: String,
}

/// `POST /console/picks/remove`.
pub async fn post_remove_pick(State(state): State<AppState>, editor: SignedIn, Form(form): Form<IdForm>) -> Response {
    let key_id = editor.key_id().to_owned();
    match blocking(&state, move |engine| engine.delete_pick(&form.id, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=removed").into_response(),
        Err(error) => failure(error),
    }
}

/// `POST /console/flags/clear`.
pub async fn post_clear_flag(State(state): State<AppState>, editor: SignedIn, Form(form): Form<IdForm>) -> Response {
    let key_id = editor.key_id().to_owned();
    match blocking(&state, move |engine| engine.clear_flag(&form.id, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=cleared").into_response(),
        Err(error) => failure(error),
    }
}

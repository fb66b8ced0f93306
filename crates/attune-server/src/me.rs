//! The `/me` page: "why am I seeing this / my preferences", server-rendered, accessible, and
//! usable without JavaScript. A site links to it with a signed, expiring token from
//! `POST /v1/users/{id}/me-link`; the person needs no API key.
//!
//! **Token:** `hex(person id) . expiry (ms since the epoch) . generation . hex(HMAC-SHA256(secret,
//! …))`, where the secret is the engine's [`link_secret`](attune_engine::Engine::link_secret) (32
//! random bytes made at first start) and the generation is the person's current link generation
//! ([`Engine::me_link_generation`](attune_engine::Engine::me_link_generation)): erasing the
//! person or `DELETE /v1/users/{id}/me-link` ends it, so every link issued before stops working
//! (and nothing is written for an erased id). Every form carries the token in a hidden field, which also makes
//! it the CSRF token: another site cannot forge a submission without it.
//!
//! **Forms** post to `/me/consent`, `/me/preferences`, `/me/forget` and `/me/erase` and answer
//! with `303 See Other` back to the page (post/redirect/get), so a reload never resubmits.
//! Actions are audited with the key id `me`. Responses are `no-store`, send no referrer (the
//! token is in the URL) and may not be framed (the erase button must not be clickjacked).

use attune_core::{Consent, Preferences, Purpose};
use attune_engine::PersonView;
use axum::{
    Form,
    extract::{Query, State, rejection::FormRejection, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use sha2::Sha256;

use crate::{AppState, blocking, error::ApiError, routes::rfc3339};

type HmacSha256 = Hmac<Sha256>;

/// The audit log's key id for actions a person takes on their own `/me` page.
pub const ME_KEY_ID: &str = "me";

// ---- tokens ----

/// Signs a `/me` token for `person`, valid until `expires_ms` while `generation` is the
/// person's current link generation.
pub fn sign_token(secret: &[u8; 32], person: &str, expires_ms: i64, generation: &str) -> String {
    let tag = mac(secret, person, expires_ms, generation).finalize().into_bytes();
    format!("{}.{expires_ms}.{generation}.{}", hex::encode(person), hex::encode(tag))
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token at all.
    Missing,
    /// Not a token we signed (or tampered with).
    Invalid,
    /// Signed, but past its expiry.
    Expired,
    /// Signed, but revoked since (or the person was erased).
    Revoked,
}

/// Checks a token's signature and expiry; returns the person it was signed for and the link
/// generation it carries (the caller checks that it is still current).
pub fn verify_token(secret: &[u8; 32], token: &str, now_ms: i64) -> Result<(String, String), TokenError> {
    let mut parts = token.split('.');
    let (Some(person_hex), Some(expiry), Some(generation), Some(tag_hex), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    let person = hex::decode(person_hex).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    let expires_ms = expiry.parse::<i64>().ok();
    let tag = hex::decode(tag_hex).ok();
    let (Some(person), Some(expires_ms), Some(tag)) = (person, expires_ms, tag) else {
        return Err(TokenError::Invalid);
    };
    // Constant-time comparison, by the MAC itself.
    mac(secret, &person, expires_ms, generation).verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
    if now_ms >= expires_ms {
        return Err(TokenError::Expired);
    }
    Ok((person, generation.to_owned()))
}

fn mac(secret: &[u8; 32], person: &str, expires_ms: i64, generation: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"attune-me-link-v2\0");
    mac.update(person.as_bytes());
    mac.update(b"\0");
    mac.update(&expires_ms.to_be_bytes());
    mac.update(b"\0");
    mac.update(generation.as_bytes());
    mac
}

/// Rate-limits the `/me` pages per client address (they need no key, so the address is all
/// there is to count by).
pub async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
    if let Err(error) = state.limiter.check(&format!("me@{client}")) {
        return error.into_response();
    }
    next.run(request).await
}

// ---- requests ----

/// `GET /me` and `GET /me/export` query.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// The signed token.
    pub token: Option<String>,
    /// What was just saved (`consent`, `preferences`, `forget`), for the status line.
    pub done: Option<String>,
}

/// `POST /me/consent`: a checkbox per purpose; an unchecked box is absent, so it means "no".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ConsentForm {
    /// The signed link token (the page carries it in a hidden field).
    token: Option<String>,
    /// Present (the page sends `on`) when the personalization box is ticked; absent means no.
    personalization: Option<String>,
    /// Present (the page sends `on`) when the contextual box is ticked; absent means no.
    contextual: Option<String>,
    /// Present (the page sends `on`) when the analytics box is ticked; absent means no.
    analytics: Option<String>,
    /// Present (the page sends `on`) when the email box is ticked; absent means no.
    email: Option<String>,
    /// Present (the page sends `on`) when the push box is ticked; absent means no.
    push: Option<String>,
}

/// `POST /me/preferences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PreferencesForm {
    /// The signed link token (the page carries it in a hidden field).
    token: Option<String>,
    /// Comma-separated goals.
    goals: Option<String>,
    /// Comma-separated topics to see less of.
    less_of: Option<String>,
    /// Present when personalization is paused.
    paused: Option<String>,
}

/// `POST /me/forget`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ForgetForm {
    /// The signed link token (the page carries it in a hidden field).
    token: Option<String>,
    /// The item to forget.
    item: Option<String>,
}

/// `POST /me/erase`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EraseForm {
    /// The signed link token (the page carries it in a hidden field).
    token: Option<String>,
    /// `yes` confirms the erasure; anything else erases nothing.
    confirm: Option<String>,
}

// ---- handlers ----

/// The page. The token comes from `POST /v1/users/{id}/me-link`.
#[utoipa::path(get, path = "/me", tag = "me",
    params(("token" = String, Query, description = "The signed link token")),
    responses((status = 200, content_type = "text/html", description = "The page"),
        (status = 401, content_type = "text/html", description = "No, invalid or expired token")))]
pub async fn get_page(State(state): State<AppState>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else {
        return message_page(StatusCode::BAD_REQUEST, "This link is malformed", "Ask the site for a new link.");
    };
    let token = query.token.unwrap_or_default();
    let person = match check(&state, Some(&token)).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    render_page(&state, person, token, query.done.as_deref(), None, StatusCode::OK).await
}

/// Saves consent from the page's checkboxes.
#[utoipa::path(post, path = "/me/consent", tag = "me",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the page"), (status = 401, content_type = "text/html")))]
pub async fn post_consent(State(state): State<AppState>, form: Result<Form<ConsentForm>, FormRejection>) -> Response {
    // The token travels in the form, so a body that is not a form carries no token.
    let Ok(Form(form)) = form else { return token_page(TokenError::Missing) };
    let person = match check(&state, form.token.as_deref()).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    let consent = Consent {
        personalization: form.personalization.is_some(),
        contextual: form.contextual.is_some(),
        analytics: form.analytics.is_some(),
        email: form.email.is_some(),
        push: form.push.is_some(),
    };
    let id = person.clone();
    match blocking(&state, move |engine| engine.put_consent(&id, consent, ME_KEY_ID)).await {
        Ok(()) => back_to_page(form.token.as_deref().unwrap_or_default(), "consent"),
        Err(error) => failure_page(error),
    }
}

/// Saves goals, topics to see less of, and the pause switch.
#[utoipa::path(post, path = "/me/preferences", tag = "me",
    request_body(content = PreferencesForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the page"), (status = 400, content_type = "text/html"),
        (status = 401, content_type = "text/html")))]
pub async fn post_preferences(
    State(state): State<AppState>,
    form: Result<Form<PreferencesForm>, FormRejection>,
) -> Response {
    // The token travels in the form, so a body that is not a form carries no token.
    let Ok(Form(form)) = form else { return token_page(TokenError::Missing) };
    let token = form.token.clone().unwrap_or_default();
    let person = match check(&state, Some(&token)).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    let goals = split_tags(form.goals.as_deref());
    let less_of = split_tags(form.less_of.as_deref());
    let checked =
        crate::routes::check_tags(&goals, "goals", 20).and(crate::routes::check_tags(&less_of, "less_of", 50));
    if let Err(error) = checked {
        let message = format!("Not saved: {}", error.message);
        return render_page(&state, person, token, None, Some(message), StatusCode::BAD_REQUEST).await;
    }
    let id = person.clone();
    let saved = blocking(&state, move |engine| {
        let before = engine.person(&id)?.preferences;
        let preferences = Preferences { goals, less_of, personalization: form.paused.is_none(), ..before };
        engine.put_preferences(&id, preferences, ME_KEY_ID)
    })
    .await;
    match saved {
        Ok(()) => back_to_page(&token, "preferences"),
        Err(error) => failure_page(error),
    }
}

/// Forgets one item of the person's history.
#[utoipa::path(post, path = "/me/forget", tag = "me",
    request_body(content = ForgetForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the page"), (status = 401, content_type = "text/html")))]
pub async fn post_forget(State(state): State<AppState>, form: Result<Form<ForgetForm>, FormRejection>) -> Response {
    // The token travels in the form, so a body that is not a form carries no token.
    let Ok(Form(form)) = form else { return token_page(TokenError::Missing) };
    let token = form.token.clone().unwrap_or_default();
    let person = match check(&state, Some(&token)).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    let Some(item) = form.item.filter(|item| attune_core::check_id(item).is_ok()) else {
        return bad_form();
    };
    match blocking(&state, move |engine| engine.forget_item(&person, &item, ME_KEY_ID)).await {
        Ok(_) => back_to_page(&token, "forget"),
        Err(error) => failure_page(error),
    }
}

/// Everything stored about the person, as a JSON download (the same document as
/// `GET /v1/users/{id}/export`).
#[utoipa::path(get, path = "/me/export", tag = "me",
    params(("token" = String, Query, description = "The signed link token")),
    responses((status = 200, description = "Everything stored about the person, as a download.", body = crate::wire::ExportOut),
        (status = 401, content_type = "text/html")))]
pub async fn get_export(State(state): State<AppState>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else { return bad_form() };
    let person = match check(&state, query.token.as_deref()).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    match crate::routes::privacy::export(&state, person, ME_KEY_ID.to_owned()).await {
        Ok(export) => {
            let mut response = axum::Json(export).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"attune-export.json\""),
            );
            protect(headers);
            response
        }
        Err(error) => failure_page(error),
    }
}

/// Erases everything about the person, after an explicit confirmation.
#[utoipa::path(post, path = "/me/erase", tag = "me",
    request_body(content = EraseForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", description = "Erased, with the receipt"),
        (status = 400, content_type = "text/html", description = "Not confirmed"), (status = 401, content_type = "text/html")))]
pub async fn post_erase(State(state): State<AppState>, form: Result<Form<EraseForm>, FormRejection>) -> Response {
    // The token travels in the form, so a body that is not a form carries no token.
    let Ok(Form(form)) = form else { return token_page(TokenError::Missing) };
    let token = form.token.clone().unwrap_or_default();
    let person = match check(&state, Some(&token)).await {
        Ok(person) => person,
        Err(error) => return token_page(error),
    };
    if form.confirm.as_deref() != Some("yes") {
        let message = String::from("Nothing was erased: tick the box to confirm first.");
        return render_page(&state, person, token, None, Some(message), StatusCode::BAD_REQUEST).await;
    }
    match blocking(&state, move |engine| engine.erase_person(&person, ME_KEY_ID)).await {
        Ok(receipt) => {
            let body = html! {
                p role="status" { "Everything Attune stored about you has been erased." }
                p { "Keep this receipt number if you want to prove the erasure later: " strong { (receipt.receipt_id) } }
                ul {
                    li { (receipt.events) " events" }
                    li { (receipt.aliases) " linked devices" }
                    li { (receipt.records) " other records" }
                }
                p { "If you come back, you will be treated as a new visitor." }
            };
            page_response(StatusCode::OK, layout("Your data was erased", body))
        }
        Err(error) => failure_page(error),
    }
}

// ---- rendering ----

/// The person a token is for, if it is signed, unexpired and of the person's current link
/// generation (none after an erasure or a revocation).
async fn check(state: &AppState, token: Option<&str>) -> Result<String, TokenError> {
    let (person, generation) = match token.unwrap_or_default() {
        "" => return Err(TokenError::Missing),
        token => verify_token(&state.engine.link_secret(), token, state.engine.now_ms())?,
    };
    let lookup = person.clone();
    let current = blocking(state, move |engine| engine.current_me_link_generation(&lookup)).await;
    match current {
        Ok(Some(current)) if attune_engine::keys::constant_time_eq(&current, &generation) => Ok(person),
        _ => Err(TokenError::Revoked),
    }
}

fn token_page(error: TokenError) -> Response {
    let (title, message) = match error {
        TokenError::Missing => ("This page needs a link", "Open this page from the link the site gave you."),
        TokenError::Invalid => ("This link is not valid", "Ask the site for a new link to your preferences."),
        TokenError::Expired => ("This link has expired", "Ask the site for a new link to your preferences."),
        TokenError::Revoked => ("This link no longer works", "Ask the site for a new link to your preferences."),
    };
    message_page(StatusCode::UNAUTHORIZED, title, message)
}

fn split_tags(text: Option<&str>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_owned());
        }
    }
    tags
}

fn back_to_page(token: &str, done: &str) -> Response {
    let mut response = Redirect::to(&format!("/me?token={token}&done={done}")).into_response();
    protect(response.headers_mut());
    response
}

fn bad_form() -> Response {
    message_page(StatusCode::BAD_REQUEST, "Something was missing", "Go back to the page and try again.")
}

fn failure_page(error: ApiError) -> Response {
    if error.code == crate::error::Code::NotFound {
        return message_page(StatusCode::NOT_FOUND, "Nothing is stored about you", "Attune holds no data about you.");
    }
    message_page(error.code.status(), "That did not work", "Please try again in a moment.")
}

fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    page_response(status, layout(title, html! { p { (message) } }))
}

fn page_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    protect(response.headers_mut());
    response
}

fn protect(headers: &mut axum::http::HeaderMap) {
    // The token is in the URL: send no referrer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    protect_html(headers);
}

/// The headers of every server-rendered page (`/me` and the console): never cached, no sniffing,
/// no scripts, forms only to this origin, never framed.
pub(crate) fn protect_html(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

async fn render_page(
    state: &AppState,
    person: String,
    token: String,
    done: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let loaded = blocking(state, move |engine| {
        let view = engine.person(&person)?;
        let titles: Vec<(String, String)> = view
            .recent
            .iter()
            .map(|(item, _)| {
                let title = engine.item(item).map_or_else(|| item.clone(), |found| found.title.clone());
                (item.clone(), title)
            })
            .collect();
        Ok((view, titles))
    })
    .await;
    let (view, titles) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure_page(error),
    };
    let expires = token.split('.').nth(1).and_then(|ms| ms.parse::<i64>().ok()).map(rfc3339).unwrap_or_default();
    let status_line = match done {
        Some("consent") => Some("Your choices were saved."),
        Some("preferences") => Some("Your preferences were saved."),
        Some("forget") => Some("That item was forgotten."),
        _ => None,
    };
    let body = page_body(&view, &titles, &token, &expires, status_line, error.as_deref());
    page_response(status, layout("Your privacy and preferences", body))
}

const PURPOSES: [(Purpose, &str, &str); 5] = [
    (Purpose::Personalization, "Personalization", "Tailor suggestions to what you read and do here."),
    (Purpose::Contextual, "Context", "Use your region and the weather to suggest what fits the moment."),
    (
        Purpose::Analytics,
        "Measurement",
        "Keep your visits one by one to measure what works. Without this and without personalization, only daily counts are kept.",
    ),
    (Purpose::Email, "Email", "Send you suggestions by email."),
    (Purpose::Push, "Notifications", "Send you push notifications."),
];

fn page_body(
    view: &PersonView,
    titles: &[(String, String)],
    token: &str,
    expires: &str,
    status_line: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let preferences = &view.preferences;
    let topics: Vec<&str> = view.affinities.iter().take(5).map(|(tag, _)| tag.as_str()).collect();
    html! {
        @if let Some(line) = status_line { p.status role="status" { (line) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }

        section aria-labelledby="why-heading" {
            h2 #why-heading { "Why am I seeing this?" }
            @if view.personalization_on {
                p { "Suggestions here are tailored to you, based on:" }
                ul {
                    @if !preferences.goals.is_empty() { li { "the goals you told us: " (preferences.goals.join(", ")) } }
                    @if !topics.is_empty() { li { "topics you spent time on: " (topics.join(", ")) } }
                    @if !titles.is_empty() { li { "what you read or viewed recently (listed below)" } }
                    li { "what is popular with people who read similar things" }
                }
                @if !preferences.less_of.is_empty() { p { "You asked to see less of: " (preferences.less_of.join(", ")) "." } }
            } @else {
                p { "Personalization is off: you see the same suggestions as everyone else." }
            }
            p {
                "Emails and notifications are timed in your time zone, "
                @match (view.timezone.as_deref(), view.timezone_source) {
                    (Some(zone), "preferences") => { (zone) " (as you set it)" }
                    (Some(zone), _) => { (zone) " (from your latest visit)" }
                    (None, _) => { "UTC (we do not know yours)" }
                }
                ", never in quiet hours, and go out around "
                @match view.send_hour {
                    Some(hour) => { (format!("{hour:02}:00")) ", when you usually read" }
                    None => { (format!("{:02}:00", attune_engine::measure::PREFERRED_HOUR)) }
                }
                "."
            }
        }

        section aria-labelledby="consent-heading" {
            h2 #consent-heading { "What you allow" }
            form method="post" action="/me/consent" {
                input type="hidden" name="token" value=(token);
                fieldset {
                    legend { "Use of your data" }
                    @for (purpose, name, description) in PURPOSES {
                        @let id = format!("consent-{}", purpose.as_str());
                        div.choice {
                            input type="checkbox" id=(id) name=(purpose.as_str()) value="yes" checked[view.consent.allows(purpose)];
                            label for=(id) { strong { (name) } " — " (description) }
                        }
                    }
                }
                button type="submit" { "Save what I allow" }
            }
        }

        section aria-labelledby="preferences-heading" {
            h2 #preferences-heading { "Your preferences" }
            form method="post" action="/me/preferences" {
                input type="hidden" name="token" value=(token);
                div.field {
                    label for="goals" { "Your goals (separate with commas)" }
                    input type="text" id="goals" name="goals" value=(preferences.goals.join(", ")) autocomplete="off";
                }
                div.field {
                    label for="less_of" { "Topics to see less of (separate with commas)" }
                    input type="text" id="less_of" name="less_of" value=(preferences.less_of.join(", ")) autocomplete="off";
                }
                div.choice {
                    input type="checkbox" id="paused" name="paused" value="yes" checked[!preferences.personalization];
                    label for="paused" { "Pause personalization (show me what everyone sees)" }
                }
                button type="submit" { "Save preferences" }
            }
        }

        section aria-labelledby="recent-heading" {
            h2 #recent-heading { "What you read recently" }
            @if titles.is_empty() {
                p { "Nothing is remembered." }
            } @else {
                p { "Forget an item and it no longer shapes your suggestions." }
                ul.recent {
                    @for (item, title) in titles {
                        li {
                            span { (title) }
                            form method="post" action="/me/forget" {
                                input type="hidden" name="token" value=(token);
                                input type="hidden" name="item" value=(item);
                                button type="submit" aria-label=(format!("Forget “{title}”")) { "Forget" }
                            }
                        }
                    }
                }
            }
        }

        section aria-labelledby="export-heading" {
            h2 #export-heading { "Your data" }
            p { a href=(format!("/me/export?token={token}")) download="attune-export.json" { "Download everything stored about you (JSON)" } }
        }

        section aria-labelledby="erase-heading" {
            h2 #erase-heading { "Erase everything" }
            form method="post" action="/me/erase" {
                input type="hidden" name="token" value=(token);
                div.choice {
                    input type="checkbox" id="confirm" name="confirm" value="yes" required;
                    label for="confirm" { "I understand that this erases everything stored about me and cannot be undone." }
                }
                button.danger type="submit" { "Erase my data" }
            }
        }

        footer { p { "This link works until " (expires) "." } }
    }
}

const STYLE: &str = "
body { margin: 0; background: #ffffff; color: #1b1b1b; font: 1.0625rem/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; }
main { max-width: 42rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.75rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; }
fieldset { border: 1px solid #6b6b6b; border-radius: 6px; padding: 0.75rem 1rem; }
legend { font-weight: 600; padding: 0 0.25rem; }
.choice { display: flex; gap: 0.6rem; align-items: flex-start; margin: 0.5rem 0; }
.choice input { margin-top: 0.3rem; width: 1.15rem; height: 1.15rem; }
.field { margin: 0.75rem 0; }
.field label { display: block; font-weight: 600; margin-bottom: 0.25rem; }
.field input { width: 100%; box-sizing: border-box; padding: 0.5rem; border: 1px solid #595959; border-radius: 4px; font: inherit; color: #1b1b1b; }
button { margin-top: 0.5rem; padding: 0.55rem 1rem; border: 0; border-radius: 4px; background: #1d4ed8; color: #ffffff; font: inherit; font-weight: 600; cursor: pointer; }
button.danger { background: #b91c1c; }
a { color: #1d4ed8; }
:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
ul.recent { list-style: none; padding: 0; }
ul.recent li { display: flex; justify-content: space-between; align-items: center; gap: 1rem; padding: 0.4rem 0; border-bottom: 1px solid #d4d4d4; }
ul.recent form { margin: 0; }
ul.recent button { margin: 0; padding: 0.3rem 0.8rem; }
.status { background: #e7f5ea; border-left: 4px solid #1e7b34; padding: 0.5rem 0.75rem; }
.error { background: #fdecec; border-left: 4px solid #b91c1c; padding: 0.5rem 0.75rem; }
footer { margin-top: 2.5rem; color: #4a4a4a; font-size: 0.9rem; }
";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let secret = [7u8; 32];
        let token = sign_token(&secret, "u-42", 2_000, "g1");
        assert_eq!(verify_token(&secret, &token, 1_999), Ok(("u-42".to_owned(), "g1".to_owned())));
        assert_eq!(verify_token(&secret, &token, 2_000), Err(TokenError::Expired));
        assert_eq!(verify_token(&[8u8; 32], &token, 1_000), Err(TokenError::Invalid), "another server's secret");
        let other = sign_token(&secret, "u-43", 2_000, "g1");
        let swapped = format!("{}.{}", hex::encode("u-42"), other.split_once('.').unwrap().1);
        assert_eq!(verify_token(&secret, &swapped, 1_000), Err(TokenError::Invalid), "a tag is bound to its id");
        let extended = token.replace(".2000.", ".9000.");
        assert_eq!(verify_token(&secret, &extended, 1_000), Err(TokenError::Invalid), "and to its expiry");
        let regenerated = token.replace(".g1.", ".g2.");
        assert_eq!(verify_token(&secret, &regenerated, 1_000), Err(TokenError::Invalid), "and to its generation");
        for bad in ["", "x", "a.b.c", "zz.1.00", "75.1", "75.1.00.00", "75.1.g.00.00"] {
            assert_eq!(verify_token(&secret, bad, 0), Err(TokenError::Invalid), "{bad:?}");
        }
        assert_eq!(split_tags(Some(" sleep, ,stress relief,sleep ")), ["sleep", "stress relief"]);
    }
}

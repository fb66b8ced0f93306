//! The editors' console at `/console`: what is recommended to whom (the decision log and a live
//! preview for any person), editorial picks, slot shares and flags, rules due for their quarterly
//! review, experiments and the four-dimension report. Server-rendered HTML with plain forms: it
//! works without JavaScript and needs no build step.
//!
//! **Access:** in open mode (loopback, no admin key) anyone who can reach the server. Otherwise an
//! editor signs in at `/console/login` with the admin key or a key holding the `admin` scope; the
//! key is kept in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`, so another site can
//! neither read it nor make the browser send it with a forged form. Forms also refuse requests the
//! browser marks as cross-site. Every change is audited under the signing-in key's id, as over the
//! API.
//!
//! **Forms** post and answer `303 See Other` back to their page (post/redirect/get).

use attune_engine::{
    Engine, PersonView, Scope,
    decide::{DecideContext, DecideRequest, Decision, PlacementRequest},
    decisions::LoggedDecision,
    editorial::{Conditions, Pick, Rule, SlotSettings},
};
use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use crate::{
    AppState,
    auth::{AuthMode, Holder, holder_of},
    blocking,
    error::ApiError,
    routes::rfc3339,
};

/// The cookie that holds the session id.
const COOKIE: &str = "attune_console";

/// The cookie that holds the sign-in form's CSRF token (before there is a session).
const LOGIN_COOKIE: &str = "attune_login";

/// How long a console session lasts after signing in.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// Where the CSRF token goes in rendered pages; the console's guard replaces it with the
/// session's token (or the sign-in form's).
const CSRF_PLACEHOLDER: &str = "__attune_csrf__";

/// Days a reviewed rule is good for: a quarter.
const REVIEW_DAYS: i64 = 91;

// ---- sessions ----

/// Console sessions, server-side: the cookie holds only a random session id. A session names the
/// signed-in key by its hash (never the key), expires after [`SESSION_TTL`], ends at sign-out,
/// and stops working as soon as its key is revoked. Per process: behind a load balancer,
/// editors sign in on each server (or the balancer keeps them on one).
pub struct Sessions {
    sessions: parking_lot::Mutex<rustc_hash::FxHashMap<String, Session>>,
    /// The CSRF token of open mode (no sessions there).
    open_csrf: String,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions { sessions: parking_lot::Mutex::default(), open_csrf: random_token() }
    }
}

#[derive(Debug, Clone)]
struct Session {
    /// `None` for the admin key, else the stored key's hash.
    key_hash: Option<String>,
    csrf: String,
    expires: std::time::Instant,
}

/// The signed-in editor: the key id for the audit log and the CSRF token of the session.
#[derive(Debug, Clone)]
pub struct Editor {
    key_id: String,
    csrf: String,
}

impl Sessions {
    fn start(&self, key_hash: Option<String>) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = std::time::Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(id.clone(), Session { key_hash, csrf: csrf.clone(), expires: now + SESSION_TTL });
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get(id)?.clone();
        if session.expires <= std::time::Instant::now() {
            sessions.remove(id);
            return None;
        }
        Some(session)
    }

    fn end(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    /// Open sessions (for tests and metrics).
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn random_token() -> String {
    attune_engine::keys::new_secret().trim_start_matches("atk_").to_owned()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

// ---- access ----

/// The signed-in editor, if any: open mode, or a live session whose key is still valid.
fn editor(state: &AppState, headers: &HeaderMap) -> Option<Editor> {
    if let AuthMode::Open = state.auth {
        return Some(Editor { key_id: "open".to_owned(), csrf: state.sessions.open_csrf.clone() });
    }
    let id = cookie(headers, COOKIE)?;
    let session = state.sessions.get(id)?;
    let key_id = match &session.key_hash {
        None => "admin".to_owned(),
        Some(hash) => {
            let key = state.engine.key_by_hash(hash).filter(|key| key.allows(Scope::Admin) && !key.minted_open);
            match key {
                Some(key) => key.id,
                None => {
                    state.sessions.end(id);
                    return None;
                }
            }
        }
    };
    Some(Editor { key_id, csrf: session.csrf })
}

/// The session's key hash for a secret that may sign in: the admin key (`None`) or an
/// admin-scoped key.
fn sign_in_as(state: &AppState, secret: &str) -> Option<Option<String>> {
    match holder_of(state, secret)? {
        Holder::Admin => Some(None),
        Holder::Key(key) => key.allows(Scope::Admin).then_some(Some(key.hash)),
    }
}

/// Whether the request came over TLS, or through a proxy that says so.
fn over_tls(request_headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || request_headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|first| first.trim().eq_ignore_ascii_case("https")))
}

fn refused(status: StatusCode, message: &str) -> Response {
    bare_page(status, "Refused", html! { p { (message) } })
}

/// Whether the form's `csrf` field equals `expected` (the token is hex: no decoding needed).
fn csrf_matches(body: &[u8], expected: &str) -> bool {
    let Ok(text) = std::str::from_utf8(body) else { return false };
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(name, value)| name == "csrf" && attune_engine::keys::constant_time_eq(value, expected))
}

/// Guards every console route: rate limits per signed-in key (or address, before signing in),
/// checks the CSRF token of every form (the session's, or the sign-in form's own cookie), and
/// puts the token into every form of the page it answers with.
pub async fn guard(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers().clone();
    let path = request.uri().path().to_owned();
    let is_post = request.method() == axum::http::Method::POST;
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
    request.extensions_mut().insert(ClientAddress(client.clone()));
    let signed_in = editor(&state, &headers);
    let bucket = match &signed_in {
        Some(editor) => format!("console:{}", editor.key_id),
        None => format!("console@{client}"),
    };
    let limiter =
        if signed_in.as_ref().is_some_and(|e| e.key_id == "admin") { &state.admin_limiter } else { &state.limiter };
    if let Err(error) = limiter.check(&bucket) {
        return error.into_response();
    }
    // The sign-in form's token: the cookie's on a post, a new one for a page that shows the form.
    let login_token = if path == "/console/login" {
        if is_post { cookie(&headers, LOGIN_COOKIE).map(str::to_owned) } else { Some(random_token()) }
    } else {
        None
    };
    let request = if is_post {
        let expected =
            if path == "/console/login" { login_token.clone() } else { signed_in.as_ref().map(|e| e.csrf.clone()) };
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
            return refused(StatusCode::PAYLOAD_TOO_LARGE, "This form is too large.");
        };
        match &expected {
            Some(expected) if csrf_matches(&bytes, expected) => {}
            // Not signed in: the handler sends the browser to the sign-in form.
            None if path != "/console/login" => {}
            _ => {
                return refused(
                    StatusCode::FORBIDDEN,
                    "This form is out of date or was sent from another site. Open the console and try again.",
                );
            }
        }
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        request
    };
    let response = next.run(request).await;
    let token = match (&login_token, &signed_in) {
        (Some(token), _) if !is_post => Some(token.clone()),
        (_, Some(editor)) => Some(editor.csrf.clone()),
        _ => login_token.clone(),
    };
    let secure = over_tls(&headers, &axum::http::Uri::from_static("/"));
    let mut response = fill_csrf(response, token.as_deref().unwrap_or("")).await;
    if path == "/console/login"
        && !is_post
        && let Some(token) = &login_token
    {
        let secure = if secure { "; Secure" } else { "" };
        let value =
            format!("{LOGIN_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `html` with `hidden` inserted at the start of every `<form … method="post" …>`.
fn with_hidden_field(html: &str, hidden: &str) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let Some(len) = rest[start..].find('>') else { break };
        let tag_end = start + len + 1;
        out.push_str(&rest[..tag_end]);
        if rest[start..tag_end].contains("method=\"post\"") {
            out.push_str(hidden);
        }
        rest = &rest[tag_end..];
    }
    out.push_str(rest);
    out
}

/// The client's address, for the sign-in throttle (put there by [`guard`]).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

/// Replaces the CSRF placeholder in an HTML response with `token`.
async fn fill_csrf(response: Response, token: &str) -> Response {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return ApiError::internal("a console page could not be buffered").into_response();
    };
    let html = String::from_utf8_lossy(&bytes).replace(CSRF_PLACEHOLDER, token);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(html))
}

/// The signed-in editor's key id, or (from the handler) a redirect to the sign-in form.
macro_rules! signed_in {
    ($state:expr, $headers:expr) => {
        match editor(&$state, &$headers) {
            Some(editor) => editor.key_id,
            None => return Redirect::to("/console/login").into_response(),
        }
    };
}

/// `GET /console/login`.
pub async fn get_login(State(state): State<AppState>) -> Response {
    if let AuthMode::Open = state.auth {
        return Redirect::to("/console").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    bare_page(
        status,
        "Sign in to the Attune console",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/console/login" {
                div.field {
                    label for="key" { "API key with the admin scope (or the admin key)" }
                    input #key type="password" name="key" autocomplete="current-password" required;
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    key: String,
}

/// `POST /console/login`: failed attempts count towards the address's throttle (as unknown
/// bearer keys do); a success starts a server-side session.
pub async fn post_login(
    State(state): State<AppState>,
    axum::Extension(ClientAddress(client)): axum::Extension<ClientAddress>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(error) = state.failures.check(&client) {
        let mut response = login_page(StatusCode::TOO_MANY_REQUESTS, Some(&error.message));
        if let Some(seconds) = error.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }
    let secret = form.key.trim();
    let Some(key_hash) = sign_in_as(&state, secret).filter(|_| !secret.is_empty()) else {
        state.failures.record(&client);
        return login_page(StatusCode::UNAUTHORIZED, Some("That key is unknown, revoked, or lacks the admin scope."));
    };
    let (session, _) = state.sessions.start(key_hash);
    let mut response = Redirect::to("/console").into_response();
    let secure = if over_tls(&headers, &uri) { "; Secure" } else { "" };
    let max_age = SESSION_TTL.as_secs();
    let cookie = format!("{COOKIE}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /console/logout`: ends the session on the server, not just in the browser.
pub async fn post_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.end(id);
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("attune_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

// ---- overview ----

/// `GET /console`: the state of things, the latest decisions, and what needs an editor.
pub async fn get_overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    signed_in!(state, headers);
    let loaded = blocking(&state, |engine| {
        let (events, disk_bytes) = engine.store_stats()?;
        let decisions = engine.recent_decisions(None, 0, 25)?;
        let titles = Titles::of_decisions(engine, &decisions);
        Ok((events, disk_bytes, decisions, titles))
    })
    .await;
    let (events, disk_bytes, decisions, titles) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(error),
    };
    let engine = &state.engine;
    let now_ms = engine.now_ms();
    let models = engine.models();
    let due = engine.rules(true);
    let flags = engine.flags();
    page(
        StatusCode::OK,
        "Overview",
        html! {
            section aria-labelledby="numbers" {
                h2 #numbers { "At a glance" }
                dl.numbers {
                    dt { "Events stored" } dd { (events) }
                    dt { "People" } dd { (engine.n_people()) }
                    dt { "Items available" } dd { (engine.catalog().n_available()) }
                    dt { "Store on disk" } dd { (format!("{:.1} MiB", disk_bytes as f64 / 1_048_576.0)) }
                    dt { "Models" }
                    dd {
                        @if models.version == 0 { "not trained yet (decisions use popularity)" }
                        @else { "version " (models.version) ", trained " (when(models.trained_at_ms)) }
                    }
                }
                @for stats in &models.stats {
                    @if let Some(metrics) = &stats.metrics {
                        p.small { (stats.name) ": NDCG@10 " (format!("{:.3}", metrics.ndcg)) ", recall@10 "
                            (format!("{:.3}", metrics.recall)) " on " (metrics.people) " people held out" }
                    }
                }
            }
            section aria-labelledby="attention" {
                h2 #attention { "Needs an editor" }
                ul {
                    li { a href="/console/rules" { (due.len()) " rule(s) due for review" } }
                    li { a href="/console/editorial" { (flags.len()) " flagged item(s) held back" } }
                }
            }
            section aria-labelledby="whom" {
                h2 #whom { "What is recommended to whom" }
                form method="get" action="/console/person" {
                    div.field {
                        label for="id" { "Person (user or anonymous id)" }
                        input #id name="id" required;
                    }
                    div.field {
                        label for="slot" { "Slot" }
                        input #slot name="slot" value="home_feed";
                    }
                    button type="submit" { "Show" }
                }
                h3 { "Latest decisions" }
                (decision_log(&decisions, &titles, now_ms))
            }
        },
    )
}

/// Item titles for display, looked up once.
struct Titles(rustc_hash::FxHashMap<String, String>);

impl Titles {
    fn of_decisions(engine: &Engine, decisions: &[LoggedDecision]) -> Titles {
        let ids = decisions.iter().flat_map(|d| &d.placements).flat_map(|p| &p.items).map(|(item, _, _)| item);
        Titles::of(engine, ids)
    }

    fn of<'a>(engine: &Engine, ids: impl Iterator<Item = &'a String>) -> Titles {
        let mut titles = rustc_hash::FxHashMap::default();
        for id in ids {
            if !titles.contains_key(id) {
                titles.insert(id.clone(), engine.item(id).map_or_else(|| id.clone(), |item| item.title.clone()));
            }
        }
        Titles(titles)
    }

    fn get<'a>(&'a self, id: &'a str) -> &'a str {
        self.0.get(id).map_or(id, String::as_str)
    }
}

fn decision_log(decisions: &[LoggedDecision], titles: &Titles, now_ms: i64) -> Markup {
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
                                        Some(person) => a href=(format!("/console/person?id={}&slot={}", encode(person), encode(&placement.slot))) { (person) },
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

// ---- one person ----

/// `GET /console/person?id=…&slot=…`.
#[derive(Debug, Deserialize)]
pub struct PersonQuery {
    id: String,
    slot: Option<String>,
}

/// `GET /console/person`: who this is to Attune, and what they would be shown now, with reasons.
pub async fn get_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PersonQuery>,
) -> Response {
    signed_in!(state, headers);
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
                (decision_log(&decisions, &titles, now_ms))
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

// ---- editorial ----

/// `GET /console/editorial`: slot shares, picks (add and remove), flagged items (clear).
pub async fn get_editorial(State(state): State<AppState>, headers: HeaderMap, Query(done): Query<Done>) -> Response {
    signed_in!(state, headers);
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

/// Which change a page confirms after a redirect.
#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn done_line(done: Option<&str>) -> Markup {
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
pub async fn post_pick(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<PickForm>) -> Response {
    let key_id = signed_in!(state, headers);
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
pub async fn post_shares(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SharesForm>) -> Response {
    let key_id = signed_in!(state, headers);
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
    id: String,
}

/// `POST /console/picks/remove`.
pub async fn post_remove_pick(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<IdForm>) -> Response {
    let key_id = signed_in!(state, headers);
    match blocking(&state, move |engine| engine.delete_pick(&form.id, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=removed").into_response(),
        Err(error) => failure(error),
    }
}

/// `POST /console/flags/clear`.
pub async fn post_clear_flag(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<IdForm>) -> Response {
    let key_id = signed_in!(state, headers);
    match blocking(&state, move |engine| engine.clear_flag(&form.id, &key_id)).await {
        Ok(()) => Redirect::to("/console/editorial?done=cleared").into_response(),
        Err(error) => failure(error),
    }
}

// ---- rules ----

/// `GET /console/rules`: every rule, the ones due for review first.
pub async fn get_rules(State(state): State<AppState>, headers: HeaderMap, Query(done): Query<Done>) -> Response {
    signed_in!(state, headers);
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
pub async fn post_review_rule(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<IdForm>) -> Response {
    let key_id = signed_in!(state, headers);
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

// ---- measurement ----

/// `GET /console/measure`: the four-dimension report of the last 30 days, and every experiment.
pub async fn get_measure(State(state): State<AppState>, headers: HeaderMap) -> Response {
    signed_in!(state, headers);
    let loaded = blocking(&state, |engine| {
        let now_ms = engine.now_ms();
        let report = engine.report(now_ms - 30 * 86_400_000, now_ms)?;
        let experiments = engine
            .stored_experiments()
            .into_iter()
            .filter(|stored| stored.status != attune_engine::experiments::Status::Archived)
            .map(|stored| {
                let results =
                    engine.experiment_results(&stored.experiment.id, attune_engine::experiments::WINDOW_MS)?;
                Ok((stored.experiment, results))
            })
            .collect::<attune_engine::Result<Vec<_>>>()?;
        Ok((report, experiments))
    })
    .await;
    let (report, experiments) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(error),
    };
    let percent = |x: f64| format!("{:.1}%", x * 100.0);
    page(
        StatusCode::OK,
        "Measurement",
        html! {
            section aria-labelledby="report" {
                h2 #report { "The last 30 days, in four dimensions" }
                div.grid {
                    div { h3 { "Behavioral" } dl.numbers {
                        dt { "Active people" } dd { (report.active_people) }
                        dt { "Engagement depth" } dd { (format!("{:.2}", report.engagement_depth)) }
                        dt { "Completion" } dd { (percent(report.completion)) }
                        dt { "Return rate" } dd { (percent(report.return_rate)) }
                    } }
                    div { h3 { "Attitudinal" } dl.numbers {
                        dt { "Survey score (1–10)" } dd { @match report.survey_mean { Some(mean) => (format!("{mean:.1}")), None => "no answers yet" } }
                        dt { "Answers" } dd { (report.survey_count) }
                    } }
                    div { h3 { "Business" } dl.numbers {
                        dt { "Conversion" } dd { (percent(report.conversion)) }
                        dt { "Revenue" } dd { (format!("{:.2}", report.revenue)) }
                        dt { "Revenue per person" } dd { (format!("{:.2}", report.revenue_per_person)) }
                    } }
                    div { h3 { "Ethical" } dl.numbers {
                        dt { "People" } dd { (report.ethical.people) }
                        dt { "Personalization consent" } dd { (percent(report.ethical.consent_rate(attune_core::Purpose::Personalization))) }
                        dt { "Opted out" } dd { (report.ethical.opted_out) }
                        dt { "Paused" } dd { (report.ethical.personalization_paused) }
                        dt { "Erasures" } dd { (report.ethical.erasures) }
                        dt { "Held past retention" } dd { (report.ethical.held_past_retention) }
                    } }
                }
            }
            section aria-labelledby="experiments" {
                h2 #experiments { "Experiments" }
                @if experiments.is_empty() { p { "No experiments. Start one with " code { "PUT /v1/experiments/{id}" } "." } }
                @for (experiment, results) in &experiments {
                    h3 { (experiment.id) " " span.small { "on " (experiment.slot) " · " (results.status.as_str()) " · people exposed: "
                        (results.exposed.iter().map(|(arm, n)| format!("{arm} {n}")).collect::<Vec<_>>().join(", ")) } }
                    @if results.srm_mismatch {
                        p.error { "Sample ratio mismatch (p = " (format!("{:.2e}", results.srm_p)) "): the arms are not getting the people they should; do not trust the lift." }
                    }
                    table {
                        thead { tr { th { "Metric" } th { "Arm" } th { "People" } th { "Mean" } th { "Lift (95% interval)" } th { "Always-valid interval" } th { "CUPED lift" } th { "p" } } }
                        tbody {
                            @for metric in &results.metrics {
                                @for arm in &metric.arms {
                                    tr {
                                        td { (metric.name) }
                                        td { (arm.arm) }
                                        td { (arm.stats.n) }
                                        td { (format!("{:.4}", arm.mean)) }
                                        td { @match arm.lift { Some(t) => (format!("{} ({} to {})", percent(t.expected), percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.sequential { Some(t) => (format!("{} to {}", percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.cuped { Some(t) => (format!("{} ({} to {})", percent(t.expected), percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.lift { Some(t) => (format!("{:.3}", t.p_value)), None => "—" } }
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

// ---- page furniture ----

fn form_error(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "That did not work",
        html! {
            p.error role="alert" { (message) }
            p { a href="/console/editorial" { "Back" } }
        },
    )
}

fn failure(error: ApiError) -> Response {
    page(error.code.status(), "That did not work", html! { p.error role="alert" { (error.message) } })
}

/// A moment as `YYYY-MM-DD HH:MM UTC`.
fn when(ms: i64) -> String {
    let text = rfc3339(ms);
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => text,
    }
}

fn ago(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
";

/// A console page with the navigation.
fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    render(status, title, body, true)
}

/// A page without the navigation (signing in, refusals).
fn bare_page(status: StatusCode, title: &str, body: Markup) -> Response {
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

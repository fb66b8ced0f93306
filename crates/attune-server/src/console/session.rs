//! Console sessions, the guard every console route passes (rate limit, CSRF), and the
//! [`SignedIn`] extractor that handlers take to require an editor.

use attune_engine::Scope;
use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;

use super::{COOKIE, CSRF_PLACEHOLDER, LOGIN_COOKIE, page::bare_page};
use crate::{
    AppState,
    auth::{AuthMode, Holder, holder_of},
    error::ApiError,
};

/// How long a console session lasts after signing in.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

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
pub(super) struct Session {
    /// `None` for the admin key, else the stored key's hash.
    key_hash: Option<String>,
    csrf: String,
    expires: std::time::Instant,
}

/// The signed-in editor: the key id for the audit log and the CSRF token of the session.
#[derive(Debug, Clone)]
pub struct Editor {
    pub(super) key_id: String,
    pub(super) csrf: String,
}

impl Sessions {
    pub(super) fn start(&self, key_hash: Option<String>) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = std::time::Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(id.clone(), Session { key_hash, csrf: csrf.clone(), expires: now + SESSION_TTL });
        (id, csrf)
    }

    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get(id)?.clone();
        if session.expires <= std::time::Instant::now() {
            sessions.remove(id);
            return None;
        }
        Some(session)
    }

    pub(super) fn end(&self, id: &str) {
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

pub(super) fn random_token() -> String {
    attune_engine::keys::new_secret().trim_start_matches("atk_").to_owned()
}

pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The signed-in editor, if any: open mode, or a live session whose key is still valid.
pub(super) fn editor(state: &AppState, headers: &HeaderMap) -> Option<Editor> {
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
pub(super) fn sign_in_as(state: &AppState, secret: &str) -> Option<Option<String>> {
    match holder_of(state, secret)? {
        Holder::Admin => Some(None),
        Holder::Key(key) => key.allows(Scope::Admin).then_some(Some(key.hash)),
    }
}

/// Whether the request came over TLS, or through a proxy that says so.
pub(super) fn over_tls(request_headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || request_headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|first| first.trim().eq_ignore_ascii_case("https")))
}

pub(super) fn refused(status: StatusCode, message: &str) -> Response {
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
pub(super) fn with_hidden_field(html: &str, hidden: &str) -> String {
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

/// The signed-in editor, as a handler argument: open mode, or a live session whose key still
/// holds the `admin` scope. Without one the extractor answers with a redirect to the sign-in form
/// (`303 See Other`) and the handler never runs.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Editor);

impl SignedIn {
    /// The key id the audit log names for this editor's changes.
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }
}

impl axum::extract::FromRequestParts<AppState> for SignedIn {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Redirect> {
        editor(state, &parts.headers).map(SignedIn).ok_or_else(|| Redirect::to("/console/login"))
    }
}

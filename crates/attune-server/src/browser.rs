//! Pages: browser keys, CORS, identity tokens and `attune.js`.
//!
//! **Browser keys** (`POST /v1/keys` with `"kind": "browser"` and `"origins"`) hold `events:write`
//! and `decide` only, work only on `POST /v1/events`, `POST /v1/identify`, `POST /v1/decide` and
//! `PUT /v1/users/{id}/consent`, and only for the browser's own visitor: an anonymous id of the
//! form `anon-` + 32 hex characters that is nobody's alias and no person of its own
//! ([`attune_engine::Engine::browser_visitor_allowed`]). A known user id needs an **identity
//! token** signed by the site's back end ([`sign_user_token`]). A request from a page whose
//! `Origin` is not one of the key's origins is refused, and each key is rate-limited per client
//! address ([`BROWSER_RATE`]).
//!
//! **CORS** ([`cors`]): a preflight is answered only for an origin of a live browser key and only
//! on those four routes; an actual answer carries `Access-Control-Allow-Origin` only when it was
//! authorized by a browser key holding that origin. Other origins get no CORS header at all.
//!
//! **Beacons**: `navigator.sendBeacon` cannot set headers, so `POST /v1/events?key=<browser key>`
//! with a `text/plain` body is accepted as if it carried `Authorization: Bearer <key>` and
//! `Content-Type: application/json` — for browser keys only (a page's key is public anyway).

use std::sync::OnceLock;

use attune_engine::keys::{ApiKey, normalize_origin};
use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::{
    AppState,
    auth::{Caller, Holder, holder_of},
    error::{ApiError, Code},
};

type HmacSha256 = Hmac<Sha256>;

/// Requests per second per browser key and client address (sustained).
pub const BROWSER_RATE: f64 = 20.0;
/// Burst per browser key and client address.
pub const BROWSER_BURST: f64 = 60.0;

/// The script, shipped in the binary.
pub const ATTUNE_JS: &str = include_str!("attune.js");

/// The routes a browser key may call (a preflight is answered only for these).
fn is_browser_route(path: &str) -> bool {
    matches!(path, "/v1/events" | "/v1/identify" | "/v1/decide")
        || path
            .strip_prefix("/v1/users/")
            .and_then(|rest| rest.strip_suffix("/consent"))
            .is_some_and(|id| !id.contains('/'))
}

/// The site's signing secret for identity tokens of browser key `key_id`: hex of
/// HMAC-SHA256(the server's link secret, `attune-browser-identity-v1\0` + key id). Derived, not
/// stored: returned once when the key is created; revoking the key ends it.
pub fn signing_secret(link_secret: &[u8; 32], key_id: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(link_secret).expect("HMAC takes keys of any length");
    mac.update(b"attune-browser-identity-v1\0");
    mac.update(key_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// An identity token for `user`, valid until `expires_s` (seconds since the epoch):
/// `<expires_s>.<hex(HMAC-SHA256(key = signing secret, message = "<user>.<expires_s>"))>`.
/// Sites compute it on their back end, e.g.
/// `printf '%s.%s' "$USER" "$EXP" | openssl dgst -sha256 -hmac "$SECRET"`.
pub fn sign_user_token(signing_secret: &str, user: &str, expires_s: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{user}.{expires_s}").as_bytes());
    format!("{expires_s}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `token` is a valid, unexpired identity token for `user`.
pub fn verify_user_token(signing_secret: &str, user: &str, token: &str, now_ms: i64) -> bool {
    let Some((expires, tag)) = token.split_once('.') else { return false };
    let (Ok(expires_s), Ok(tag)) = (expires.parse::<i64>(), hex::decode(tag)) else { return false };
    if expires_s.saturating_mul(1000) <= now_ms {
        return false;
    }
    let mut mac = HmacSha256::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{user}.{expires_s}").as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// A browser key's part of a [`Caller`].
#[derive(Debug, Clone)]
pub struct BrowserCaller {
    /// The key's signing secret for identity tokens.
    pub signing_secret: String,
}

/// Checks what a browser key may do for a subject: with `user`, a valid `user_token` for it;
/// with `anonymous_id`, only the browser's own visitor. Back-end keys pass. `field` prefixes
/// the field named in errors (`events[3].`).
pub fn check_subject(
    state: &AppState,
    caller: &Caller,
    user: Option<&str>,
    anonymous_id: Option<&str>,
    user_token: Option<&str>,
    field: &str,
) -> Result<(), ApiError> {
    let Some(browser) = &caller.browser else { return Ok(()) };
    if let Some(user) = user {
        let Some(token) = user_token else {
            return Err(ApiError::new(
                Code::UserTokenRequired,
                "A browser key acts for a known user only with `user_token`, an identity token signed by the site's back end.",
            )
            .with_field(format!("{field}user_token")));
        };
        if !verify_user_token(&browser.signing_secret, user, token, state.engine.now_ms()) {
            return Err(ApiError::new(
                Code::InvalidUserToken,
                "The identity token is invalid, expired or for another user.",
            )
            .with_field(format!("{field}user_token")));
        }
    } else if let Some(anonymous_id) = anonymous_id
        && !state.engine.browser_visitor_allowed(anonymous_id)
    {
        return Err(browser_visitor_only(&format!("{field}anonymous_id")));
    }
    Ok(())
}

/// A `/me` link (an hour) for a browser key's visitor, or `None` when nothing is known of them.
pub async fn visitor_me_url(state: &AppState, subject: String) -> Option<String> {
    let minted = crate::blocking(state, move |engine| {
        let person = engine.person(&subject)?.id;
        let generation = engine.me_link_generation(&person)?;
        Ok((person, generation, engine.now_ms()))
    })
    .await
    .ok()?;
    let (person, generation, now_ms) = minted;
    let token = crate::me::sign_token(&state.engine.link_secret(), &person, now_ms + 3_600_000, &generation);
    Some(format!("/me?token={token}"))
}

/// The error for a browser key naming someone other than its own anonymous visitor.
pub fn browser_visitor_only(field: &str) -> ApiError {
    ApiError::new(
        Code::BrowserVisitorOnly,
        "A browser key acts only for its own visitor: an anonymous id `anon-` + 32 hex characters that is no known \
         person (a known user needs `user_token`).",
    )
    .with_field(field.to_owned())
}

/// Checks a browser key against the request: the `Origin`, when sent, must be one of its origins
/// (browsers send it on every cross-origin request and on every POST and PUT).
pub(crate) fn check_origin(key: &ApiKey, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(browser) = &key.browser else { return Ok(()) };
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => Ok(()),
        Some(origin) if normalize_origin(origin).is_some_and(|o| browser.origins.contains(&o)) => Ok(()),
        Some(_) => {
            Err(ApiError::new(Code::OriginNotAllowed, "This browser key is not allowed from this page's origin."))
        }
    }
}

fn request_origin(headers: &HeaderMap) -> Option<String> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).and_then(normalize_origin)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

fn browser_key(state: &AppState, secret: &str) -> Option<ApiKey> {
    match holder_of(state, secret) {
        Some(Holder::Key(key)) if key.browser.is_some() => Some(key),
        _ => None,
    }
}

fn query_key(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| pair.strip_prefix("key=")).filter(|k| !k.is_empty())
}

/// CORS for browser keys, and beacons (see the module documentation).
pub async fn cors(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let origin = request_origin(request.headers());
    let path = request.uri().path().to_owned();
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        if let Some(origin) = origin
            && is_browser_route(&path)
            && state.engine.browser_origins().contains(&origin)
        {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            allow_origin(headers, &origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT"));
            headers
                .insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            return response;
        }
        return next.run(request).await;
    }
    // A beacon: the key in the query, a text/plain body.
    if request.method() == Method::POST
        && path == "/v1/events"
        && !request.headers().contains_key(header::AUTHORIZATION)
        && let Some(secret) = request.uri().query().and_then(query_key).map(str::to_owned)
        && browser_key(&state, &secret).is_some()
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {secret}"))
    {
        let headers = request.headers_mut();
        headers.insert(header::AUTHORIZATION, value);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let allowed = origin.filter(|origin| {
        bearer(request.headers())
            .and_then(|secret| browser_key(&state, secret))
            .is_some_and(|key| key.browser.as_ref().is_some_and(|b| b.origins.contains(origin)))
    });
    let mut response = next.run(request).await;
    if let Some(origin) = allowed {
        allow_origin(response.headers_mut(), &origin);
    }
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The script's version: the first 16 hex characters of its SHA-256 (its ETag too).
pub fn attune_js_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| hex::encode(Sha256::digest(ATTUNE_JS.as_bytes()))[..16].to_owned())
}

/// `GET /v1/attune.js` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScriptQuery {
    /// The version (`X-Attune-Version`); with the current one the answer is cacheable for a year.
    pub v: Option<String>,
}

/// The browser script: page views, dwell and scroll depth, batched events, consent first, and
/// slots filled from decisions with their reasons (see the README).
#[utoipa::path(get, path = "/v1/attune.js", tag = "ops", params(ScriptQuery),
    responses((status = 200, description = "The script (`text/javascript`), with an `ETag`; cacheable for an hour, or a year with `?v=<version>`.", content_type = "text/javascript"),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`).")))]
pub async fn get_script(headers: HeaderMap, request: Request) -> Response {
    let version = attune_js_version();
    let etag = format!("\"{version}\"");
    let versioned = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == format!("v={version}")));
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "public, max-age=3600" };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if not_modified { StatusCode::NOT_MODIFIED.into_response() } else { ATTUNE_JS.into_response() };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(version) {
        out.insert("x-attune-version", value);
    }
    out.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_tokens() {
        let secret = signing_secret(&[7; 32], "key_1");
        let token = sign_user_token(&secret, "u-42", 2_000_000_000);
        assert!(verify_user_token(&secret, "u-42", &token, 1_000));
        assert!(!verify_user_token(&secret, "u-43", &token, 1_000));
        assert!(!verify_user_token(&secret, "u-42", &token, 2_000_000_000_000));
        assert!(!verify_user_token(&signing_secret(&[7; 32], "key_2"), "u-42", &token, 1_000));
        assert!(!verify_user_token(&secret, "u-42", "x", 1_000));
    }

    #[test]
    fn browser_routes() {
        for path in ["/v1/events", "/v1/identify", "/v1/decide", "/v1/users/anon-1/consent"] {
            assert!(is_browser_route(path), "{path}");
        }
        for path in ["/v1/users/u-1", "/v1/users/u-1/export", "/v1/keys", "/v1/users/a/b/consent"] {
            assert!(!is_browser_route(path), "{path}");
        }
    }
}

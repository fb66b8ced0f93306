//! Authentication and scopes. A route states the scope it needs in its signature
//! (`Auth<EventsWrite>`), and the check runs before the body is read, so an unauthenticated
//! request never gets as far as a body error.

use std::marker::PhantomData;

use attune_engine::Scope;
use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{
    AppState,
    error::{ApiError, Code},
};

/// How the server authenticates.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// An admin key is configured: every request needs a key.
    Keys {
        /// SHA-256 of the admin key.
        admin_hash: String,
    },
    /// No admin key, loopback only: requests without a key are allowed.
    Open,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key id (`admin`, `open`, or a `key_…` id) for the audit log.
    pub key_id: String,
    /// Whether the caller holds the admin scope (the admin key, an admin-scoped key, or open mode).
    pub admin: bool,
    /// A browser key (for pages): acts only for its own visitor ([`crate::browser`]).
    pub browser: Option<crate::browser::BrowserCaller>,
}

/// A scope requirement, as a type.
pub trait Required {
    /// The scopes (admin always is enough).
    const SCOPES: &'static [Scope];
    /// Whether every one of [`Required::SCOPES`] is needed (otherwise any one is enough).
    const ALL: bool = false;
    /// Whether a browser key may call the route (for its own visitor; the handler checks who).
    const BROWSER: bool = false;
}

macro_rules! scope_markers {
    ($($name:ident => [$($scope:ident),*];)*) => {$(
        #[doc = concat!("Requires one of: ", $(stringify!($scope), " ",)* ".")]
        pub struct $name;
        impl Required for $name {
            const SCOPES: &'static [Scope] = &[$(Scope::$scope),*];
        }
    )*};
}

scope_markers! {
    EventsWrite => [EventsWrite];
    Decide => [Decide];
    CatalogWrite => [CatalogWrite];
    CatalogRead => [CatalogWrite, Decide];
    UsersRead => [UsersRead];
    UsersWrite => [UsersWrite];
    DecisionsRead => [DecisionsRead];
    Admin => [Admin];
}

macro_rules! browser_markers {
    ($($name:ident => [$($scope:ident),*], $doc:literal;)*) => {$(
        #[doc = $doc]
        pub struct $name;
        impl Required for $name {
            const SCOPES: &'static [Scope] = &[$(Scope::$scope),*];
            const BROWSER: bool = true;
        }
    )*};
}

browser_markers! {
    VisitorEvents => [EventsWrite], "`events:write`, from a back end or a browser key (for its own visitor).";
    VisitorDecide => [Decide], "`decide`, from a back end or a browser key (for its own visitor).";
    VisitorConsent => [UsersWrite], "`users:write`, or a browser key (its own anonymous visitor's consent only).";
}

/// Requires both `users:read` and `users:write` (or admin): minting a `/me` link, which lets its
/// holder read and change the person.
pub struct UsersReadWrite;

impl Required for UsersReadWrite {
    const SCOPES: &'static [Scope] = &[Scope::UsersRead, Scope::UsersWrite];
    const ALL: bool = true;
}

/// An authenticated caller holding one of `R::SCOPES`.
pub struct Auth<R>(pub Caller, pub PhantomData<R>);

impl<R: Required> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(state, parts, R::SCOPES, R::ALL, R::BROWSER).map(|caller| Auth(caller, PhantomData))
    }
}

/// The client's address (from the connection), for throttling failed sign-ins; `unknown` when
/// the server was started without connection info.
pub fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| String::from("unknown"), |info| info.0.ip().to_string())
}

fn authorize(state: &AppState, parts: &Parts, scopes: &[Scope], all: bool, browser: bool) -> Result<Caller, ApiError> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION);
    let Some(header) = header else {
        return match state.auth {
            // A page on another site must not act as the open server's admin.
            AuthMode::Open if cross_site_origin(parts) => Err(ApiError::new(
                Code::Unauthorized,
                "Without an admin key Attune answers requests from pages on other sites only with a browser key.",
            )),
            AuthMode::Open => Ok(Caller { key_id: "open".into(), admin: true, browser: None }),
            AuthMode::Keys { .. } => {
                Err(ApiError::new(Code::Unauthorized, "Send an API key: `Authorization: Bearer <key>`."))
            }
        };
    };
    let client = client_address(parts);
    state.failures.check(&client)?;
    let secret = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(Code::Unauthorized, "The Authorization header must be `Bearer <key>`."))?;
    let key = match holder_of(state, secret) {
        Some(Holder::Admin) => {
            state.admin_limiter.check("admin")?;
            return Ok(Caller { key_id: "admin".into(), admin: true, browser: None });
        }
        Some(Holder::Key(key)) => key,
        None => {
            state.failures.record(&client);
            return Err(ApiError::new(Code::Unauthorized, "The API key is unknown or revoked."));
        }
    };
    if key.browser.is_some() {
        if !browser {
            return Err(ApiError::new(
                Code::Forbidden,
                "A browser key may only send events, identify with a signed token, decide and set its visitor's consent.",
            ));
        }
        crate::browser::check_origin(&key, &parts.headers)?;
        state.browser_limiter.check(&format!("{}@{client}", key.id))?;
        let signing_secret = crate::browser::signing_secret(&state.engine.link_secret(), &key.id);
        let allowed = scopes.iter().any(|&scope| key.allows(scope)) || scopes == [Scope::UsersWrite];
        if !allowed {
            return Err(ApiError::new(Code::Forbidden, "This browser key lacks the scope this route needs."));
        }
        return Ok(Caller {
            key_id: key.id,
            admin: false,
            browser: Some(crate::browser::BrowserCaller { signing_secret }),
        });
    }
    let allowed = if all {
        key.allows(Scope::Admin) || scopes.iter().all(|&scope| key.allows(scope))
    } else {
        scopes.iter().any(|&scope| key.allows(scope))
    };
    if allowed {
        state.limiter.check(&key.id)?;
        Ok(Caller { admin: key.allows(Scope::Admin), key_id: key.id, browser: None })
    } else {
        let needed: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let (what, joined) = if all { ("every scope", " and ") } else { ("the scope", " or ") };
        Err(ApiError::new(Code::Forbidden, format!("This key lacks {what} this route needs: {}.", needed.join(joined))))
    }
}

/// Whom a secret names.
pub(crate) enum Holder {
    /// The admin key.
    Admin,
    /// A stored key that is not revoked.
    Key(attune_engine::keys::ApiKey),
}

/// The holder of `secret`, if it is the admin key or a live stored key. Shared by the API's
/// `Authorization` header and the console's sign-in. With an admin key set, keys minted while
/// the server ran open (without keys, loopback only) authenticate nothing: whoever reached the
/// open server (a DNS-rebinding page, say) could have minted them.
pub(crate) fn holder_of(state: &AppState, secret: &str) -> Option<Holder> {
    if let AuthMode::Keys { admin_hash } = &state.auth
        && attune_engine::keys::constant_time_eq(&attune_engine::keys::hash_secret(secret), admin_hash)
    {
        return Some(Holder::Admin);
    }
    let key = state.engine.authenticate(secret)?;
    if key.minted_open && matches!(state.auth, AuthMode::Keys { .. }) {
        tracing::warn!(key = %key.id, "refused a key minted in open mode; mint a new one with the admin key");
        return None;
    }
    Some(Holder::Key(key))
}

/// Whether the request carries an `Origin` that is not this machine (a page on another site).
fn cross_site_origin(parts: &Parts) -> bool {
    parts.headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|origin| {
        let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        !is_loopback_host(host)
    })
}

/// Whether a `Host` value (with or without a port) names this machine's loopback interface:
/// `localhost`, `127.x.y.z` or `[::1]`. Open mode answers only these, so that a web page that
/// rebinds its own DNS name to 127.0.0.1 cannot reach the API.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || is_port(after) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':').unwrap_or(text).parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST:7700", "127.0.0.1", "127.0.0.1:7700", "127.3.4.5:1", "[::1]", "[::1]:7700"]
        {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:7700",
            "localhost.attacker.example",
            "10.0.0.1:7700",
            "[::2]:1",
            "127.0.0.1:x",
            "",
            "[::1]x",
            "0.0.0.0:7700",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}

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
}

/// A scope requirement, as a type.
pub trait Required {
    /// Any of these scopes is enough (admin always is).
    const SCOPES: &'static [Scope];
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
    Admin => [Admin];
}

/// An authenticated caller holding one of `R::SCOPES`.
pub struct Auth<R>(pub Caller, pub PhantomData<R>);

impl<R: Required> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(state, parts, R::SCOPES).map(|caller| Auth(caller, PhantomData))
    }
}

fn authorize(state: &AppState, parts: &Parts, scopes: &[Scope]) -> Result<Caller, ApiError> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION);
    let Some(header) = header else {
        return match state.auth {
            AuthMode::Open => Ok(Caller { key_id: "open".into() }),
            AuthMode::Keys { .. } => {
                Err(ApiError::new(Code::Unauthorized, "Send an API key: `Authorization: Bearer <key>`."))
            }
        };
    };
    let secret = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(Code::Unauthorized, "The Authorization header must be `Bearer <key>`."))?;
    let key = match holder_of(state, secret) {
        Some(Holder::Admin) => return Ok(Caller { key_id: "admin".into() }),
        Some(Holder::Key(key)) => key,
        None => return Err(ApiError::new(Code::Unauthorized, "The API key is unknown or revoked.")),
    };
    if scopes.iter().any(|&scope| key.allows(scope)) {
        state.limiter.check(&key.id)?;
        Ok(Caller { key_id: key.id })
    } else {
        let needed: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::new(
            Code::Forbidden,
            format!("This key lacks the scope this route needs: {}.", needed.join(" or ")),
        ))
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
/// `Authorization` header and the console's sign-in cookie.
pub(crate) fn holder_of(state: &AppState, secret: &str) -> Option<Holder> {
    if let AuthMode::Keys { admin_hash } = &state.auth
        && attune_engine::keys::constant_time_eq(&attune_engine::keys::hash_secret(secret), admin_hash)
    {
        return Some(Holder::Admin);
    }
    state.engine.authenticate(secret).map(Holder::Key)
}

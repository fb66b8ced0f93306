//! Keys and the audit log.

use attune_engine::Scope;
use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::rfc3339;
use crate::{
    AppState,
    auth::{Admin, Auth},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, ApiQuery, IdPath},
    wire::{AuditLogOut, AuditOut, KeyCreatedOut, KeyIn, KeyOut, KeysOut, StatusOut},
};

/// Create a scoped key. The key is shown once; only its hash is stored. With `"kind": "browser"`
/// and `origins`, a key for pages (see `attune.js`): its visitor's events, decisions and consent
/// only, plus a `signing_secret` for identity tokens, shown once too.
#[utoipa::path(post, path = "/v1/keys", tag = "admin", request_body = KeyIn,
    responses((status = 200, description = "The new key, shown this once, and its id.", body = KeyCreatedOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_key(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    ApiJson(body): ApiJson<KeyIn>,
) -> ApiResult<Json<KeyCreatedOut>> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidValue, "`name` is 1–128 printable characters.").with_field("name"));
    }
    let browser = match body.kind.as_deref() {
        None | Some("server") => false,
        Some("browser") => true,
        Some(_) => {
            return Err(ApiError::new(Code::InvalidValue, "`kind` is `server` or `browser`.").with_field("kind"));
        }
    };
    let origins = match (&body.origins, browser) {
        (None, false) => Vec::new(),
        (Some(_), false) => {
            return Err(ApiError::new(
                Code::InvalidValue,
                "Only a browser key (`\"kind\": \"browser\"`) has `origins`.",
            )
            .with_field("origins"));
        }
        (None, true) => {
            return Err(ApiError::new(Code::MissingField, "A browser key needs `origins`, the pages that may use it.")
                .with_field("origins"));
        }
        (Some(list), true) => {
            if list.is_empty() || list.len() > 20 {
                return Err(ApiError::new(Code::InvalidValue, "A browser key has 1–20 origins.").with_field("origins"));
            }
            let mut origins = Vec::new();
            for (i, origin) in list.iter().enumerate() {
                let origin = attune_engine::keys::normalize_origin(origin).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidValue,
                        "An origin is `https://host` or `http://host:port`, without a path.",
                    )
                    .with_field(format!("origins[{i}]"))
                })?;
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            origins
        }
    };
    if body.scopes.is_empty() && !browser {
        return Err(ApiError::new(Code::InvalidScope, "A key needs at least one scope.").with_field("scopes"));
    }
    let mut scopes = Vec::new();
    for (i, scope) in body.scopes.iter().enumerate() {
        let parsed = Scope::parse(scope).ok_or_else(|| {
            ApiError::new(
                Code::InvalidScope,
                "Scopes are events:write, decide, catalog:write, users:read, users:write, decisions:read and admin.",
            )
            .with_field(format!("scopes[{i}]"))
        })?;
        if browser && !matches!(parsed, Scope::EventsWrite | Scope::Decide) {
            return Err(ApiError::new(Code::InvalidScope, "A browser key holds only events:write and decide.")
                .with_field(format!("scopes[{i}]")));
        }
        if !scopes.contains(&parsed) {
            scopes.push(parsed);
        }
    }
    if browser && scopes.is_empty() {
        scopes = vec![Scope::EventsWrite, Scope::Decide];
    }
    let minted_open = matches!(state.auth, crate::AuthMode::Open);
    let (key, secret) = blocking(&state, move |engine| {
        let (key, secret) = if browser {
            engine.create_browser_key(&name, scopes, origins, minted_open)?
        } else {
            engine.create_key_with(&name, scopes, minted_open)?
        };
        engine.audit(&caller.key_id, "keys.create", &key.id)?;
        Ok((key, secret))
    })
    .await?;
    let signing_secret =
        key.browser.is_some().then(|| crate::browser::signing_secret(&state.engine.link_secret(), &key.id));
    Ok(Json(KeyCreatedOut {
        key: secret,
        scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        kind: kind_of(&key).to_owned(),
        origins: key.browser.map(|b| b.origins).unwrap_or_default(),
        id: key.id,
        name: key.name,
        signing_secret,
    }))
}

fn kind_of(key: &attune_engine::ApiKey) -> &'static str {
    if key.browser.is_some() { "browser" } else { "server" }
}

/// Every key, without secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "admin", responses((status = 200, description = "Every key, without secrets.", body = KeysOut)), security(("bearer" = [])))]
pub async fn list_keys(State(state): State<AppState>, _auth: Auth<Admin>) -> ApiResult<Json<KeysOut>> {
    let keys = state
        .engine
        .list_keys()
        .into_iter()
        .map(|key| KeyOut {
            kind: kind_of(&key).to_owned(),
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: rfc3339(key.created_ms),
            revoked: key.revoked,
            minted_open: key.minted_open,
            origins: key.browser.map(|b| b.origins).unwrap_or_default(),
            id: key.id,
            name: key.name,
        })
        .collect();
    Ok(Json(KeysOut { keys }))
}

/// Revoke a key: it authenticates nothing from now on.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "admin", params(("id" = String, Path, description = "The key's id (not the secret)")),
    responses((status = 200, description = "Revoked: `{\"status\": \"revoked\"}`.", body = StatusOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_key(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<StatusOut>> {
    blocking(&state, move |engine| {
        engine.revoke_key(&id)?;
        engine.audit(&caller.key_id, "keys.revoke", &id)
    })
    .await?;
    Ok(Json(StatusOut { status: "revoked".into() }))
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339; entries at or after it.
    pub since: Option<String>,
    /// 1–10,000 (default 1,000).
    pub limit: Option<usize>,
}

/// Who did what: key id, action, target, time.
#[utoipa::path(get, path = "/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, description = "Audit entries, oldest first.", body = AuditLogOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_audit(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditLogOut>> {
    let since_ms = match &query.since {
        None => i64::MIN,
        Some(text) => attune_core::validate::parse_ts_ms(text)
            .ok_or_else(|| ApiError::new(Code::InvalidTimestamp, "`since` must be RFC 3339.").with_field("since"))?,
    };
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(Code::InvalidCount, "`limit` is 1–10,000.").with_field("limit"));
    }
    let entries = blocking(&state, move |engine| engine.audit_log(since_ms, limit)).await?;
    Ok(Json(AuditLogOut {
        entries: entries
            .into_iter()
            .map(|e| AuditOut { id: e.id, key_id: e.key_id, action: e.action, target: e.target, at: rfc3339(e.at_ms) })
            .collect(),
    }))
}

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

/// Create a scoped key. The key is shown once; only its hash is stored.
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
    if body.scopes.is_empty() {
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
        if !scopes.contains(&parsed) {
            scopes.push(parsed);
        }
    }
    let minted_open = matches!(state.auth, crate::AuthMode::Open);
    let (key, secret) = blocking(&state, move |engine| {
        let (key, secret) = engine.create_key_with(&name, scopes, minted_open)?;
        engine.audit(&caller.key_id, "keys.create", &key.id)?;
        Ok((key, secret))
    })
    .await?;
    Ok(Json(KeyCreatedOut {
        key: secret,
        id: key.id,
        name: key.name,
        scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
    }))
}

/// Every key, without secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "admin", responses((status = 200, description = "Every key, without secrets.", body = KeysOut)), security(("bearer" = [])))]
pub async fn list_keys(State(state): State<AppState>, _auth: Auth<Admin>) -> ApiResult<Json<KeysOut>> {
    let keys = state
        .engine
        .list_keys()
        .into_iter()
        .map(|key| KeyOut {
            id: key.id,
            name: key.name,
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: rfc3339(key.created_ms),
            revoked: key.revoked,
            minted_open: key.minted_open,
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

//! Privacy and governance (issue 6): forgetting an item, export, erasure with a receipt, `/me`
//! links, and retention sweeps on demand.

use attune_core::{Event, PropValue, Subject};
use attune_engine::{ErasureReceipt, PersonExport, SweepReport};
use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use super::{rfc3339, users};
use crate::{
    AppState,
    auth::{Admin, Auth, UsersRead, UsersReadWrite, UsersWrite},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiQuery, IdPath, IdPath2},
    wire::{
        AuditOut, ErasedOut, ExportEventOut, ExportOut, ForgetOut, ForgottenOut, MeLinkOut, MergeOut, ReceiptOut,
        RecordOut, StatusOut, SweepOut,
    },
};

/// Forget one item: the person's (and aliases') events about it are deleted, the profile is
/// refolded without them, and the item is never cited as a reason again.
#[utoipa::path(delete, path = "/v1/users/{id}/history/{item}", tag = "people",
    params(("id" = String, Path, description = "The person's id"), ("item" = String, Path, description = "The item to forget")),
    responses((status = 200, description = "What was forgotten.", body = ForgetOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_history(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersWrite>,
    IdPath2(id, item): IdPath2,
) -> ApiResult<Json<ForgetOut>> {
    let item_out = item.clone();
    let report = blocking(&state, move |engine| engine.forget_item(&id, &item, &caller.key_id)).await?;
    Ok(Json(ForgetOut {
        forgotten: true,
        item: item_out,
        events_deleted: report.events,
        purge_by: rfc3339(report.purge_by_ms),
    }))
}

/// Every stored record about the person and their aliases, machine-readable (GDPR Art. 20).
/// Audited (`users.export`).
#[utoipa::path(get, path = "/v1/users/{id}/export", tag = "people", params(("id" = String, Path, description = "The person's id")),
    responses((status = 200, description = "Every stored record about the person.", body = ExportOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_export(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersRead>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ExportOut>> {
    Ok(Json(export(&state, id, caller.key_id).await?))
}

/// Exports and audits (shared with the `/me` page).
pub(crate) async fn export(state: &AppState, id: String, key_id: String) -> ApiResult<ExportOut> {
    let (export, now_ms) = blocking(state, move |engine| {
        let export = engine.export_person(&id)?;
        engine.audit(&key_id, "users.export", &export.view.id)?;
        Ok((export, engine.now_ms()))
    })
    .await?;
    Ok(export_out(export, now_ms))
}

/// Erase the person and every merged anonymous id: events, profile, consent, preferences,
/// aliases, decisions, exposures, notification plans, and their factors in live models. The
/// receipt counts what was removed and holds no personal data. Afterwards the id is unknown.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "The person's id")),
    responses((status = 200, description = "Erased, with a receipt that holds no personal data.", body = ErasedOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ErasedOut>> {
    let receipt = blocking(&state, move |engine| engine.erase_person(&id, &caller.key_id)).await?;
    Ok(Json(ErasedOut { erased: true, receipt: receipt_out(receipt) }))
}

/// An erasure receipt (admin).
#[utoipa::path(get, path = "/v1/erasures/{receipt_id}", tag = "admin", params(("receipt_id" = String, Path, description = "The receipt's id, from `DELETE /v1/users/{id}`")),
    responses((status = 200, description = "The receipt.", body = ReceiptOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_erasure(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(receipt_id): IdPath,
) -> ApiResult<Json<ReceiptOut>> {
    let lookup = receipt_id.clone();
    let receipt = blocking(&state, move |engine| engine.erasure_receipt(&lookup)).await?;
    receipt.map(|r| Json(receipt_out(r))).ok_or_else(|| ApiError::not_found("erasure receipt", &receipt_id))
}

/// `POST /v1/users/{id}/me-link` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MeLinkQuery {
    /// How long the link works, in seconds: 60–604,800 (a week); default 3,600.
    pub ttl_seconds: Option<u64>,
}

/// A signed, expiring link to the person's `/me` page ("why am I seeing this / my
/// preferences"), which works without an API key. The link reads and changes the person, so
/// minting one needs both `users:read` and `users:write` (or admin); it is audited
/// (`users.me_link`).
#[utoipa::path(post, path = "/v1/users/{id}/me-link", tag = "people", params(("id" = String, Path, description = "The person's id"), MeLinkQuery),
    responses((status = 200, description = "The link and when it expires.", body = MeLinkOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_me_link(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersReadWrite>,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<MeLinkQuery>,
) -> ApiResult<Json<MeLinkOut>> {
    let ttl_seconds = query.ttl_seconds.unwrap_or(3600);
    if !(60..=604_800).contains(&ttl_seconds) {
        return Err(
            ApiError::new(Code::InvalidCount, "`ttl_seconds` is 60–604,800 (a week).").with_field("ttl_seconds")
        );
    }
    let (person, generation, now_ms) = blocking(&state, move |engine| {
        let person = engine.person(&id)?.id;
        let generation = engine.me_link_generation(&person)?;
        engine.audit(&caller.key_id, "users.me_link", &person)?;
        Ok((person, generation, engine.now_ms()))
    })
    .await?;
    let expires_ms = now_ms + ttl_seconds as i64 * 1000;
    let token = crate::me::sign_token(&state.engine.link_secret(), &person, expires_ms, &generation);
    Ok(Json(MeLinkOut { url: format!("/me?token={token}"), expires_at: rfc3339(expires_ms) }))
}

/// Revoke every `/me` link minted for the person so far (audited, `users.me_link_revoke`).
/// Erasure does the same.
#[utoipa::path(delete, path = "/v1/users/{id}/me-link", tag = "people", params(("id" = String, Path, description = "The person's id")),
    responses((status = 200, description = "Every earlier link is revoked.", body = StatusOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_me_link(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<StatusOut>> {
    blocking(&state, move |engine| engine.revoke_me_links(&id, &caller.key_id)).await?;
    Ok(Json(StatusOut { status: "revoked".into() }))
}

/// Run the retention sweep now (the server also runs it hourly): deletes events past their
/// retention and what was derived only from them, old audit entries and old decisions.
#[utoipa::path(post, path = "/v1/admin/retention/sweep", tag = "admin",
    responses((status = 200, description = "What the sweep deleted.", body = SweepOut)), security(("bearer" = [])))]
pub async fn post_sweep(State(state): State<AppState>, Auth(caller, _): Auth<Admin>) -> ApiResult<Json<SweepOut>> {
    let report = blocking(&state, move |engine| {
        let report = engine.sweep_retention(engine.now_ms())?;
        engine.audit(&caller.key_id, "retention.sweep", "events")?;
        Ok(report)
    })
    .await?;
    Ok(Json(sweep_out(report)))
}

/// Converts a sweep report to its wire form.
pub fn sweep_out(report: SweepReport) -> SweepOut {
    SweepOut {
        events_deleted: report.events_deleted,
        people_rebuilt: report.people_rebuilt,
        audit_deleted: report.audit_deleted,
        decisions_deleted: report.decisions_deleted,
        notifications_deleted: report.notifications_deleted,
        decided_zones_deleted: report.decided_zones_deleted,
        held_past_retention: report.held_past_retention,
        purge_by: report.purge_by_ms.map(rfc3339),
    }
}

pub(crate) fn receipt_out(receipt: ErasureReceipt) -> ReceiptOut {
    ReceiptOut {
        receipt_id: receipt.receipt_id,
        erased_at: rfc3339(receipt.erased_at_ms),
        events: receipt.events,
        aliases: receipt.aliases,
        records: receipt.records,
        audit_redacted: receipt.audit_redacted,
        completed_at_start: receipt.completed_at_start,
        purge_by: receipt.purge_by_ms.map(rfc3339),
    }
}

fn export_out(export: PersonExport, now_ms: i64) -> ExportOut {
    let record = |(key, bytes): (String, Vec<u8>)| RecordOut {
        key: key.replace('\0', "/"),
        value: serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({"hex": hex::encode(&bytes)})),
    };
    let aliases = export.view.aliases.clone();
    ExportOut {
        format: "attune-export-v1".into(),
        exported_at: rfc3339(now_ms),
        user: users::user_out(export.view),
        stored_consent: export.stored_consent.as_ref().map(users::consent_out),
        stored_preferences: export.stored_preferences.as_ref().map(users::preferences_out),
        aliases,
        events: export.events.into_iter().map(event_out).collect(),
        merges: export
            .merges
            .into_iter()
            .map(|m| MergeOut { anonymous_id: m.anonymous_id, user: m.user, at: rfc3339(m.at_ms) })
            .collect(),
        forgotten: export.forgotten.into_iter().map(|(item, at)| ForgottenOut { item, at: rfc3339(at) }).collect(),
        audit: export
            .audit
            .into_iter()
            .map(|e| AuditOut { id: e.id, key_id: e.key_id, action: e.action, target: e.target, at: rfc3339(e.at_ms) })
            .collect(),
        decisions: export.decisions.into_iter().map(record).collect(),
        notifications: export.notifications.into_iter().map(record).collect(),
        decided_zones: export.decided_zones.into_iter().map(record).collect(),
    }
}

/// A stored event in the API's event shape.
pub fn event_out(event: Event) -> ExportEventOut {
    let (user, anonymous_id) = match event.subject {
        Subject::User(id) => (Some(id), None),
        Subject::Anonymous(id) => (None, Some(id)),
    };
    let mut context = Map::new();
    let fields = [
        ("device", event.context.device),
        ("timezone", event.context.timezone),
        ("geo", event.context.geo),
        ("weather", event.context.weather),
        ("local_time", event.context.local_time),
        ("page", event.context.page),
        ("locale", event.context.locale),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            context.insert(name.to_owned(), Value::String(value));
        }
    }
    let properties = event
        .properties
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                PropValue::Str(s) => Value::String(s),
                PropValue::Num(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
                PropValue::Int(i) => Value::from(i),
                PropValue::Bool(b) => Value::Bool(b),
            };
            (name, value)
        })
        .collect();
    ExportEventOut {
        id: event.id,
        kind: event.kind.as_str().to_owned(),
        user,
        anonymous_id,
        item: event.item,
        ts: rfc3339(event.ts_ms),
        channel: event.channel,
        context,
        properties,
        decision_id: event.decision_id,
    }
}

//! `POST /v1/events` and `POST /v1/identify`.

use attune_core::validate::{RawEvent, RejectCode, Rejection};
use attune_engine::IngestItem;
use axum::{Json, extract::State};

use crate::{
    AppState,
    auth::{Admin, Auth, VisitorEvents},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, IdPath, check_path_id, from_value},
    wire::{DroppedOut, EventIn, EventsIn, EventsOut, IdentifyIn, IdentifyOut, RejectedOut},
};

/// The most events in one batch.
pub const MAX_EVENTS: usize = 1000;

fn to_raw(event: EventIn) -> RawEvent {
    RawEvent {
        id: event.id,
        kind: event.kind,
        user: event.user,
        anonymous_id: event.anonymous_id,
        item: event.item,
        ts: event.ts,
        channel: event.channel,
        context: event.context.unwrap_or_default(),
        properties: event.properties.unwrap_or_default(),
        decision_id: event.decision_id,
    }
}

fn shape_rejection(error: ApiError, index: usize) -> Rejection {
    let code = match error.code {
        Code::UnknownField => RejectCode::UnknownField,
        Code::MissingField => RejectCode::MissingField,
        _ => RejectCode::InvalidType,
    };
    let prefix = format!("events[{index}].");
    let field = error.field.map(|f| f.strip_prefix(&prefix).map(str::to_owned).unwrap_or(f));
    Rejection { code, field, message: error.message }
}

/// Parses one event (a JSON value at `events[index]`) for the engine: fields to validate, or a
/// rejection when its shape is wrong. Shared by the HTTP path and `attune import`.
pub fn parse_event_value(value: serde_json::Value, index: usize) -> IngestItem {
    // Fast path without tracking where in the value a failure lies; only a failure pays for that.
    if let Ok(event) = <EventIn as serde::Deserialize>::deserialize(&value) {
        return IngestItem::Raw(to_raw(event));
    }
    let prefix = format!("events[{index}]");
    match from_value::<EventIn>(value, &prefix) {
        Ok(event) => IngestItem::Raw(to_raw(event)),
        Err(error) => IngestItem::Rejected(shape_rejection(error, index)),
    }
}

/// Parses one line of a JSON-lines file as an event (see [`parse_event_value`]).
pub fn parse_event_line(line: &[u8], index: usize) -> IngestItem {
    if let Ok(event) = serde_json::from_slice::<EventIn>(line) {
        return IngestItem::Raw(to_raw(event));
    }
    match crate::extract::parse_json::<EventIn>(line) {
        Ok(event) => IngestItem::Raw(to_raw(event)),
        Err(error) => IngestItem::Rejected(shape_rejection(error, index)),
    }
}

/// Ingest a batch of events.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventsIn,
    responses(
        (status = 200, description = "Accepted events are on disk.", body = EventsOut),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_events(
    State(state): State<AppState>,
    Auth(caller, _): Auth<VisitorEvents>,
    ApiJson(body): ApiJson<EventsIn>,
) -> ApiResult<Json<EventsOut>> {
    if body.events.len() > MAX_EVENTS {
        return Err(ApiError::new(
            Code::TooManyEvents,
            format!("A batch holds at most {MAX_EVENTS} events; this one has {}.", body.events.len()),
        )
        .with_field("events"));
    }
    if caller.browser.is_some() {
        for (index, event) in body.events.iter().enumerate() {
            let text = |name: &str| event.get(name).and_then(|v| v.as_str());
            crate::browser::check_subject(
                &state,
                &caller,
                text("user"),
                text("anonymous_id"),
                text("user_token"),
                &format!("events[{index}]."),
            )?;
        }
    }
    let batch: Vec<IngestItem> =
        body.events.into_iter().enumerate().map(|(index, value)| parse_event_value(value, index)).collect();
    let report = blocking(&state, move |engine| engine.ingest(batch)).await?;
    metrics::counter!("attune_events_accepted_total").increment(report.accepted as u64);
    metrics::counter!("attune_events_duplicate_total").increment(report.duplicates as u64);
    metrics::counter!("attune_events_rejected_total").increment(report.rejected.len() as u64);
    Ok(Json(EventsOut {
        accepted: report.accepted,
        duplicates: report.duplicates,
        rejected: report
            .rejected
            .into_iter()
            .map(|(index, rejection)| RejectedOut {
                index,
                code: rejection.code.as_str().to_owned(),
                message: rejection.message,
                field: rejection.field.map(|f| format!("events[{index}].{f}")),
            })
            .collect(),
        dropped_fields: report.dropped.into_iter().map(|(index, field)| DroppedOut { index, field }).collect(),
    }))
}

/// Merge an anonymous id's history into a person's.
#[utoipa::path(post, path = "/v1/identify", tag = "events", request_body = IdentifyIn,
    responses((status = 200, description = "How many events moved to the person (0 when the pair was merged before).", body = IdentifyOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_identify(
    State(state): State<AppState>,
    Auth(caller, _): Auth<VisitorEvents>,
    ApiJson(body): ApiJson<IdentifyIn>,
) -> ApiResult<Json<IdentifyOut>> {
    check_path_id(&body.anonymous_id, "anonymous_id")?;
    check_path_id(&body.user, "user")?;
    if body.force && !caller.admin {
        return Err(
            ApiError::new(Code::Forbidden, "Only an admin key may force a merge (`force`): admin.").with_field("force")
        );
    }
    // A browser key: the user's identity token, and the browser's own visitor (whose consent
    // choice alone does not make it a person of its own), or a merge repeated.
    let mut force = body.force;
    if caller.browser.is_some() {
        crate::browser::check_subject(&state, &caller, Some(&body.user), None, body.user_token.as_deref(), "")?;
        if state.engine.browser_visitor_allowed(&body.anonymous_id) {
            force = true;
        } else if state.engine.resolve(&body.anonymous_id) != state.engine.resolve(&body.user) {
            return Err(crate::browser::browser_visitor_only("anonymous_id"));
        }
    }
    let report =
        blocking(&state, move |engine| engine.identify_with(&body.anonymous_id, &body.user, &caller.key_id, force))
            .await?;
    Ok(Json(IdentifyOut { merged_events: report.merged_events }))
}

/// Undo a merge (admin): the anonymous id's history is its own again.
#[utoipa::path(delete, path = "/v1/identify/{anonymous_id}", tag = "events",
    params(("anonymous_id" = String, Path, description = "The merged anonymous id")),
    responses((status = 200, description = "Unmerged: `{\"status\": \"unmerged\"}`.", body = crate::wire::StatusOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_identify(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(anonymous_id): IdPath,
) -> ApiResult<Json<crate::wire::StatusOut>> {
    blocking(&state, move |engine| engine.unmerge(&anonymous_id, &caller.key_id)).await?;
    Ok(Json(crate::wire::StatusOut { status: "unmerged".into() }))
}

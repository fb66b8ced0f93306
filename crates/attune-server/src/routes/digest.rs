//! `POST /v1/digest`: the items of one email digest for one person, with reasons, from the same
//! decide pipeline (channel `email`), never repeating what the person's recent digests sent,
//! honouring email consent and the frequency budget shared with `POST /v1/notifications/plan`.

use attune_engine::digest::{DIGEST_SLOT, Digest, DigestRequest};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    decide::{DecideContextIn, DecidedItemOut, MAX_COUNT, decision_out, to_context},
    rfc3339,
};
use crate::{
    AppState,
    auth::{Auth, Decide},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, check_path_id},
};

/// `POST /v1/digest` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestIn {
    /// The person (a user id). An unknown id gets the non-personalized default, if email consent
    /// (the server's default for people who never answered: off) allows.
    pub user: String,
    /// How many items, 1–100 (a slot's `max_items` on the `email` channel caps it).
    #[schema(minimum = 1, maximum = 100)]
    pub count: i64,
    /// The slot whose settings, picks and rules apply (default `email_digest`).
    pub slot: Option<String>,
    /// RFC 3339: the send is not planned earlier than this (default: now).
    pub not_before: Option<String>,
    /// The moment, as for `POST /v1/decide` (`timezone`, `local_time`, `device`, ...).
    pub context: Option<DecideContextIn>,
}

/// `POST /v1/digest` answer. With no items (`items` empty, `send_at` null) `reason` says why:
/// `no_consent` (the person's email consent is off), `frequency_cap` (the shared budget — three
/// sends in any 7 days, 20 hours apart, across all channels — has no room) or `nothing_new`
/// (every candidate was sent in a recent digest, consumed or filtered out). Otherwise one send
/// is reserved from the budget at `send_at`, and the items are logged so later digests leave
/// them out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DigestOut {
    /// The person.
    pub user: String,
    /// The decision that chose the items (`dec-…`): put it on the email's links and send it back
    /// as `decision_id` (with `"channel": "email"`) on the click events they lead to. Null
    /// without items.
    pub decision_id: Option<String>,
    /// When to send, RFC 3339 (the person's learned hour, out of quiet hours), or null.
    pub send_at: Option<String>,
    /// `preferred_hour`, `default_hour`, `quiet_hours`, `as_requested` (as for
    /// `POST /v1/notifications/plan`; `frequency_cap` with a `send_at`: the budget moved the send
    /// later), or why there are no items: `no_consent`, `frequency_cap`, `nothing_new`.
    pub reason: String,
    /// The slot that was filled.
    pub slot: String,
    /// The slot's presentation variant on the email channel (null without items).
    pub variant: Option<String>,
    /// Whether the person's profile or preferences shaped the items.
    pub personalized: bool,
    /// `new`, `exploring`, `researching`, `ready_to_buy`, `customer`.
    pub journey_stage: Option<String>,
    /// The items, in order, each with its title, copy and at least one reason with `text`.
    pub items: Vec<DecidedItemOut>,
    /// Items the person's recent digests sent, left out of this one (counted also when the
    /// answer has no items: a refusal by the budget says how many were sent before).
    pub previously_sent: usize,
    /// The digest log entry (`ntf-…`, one of the person's notification plans), if a send was
    /// reserved.
    pub digest_id: Option<String>,
}

fn digest_out(user: String, slot: String, digest: Digest) -> DigestOut {
    let Digest { send_at_ms, reason, decision, previously_sent, plan_id } = digest;
    let decision = decision.map(decision_out);
    let placement = decision.as_ref().and_then(|d| d.placements.first());
    DigestOut {
        user,
        decision_id: decision.as_ref().map(|d| d.decision_id.clone()),
        send_at: send_at_ms.map(rfc3339),
        reason,
        slot,
        variant: placement.map(|p| p.variant.clone()),
        personalized: decision.as_ref().is_some_and(|d| d.personalized),
        journey_stage: decision.as_ref().map(|d| d.journey_stage.clone()),
        items: decision.and_then(|d| d.placements.into_iter().next()).map(|p| p.items).unwrap_or_default(),
        previously_sent,
        digest_id: plan_id,
    }
}

/// Build an email digest for one person: items with reasons, a send time from the shared budget,
/// never the items of their recent digests, only with email consent.
#[utoipa::path(post, path = "/v1/digest", tag = "decisions", request_body = DigestIn,
    responses((status = 200, description = "The digest's items and send time, or why there is none (`reason`).", body = DigestOut),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_digest(
    State(state): State<AppState>,
    _auth: Auth<Decide>,
    ApiJson(body): ApiJson<DigestIn>,
) -> ApiResult<Json<DigestOut>> {
    check_path_id(&body.user, "user")?;
    if !(1..=MAX_COUNT).contains(&body.count) {
        return Err(ApiError::new(Code::InvalidCount, format!("`count` is 1 to {MAX_COUNT}.")).with_field("count"));
    }
    let slot = body.slot.unwrap_or_else(|| DIGEST_SLOT.to_owned());
    check_path_id(&slot, "slot")?;
    let not_before_ms = match body.not_before.as_deref() {
        Some(text) => attune_core::validate::parse_ts_ms(text).ok_or_else(|| {
            ApiError::new(Code::InvalidTimestamp, "`not_before` must be RFC 3339.").with_field("not_before")
        })?,
        None => i64::MIN,
    };
    let context = to_context(body.context.unwrap_or_default(), attune_core::Channel::Email)?;
    let request = DigestRequest {
        user: body.user.clone(),
        count: body.count as usize,
        slot: slot.clone(),
        not_before_ms,
        context,
    };
    let digest = blocking(&state, move |engine| engine.digest(&request)).await?;
    Ok(Json(digest_out(body.user, slot, digest)))
}

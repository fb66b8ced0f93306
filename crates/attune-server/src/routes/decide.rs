//! `POST /v1/decide` and `GET /v1/items/{id}/similar`, with their wire types.

use attune_engine::decide::{DecideContext, DecideRequest, Decision, PlacementRequest};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::{Auth, Decide, VisitorDecide},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, ApiQuery, IdPath, check_path_id},
};

/// The most placements in one decision.
pub const MAX_PLACEMENTS: usize = 10;
/// The most items in one placement.
pub const MAX_COUNT: i64 = 100;

/// `POST /v1/decide` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideIn {
    /// A known person. At most one of `user` and `anonymous_id`; neither gives the
    /// non-personalized default.
    pub user: Option<String>,
    /// A device or browser.
    pub anonymous_id: Option<String>,
    /// The moment.
    pub context: Option<DecideContextIn>,
    /// 1–10 slots, each with a count of 1–100.
    #[schema(min_items = 1, max_items = 10)]
    pub placements: Vec<PlacementIn>,
    /// Explain every item (at least one reason each).
    pub explain: Option<bool>,
    /// Where the answer is shown: `web` (default), `app`, `email`, `push`, `in_person` or
    /// `offline_purchase`. Rules (`when.channel`) and slot settings (`channels`) may depend on it,
    /// and the decision log shows it. Anything else is a 400 `invalid_channel`.
    pub channel: Option<String>,
    /// With a browser key and `user`: the identity token the site's back end signed for that user.
    pub user_token: Option<String>,
}

/// The moment of a decision.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideContextIn {
    /// `mobile`, `desktop`, `tablet`.
    pub device: Option<String>,
    /// IANA time zone: places the moment, and (for a person with personalization consent) is
    /// remembered as the latest zone seen for them — their quiet hours and send hour use it
    /// unless their preferences set one or a later event names another.
    pub timezone: Option<String>,
    /// RFC 3339 with the person's offset.
    pub local_time: Option<String>,
    /// Used only with `contextual` consent.
    pub weather: Option<String>,
    /// Used only with `contextual` consent.
    pub geo: Option<String>,
    /// The page.
    pub page: Option<String>,
    /// The locale.
    pub locale: Option<String>,
}

/// One slot to fill.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementIn {
    /// Any slot name; unknown slots use the default settings.
    pub slot: String,
    /// 1–100.
    #[schema(minimum = 1, maximum = 100)]
    pub count: i64,
}

/// `POST /v1/decide` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionOut {
    /// `dec-…`: send it back as `decision_id` on events it led to.
    pub decision_id: String,
    /// Whether the person's profile or preferences shaped it.
    pub personalized: bool,
    /// `new`, `exploring`, `researching`, `ready_to_buy`, `customer`.
    pub journey_stage: String,
    /// The filled slots, in request order.
    pub placements: Vec<PlacementOut>,
    /// Experiment assignments.
    pub experiments: Vec<ExperimentArmOut>,
    /// For a browser key's visitor: a signed link (an hour) to the person's own `/me` page
    /// ("why am I seeing this"), relative to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub me_url: Option<String>,
}

/// One filled slot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlacementOut {
    /// The slot.
    pub slot: String,
    /// The presentation variant to render.
    pub variant: String,
    /// The items.
    pub items: Vec<DecidedItemOut>,
}

/// One decided item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecidedItemOut {
    /// The item id.
    pub id: String,
    /// Blended score (higher is better).
    pub score: f32,
    /// `collaborative`, `predictive`, `contextual`, `content`, `editorial`, `explore`, `popular`.
    pub source: String,
    /// Why it is shown (with `explain: true`, at least one).
    pub reasons: Vec<ReasonOut>,
    /// The item's title.
    pub title: String,
    /// The item's kind.
    pub kind: String,
    /// The copy to show for the person's journey stage.
    pub copy: CopyOut,
}

/// The chosen copy variant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CopyOut {
    /// `foundational`, `contextual` or `emotional`.
    pub variant: String,
    /// The headline of that variant (the title when the item has none).
    pub headline: String,
}

/// Why an item is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReasonOut {
    /// `similar_to`, `goal`, `affinity`, `context`, `popular_with_similar`, `editor_pick`,
    /// `explore`, `trending`, `default`.
    pub kind: String,
    /// The item it refers to (`similar_to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The tag it refers to (`goal`, `affinity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Plain words.
    pub text: String,
}

/// An experiment assignment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExperimentArmOut {
    /// The experiment.
    pub id: String,
    /// The arm.
    pub arm: String,
}

fn to_request(body: DecideIn) -> Result<DecideRequest, ApiError> {
    let channel = match &body.channel {
        Some(name) => super::parse_channel(name, "channel")?,
        None => attune_core::Channel::Web,
    };
    let subject = match (body.user, body.anonymous_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(Code::InvalidSubject, "Send at most one of `user` and `anonymous_id`.")
                .with_field("anonymous_id"));
        }
        (Some(user), None) => {
            check_path_id(&user, "user")?;
            Some(user)
        }
        (None, Some(anonymous_id)) => {
            check_path_id(&anonymous_id, "anonymous_id")?;
            Some(anonymous_id)
        }
        (None, None) => None,
    };
    if body.placements.is_empty() || body.placements.len() > MAX_PLACEMENTS {
        return Err(ApiError::new(Code::InvalidCount, format!("Send 1 to {MAX_PLACEMENTS} placements."))
            .with_field("placements"));
    }
    let mut placements = Vec::with_capacity(body.placements.len());
    for (i, placement) in body.placements.into_iter().enumerate() {
        check_path_id(&placement.slot, &format!("placements[{i}].slot"))?;
        if !(1..=MAX_COUNT).contains(&placement.count) {
            return Err(ApiError::new(Code::InvalidCount, format!("A placement's `count` is 1 to {MAX_COUNT}."))
                .with_field(format!("placements[{i}].count")));
        }
        placements.push(PlacementRequest { slot: placement.slot, count: placement.count as usize });
    }
    let context = to_context(body.context.unwrap_or_default(), channel)?;
    Ok(DecideRequest {
        subject,
        context,
        placements,
        explain: body.explain.unwrap_or(false),
        preview: false,
        exclude: Vec::new(),
    })
}

/// Checks a decision's context (and the digest's) and converts it.
pub(crate) fn to_context(context: DecideContextIn, channel: attune_core::Channel) -> Result<DecideContext, ApiError> {
    if let Some(tz) = &context.timezone
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        return Err(ApiError::new(
            Code::InvalidContext,
            "`context.timezone` is an IANA time zone such as Europe/Berlin.",
        )
        .with_field("context.timezone"));
    }
    if let Some(local) = &context.local_time
        && local.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::new(Code::InvalidTimestamp, "`context.local_time` is RFC 3339 with an offset.")
            .with_field("context.local_time"));
    }
    for (name, value) in [
        ("device", &context.device),
        ("weather", &context.weather),
        ("geo", &context.geo),
        ("page", &context.page),
        ("locale", &context.locale),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(ApiError::new(Code::InvalidContext, format!("`context.{name}` is at most 256 characters."))
                .with_field(format!("context.{name}")));
        }
    }
    Ok(DecideContext {
        device: context.device,
        timezone: context.timezone,
        local_time: context.local_time,
        weather: context.weather,
        channel,
    })
}

/// Converts a decision to its wire form.
pub fn decision_out(decision: Decision) -> DecisionOut {
    DecisionOut {
        decision_id: decision.id,
        personalized: decision.personalized,
        journey_stage: decision.journey_stage.as_str().to_owned(),
        placements: decision
            .placements
            .into_iter()
            .map(|p| PlacementOut {
                slot: p.slot,
                variant: p.variant,
                items: p
                    .items
                    .into_iter()
                    .map(|i| {
                        let headline = i
                            .item
                            .variants
                            .get(i.copy_variant)
                            .and_then(|v| v.get("headline"))
                            .and_then(|h| h.as_str())
                            .map_or_else(|| i.item.title.clone(), str::to_owned);
                        DecidedItemOut {
                            id: i.item.id.clone(),
                            score: (i.score * 1000.0).round() / 1000.0,
                            source: i.source.as_str().to_owned(),
                            reasons: i
                                .reasons
                                .into_iter()
                                .map(|r| ReasonOut {
                                    kind: r.kind.as_str().to_owned(),
                                    item: r.item,
                                    tag: r.tag,
                                    text: r.text,
                                })
                                .collect(),
                            title: i.item.title.clone(),
                            kind: i.item.kind.clone(),
                            copy: CopyOut { variant: i.copy_variant.to_owned(), headline },
                        }
                    })
                    .collect(),
            })
            .collect(),
        experiments: decision.experiments.into_iter().map(|(id, arm)| ExperimentArmOut { id, arm }).collect(),
        me_url: None,
    }
}

/// Decide what to show this person, per slot, now — and why.
#[utoipa::path(post, path = "/v1/decide", tag = "decisions", request_body = DecideIn,
    responses((status = 200, description = "The decision: items per placement, with reasons when asked.", body = DecisionOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_decide(
    State(state): State<AppState>,
    Auth(caller, _): Auth<VisitorDecide>,
    ApiJson(body): ApiJson<DecideIn>,
) -> ApiResult<Json<DecisionOut>> {
    crate::browser::check_subject(
        &state,
        &caller,
        body.user.as_deref(),
        body.anonymous_id.as_deref(),
        body.user_token.as_deref(),
        "",
    )?;
    let request = to_request(body)?;
    // A decision never touches storage (it reads memory and logs to memory), and takes about half
    // a millisecond of CPU: run it on the request's task instead of paying a hand-off to the
    // blocking pool, which measured slower under load (`attune bench decide`, `wrk`).
    let decision = state.engine.decide(&request)?;
    let subject = request.subject.clone();
    let mut out = decision_out(decision);
    if caller.browser.is_some()
        && let Some(subject) = subject
    {
        out.me_url = crate::browser::visitor_me_url(&state, subject).await;
    }
    Ok(Json(out))
}

/// `GET /v1/items/{id}/similar` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    /// 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub count: Option<i64>,
}

/// A similar item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimilarItemOut {
    /// Item id.
    pub id: String,
    /// Similarity (higher is closer).
    pub score: f32,
    /// Title.
    pub title: String,
}

/// Items similar to one item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimilarOut {
    /// Most similar first.
    pub items: Vec<SimilarItemOut>,
}

/// Items similar to an item (item-kNN; content similarity for new items).
#[utoipa::path(get, path = "/v1/items/{id}/similar", tag = "decisions", params(("id" = String, Path, description = "The item to find similar items for"), SimilarQuery),
    responses((status = 200, description = "Similar items, most similar first.", body = SimilarOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_similar(
    State(state): State<AppState>,
    _auth: Auth<Decide>,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<SimilarQuery>,
) -> ApiResult<Json<SimilarOut>> {
    let count = query.count.unwrap_or(10);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::new(Code::InvalidCount, "`count` is 1 to 100.").with_field("count"));
    }
    let items = blocking(&state, move |engine| engine.similar_items(&id, count as usize)).await?;
    Ok(Json(SimilarOut {
        items: items
            .into_iter()
            .map(|(item, score)| SimilarItemOut {
                id: item.id.clone(),
                score: (score * 1000.0).round() / 1000.0,
                title: item.title.clone(),
            })
            .collect(),
    }))
}

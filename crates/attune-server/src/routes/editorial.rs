//! Editorial control: slot settings, picks, personalization rules, flags, and the review of what
//! is recommended to whom. Editors hold `catalog:write`.

use std::collections::BTreeMap;

use attune_engine::editorial::{ChannelSettings, Conditions, Pick, Rule, RuleEffect, SlotSettings, VariantRule};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::{
    AppState,
    auth::{Auth, CatalogWrite},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, ApiQuery, IdPath},
    wire::StatusOut,
};

/// Conditions on the person and the moment; every field set must match.
#[derive(Debug, Default, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionsIo {
    /// A slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// `new`, `exploring`, `researching`, `ready_to_buy`, `customer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journey_stage: Option<String>,
    /// Any of these declared goals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<String>,
    /// A device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether the decision is personalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personalized: Option<bool>,
    /// Any of these channels (`web`, `app`, `email`, `push`, `in_person`, `offline_purchase`):
    /// `{"channel": ["email"]}` applies only to decisions and digests shown in email. Empty or
    /// absent: every channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel: Vec<String>,
}

/// Channel names are parsed here (wire names); the engine checks the rest of the conditions
/// (`Conditions::check`, through the constructors and every `put_*`).
fn to_conditions(c: ConditionsIo, field: &str) -> Result<Conditions, ApiError> {
    let mut channel: Vec<String> = Vec::with_capacity(c.channel.len());
    for (i, name) in c.channel.iter().enumerate() {
        let parsed = super::parse_channel(name, &format!("{field}.channel[{i}]"))?;
        if !channel.iter().any(|c| c == parsed.as_str()) {
            channel.push(parsed.as_str().to_owned());
        }
    }
    Ok(Conditions {
        slot: c.slot,
        journey_stage: c.journey_stage,
        goals: c.goals,
        device: c.device,
        personalized: c.personalized,
        channel,
    })
}

fn conditions_out(c: &Conditions) -> ConditionsIo {
    ConditionsIo {
        slot: c.slot.clone(),
        journey_stage: c.journey_stage.clone(),
        goals: c.goals.clone(),
        device: c.device.clone(),
        personalized: c.personalized,
        channel: c.channel.clone(),
    }
}

// ---- slots ----

/// A variant rule of a slot.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantRuleIo {
    /// When it applies.
    #[serde(default)]
    pub when: ConditionsIo,
    /// The variant (one of the slot's variants).
    pub variant: String,
}

/// `PUT /v1/slots/{slot}` body; unset fields take the defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotIn {
    /// Share of each response given to editorial picks, 0–1 (default 0.2).
    pub editorial_share: Option<f32>,
    /// Share given to serendipity, 0–1 (default 0.1).
    pub serendipity_share: Option<f32>,
    /// At most this many items per response, 1–100.
    #[schema(minimum = 1, maximum = 100)]
    pub max_items: Option<u32>,
    /// 2–3 presentation variants (default `calm_list`, `grid`).
    pub variants: Option<Vec<String>>,
    /// Variant rules, tried in order before the learned choice.
    pub rules: Option<Vec<VariantRuleIo>>,
    /// Whether items the person already consumed (viewed, read, rated, bought) may come back
    /// (default `false`: a feed of what is new to the person; `true` for a "practice again"
    /// slot). Bought and dismissed items never come back either way.
    pub repeats: Option<bool>,
    /// Settings that differ on a channel, by channel name (`web`, `app`, `email`, `push`,
    /// `in_person`, `offline_purchase`): each field set there replaces the slot's own when a
    /// decision (or an email digest) is made for that channel, e.g.
    /// `{"email": {"max_items": 3, "serendipity_share": 0, "variants": ["digest_list"]}}`.
    pub channels: Option<BTreeMap<String, SlotChannelIo>>,
}

/// A slot's settings on one channel; unset fields keep the slot's own.
#[derive(Debug, Default, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotChannelIo {
    /// Share of each response given to editorial picks, 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub editorial_share: Option<f32>,
    /// Share given to serendipity, 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serendipity_share: Option<f32>,
    /// At most this many items per response, 1–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_items: Option<u32>,
    /// 1–3 presentation variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
    /// Whether already consumed items may come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<bool>,
}

/// A slot's settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotOut {
    /// The slot.
    pub slot: String,
    /// Editorial share.
    pub editorial_share: f32,
    /// Serendipity share.
    pub serendipity_share: f32,
    /// Item cap.
    pub max_items: Option<u32>,
    /// Variants.
    pub variants: Vec<String>,
    /// Variant rules.
    pub rules: Vec<VariantRuleIo>,
    /// Whether already consumed items may come back.
    pub repeats: bool,
    /// Settings that differ per channel.
    pub channels: BTreeMap<String, SlotChannelIo>,
}

/// Every configured slot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotsOut {
    /// Slots.
    pub slots: Vec<SlotOut>,
}

fn slot_out(slot: &str, s: &SlotSettings) -> SlotOut {
    SlotOut {
        slot: slot.to_owned(),
        editorial_share: s.editorial_share,
        serendipity_share: s.serendipity_share,
        max_items: s.max_items,
        variants: s.variants.clone(),
        rules: s
            .rules
            .iter()
            .map(|r| VariantRuleIo { when: conditions_out(&r.when), variant: r.variant.clone() })
            .collect(),
        repeats: s.repeats,
        channels: s
            .channels
            .iter()
            .map(|(channel, c)| {
                (
                    channel.clone(),
                    SlotChannelIo {
                        editorial_share: c.editorial_share,
                        serendipity_share: c.serendipity_share,
                        max_items: c.max_items,
                        variants: c.variants.clone(),
                        repeats: c.repeats,
                    },
                )
            })
            .collect(),
    }
}

/// Checks one channel's settings of a slot (`field` is `channels.email`).
/// Set a slot's settings.
#[utoipa::path(put, path = "/v1/slots/{slot}", tag = "editorial", params(("slot" = String, Path, description = "The slot (slots need no declaration)")), request_body = SlotIn,
    responses((status = 200, description = "The slot's settings as stored.", body = SlotOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_slot(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(slot): IdPath,
    ApiJson(body): ApiJson<SlotIn>,
) -> ApiResult<Json<SlotOut>> {
    // One set of rules and limits for the API, the console and the demo: the engine's
    // (`SlotSettings::new`). Here only the wire is read: channel names, rule conditions.
    let defaults = SlotSettings::default();
    let mut channels = BTreeMap::new();
    for (name, c) in body.channels.unwrap_or_default() {
        let channel = super::parse_channel(&name, &format!("channels.{}", crate::error::clip(&name)))?;
        let overrides = ChannelSettings {
            editorial_share: c.editorial_share,
            serendipity_share: c.serendipity_share,
            max_items: c.max_items,
            variants: c.variants,
            repeats: c.repeats,
        };
        channels.insert(channel.as_str().to_owned(), overrides);
    }
    let mut rules = Vec::new();
    for (i, rule) in body.rules.unwrap_or_default().into_iter().enumerate() {
        rules.push(VariantRule { when: to_conditions(rule.when, &format!("rules[{i}].when"))?, variant: rule.variant });
    }
    let settings = SlotSettings::new(
        body.editorial_share.unwrap_or(defaults.editorial_share),
        body.serendipity_share.unwrap_or(defaults.serendipity_share),
        body.max_items,
        body.variants.unwrap_or(defaults.variants),
        rules,
        body.repeats.unwrap_or(defaults.repeats),
        channels,
    )?;
    let out = slot_out(&slot, &settings);
    blocking(&state, move |engine| engine.put_slot(&slot, settings, &caller.key_id)).await?;
    Ok(Json(out))
}

/// A slot's settings (defaults for a slot never configured).
#[utoipa::path(get, path = "/v1/slots/{slot}", tag = "editorial", params(("slot" = String, Path, description = "The slot")),
    responses((status = 200, description = "The slot's settings (the defaults for a slot never configured).", body = SlotOut)), security(("bearer" = [])))]
pub async fn get_slot(
    State(state): State<AppState>,
    _auth: Auth<CatalogWrite>,
    IdPath(slot): IdPath,
) -> ApiResult<Json<SlotOut>> {
    Ok(Json(slot_out(&slot, &state.engine.slot(&slot))))
}

/// Every configured slot.
#[utoipa::path(get, path = "/v1/slots", tag = "editorial", responses((status = 200, description = "Every configured slot.", body = SlotsOut)), security(("bearer" = [])))]
pub async fn list_slots(State(state): State<AppState>, _auth: Auth<CatalogWrite>) -> ApiResult<Json<SlotsOut>> {
    Ok(Json(SlotsOut { slots: state.engine.slots().iter().map(|(s, settings)| slot_out(s, settings)).collect() }))
}

// ---- picks ----

/// `PUT /v1/editorial/picks/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickIn {
    /// The item.
    pub item: String,
    /// Who it is for (`{}`: everyone).
    #[serde(default)]
    pub audience: ConditionsIo,
    /// Slots it may fill (empty: all).
    #[serde(default)]
    pub slots: Vec<String>,
    /// RFC 3339, active from.
    pub from: Option<String>,
    /// RFC 3339, active until.
    pub until: Option<String>,
    /// A note for editors.
    pub note: Option<String>,
}

/// A pick.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PickOut {
    /// Id.
    pub id: String,
    /// Item.
    pub item: String,
    /// Audience.
    pub audience: ConditionsIo,
    /// Slots.
    pub slots: Vec<String>,
    /// Active from.
    pub from: Option<String>,
    /// Active until.
    pub until: Option<String>,
    /// Note.
    pub note: Option<String>,
}

/// Every pick.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PicksOut {
    /// Picks.
    pub picks: Vec<PickOut>,
}

fn pick_out(p: &Pick) -> PickOut {
    PickOut {
        id: p.id.clone(),
        item: p.item.clone(),
        audience: conditions_out(&p.audience),
        slots: p.slots.clone(),
        from: p.from_ms.map(rfc3339),
        until: p.until_ms.map(rfc3339),
        note: p.note.clone(),
    }
}

fn optional_ts(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    value
        .map(|text| {
            attune_core::validate::parse_ts_ms(text).ok_or_else(|| {
                ApiError::new(Code::InvalidTimestamp, format!("`{field}` must be RFC 3339.")).with_field(field)
            })
        })
        .transpose()
}

/// Add or replace an editorial pick.
#[utoipa::path(put, path = "/v1/editorial/picks/{id}", tag = "editorial", params(("id" = String, Path, description = "The pick's id")), request_body = PickIn,
    responses((status = 200, description = "The pick as stored.", body = PickOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_pick(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PickIn>,
) -> ApiResult<Json<PickOut>> {
    let from_ms = optional_ts(body.from.as_deref(), "from")?;
    let until_ms = optional_ts(body.until.as_deref(), "until")?;
    let pick =
        Pick::new(id, body.item, to_conditions(body.audience, "audience")?, body.slots, from_ms, until_ms, body.note)?;
    let out = pick_out(&pick);
    blocking(&state, move |engine| engine.put_pick(pick, &caller.key_id)).await?;
    Ok(Json(out))
}

/// A pick.
#[utoipa::path(get, path = "/v1/editorial/picks/{id}", tag = "editorial",
    params(("id" = String, Path, description = "The pick's id")),
    responses((status = 200, description = "The pick.", body = PickOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_pick(
    State(state): State<AppState>,
    _auth: Auth<CatalogWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<PickOut>> {
    state.engine.pick(&id).map(|p| Json(pick_out(&p))).ok_or_else(|| ApiError::not_found("pick", &id))
}

/// Every pick.
#[utoipa::path(get, path = "/v1/editorial/picks", tag = "editorial", responses((status = 200, description = "Every pick.", body = PicksOut)), security(("bearer" = [])))]
pub async fn list_picks(State(state): State<AppState>, _auth: Auth<CatalogWrite>) -> ApiResult<Json<PicksOut>> {
    Ok(Json(PicksOut { picks: state.engine.picks().iter().map(pick_out).collect() }))
}

/// Delete a pick.
#[utoipa::path(delete, path = "/v1/editorial/picks/{id}", tag = "editorial",
    params(("id" = String, Path, description = "The pick's id")),
    responses((status = 200, description = "Deleted: `{\"status\": \"deleted\"}`.", body = StatusOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_pick(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<StatusOut>> {
    blocking(&state, move |engine| engine.delete_pick(&id, &caller.key_id)).await?;
    Ok(Json(StatusOut { status: "deleted".into() }))
}

// ---- rules ----

/// What a rule does.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleEffectIo {
    /// Boost items carrying any of these tags (score × 1.5).
    #[serde(default)]
    pub boost_tags: Vec<String>,
    /// Never show items carrying any of these tags.
    #[serde(default)]
    pub exclude_tags: Vec<String>,
    /// Show this slot variant.
    pub variant: Option<String>,
}

/// `PUT /v1/rules/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    /// When it applies.
    #[serde(default)]
    pub when: ConditionsIo,
    /// What it does.
    pub then: RuleEffectIo,
    /// Who answers for it.
    pub owner: String,
    /// `YYYY-MM-DD`: the rule is listed as due for review after it.
    pub review_by: String,
}

/// A rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleOut {
    /// Id.
    pub id: String,
    /// When.
    pub when: ConditionsIo,
    /// Then.
    pub then: RuleEffectIo,
    /// Owner.
    pub owner: String,
    /// Review date.
    pub review_by: String,
    /// Whether it is due for review.
    pub due: bool,
    /// RFC 3339.
    pub updated_at: String,
}

/// Rules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RulesOut {
    /// Rules.
    pub rules: Vec<RuleOut>,
}

fn rule_out(rule: &Rule, now_ms: i64) -> RuleOut {
    RuleOut {
        id: rule.id.clone(),
        when: conditions_out(&rule.when),
        then: RuleEffectIo {
            boost_tags: rule.then.boost_tags.clone(),
            exclude_tags: rule.then.exclude_tags.clone(),
            variant: rule.then.variant.clone(),
        },
        owner: rule.owner.clone(),
        review_by: rule.review_by.clone(),
        due: rule.due(now_ms),
        updated_at: rfc3339(rule.updated_ms),
    }
}

/// Add or replace a personalization rule.
#[utoipa::path(put, path = "/v1/rules/{id}", tag = "editorial", params(("id" = String, Path, description = "The rule's id")), request_body = RuleIn,
    responses((status = 200, description = "The rule as stored.", body = RuleOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_rule(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<RuleIn>,
) -> ApiResult<Json<RuleOut>> {
    let now_ms = state.engine.now_ms();
    let then = RuleEffect {
        boost_tags: body.then.boost_tags,
        exclude_tags: body.then.exclude_tags,
        variant: body.then.variant,
    };
    let rule = Rule::new(id, to_conditions(body.when, "when")?, then, &body.owner, body.review_by, now_ms)?;
    let out = rule_out(&rule, now_ms);
    blocking(&state, move |engine| engine.put_rule(rule, &caller.key_id)).await?;
    Ok(Json(out))
}

/// A rule.
#[utoipa::path(get, path = "/v1/rules/{id}", tag = "editorial",
    params(("id" = String, Path, description = "The rule's id")),
    responses((status = 200, description = "The rule.", body = RuleOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_rule(
    State(state): State<AppState>,
    _auth: Auth<CatalogWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<RuleOut>> {
    let now_ms = state.engine.now_ms();
    state.engine.rule(&id).map(|r| Json(rule_out(&r, now_ms))).ok_or_else(|| ApiError::not_found("rule", &id))
}

/// `GET /v1/rules` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RulesQuery {
    /// Only rules due for review.
    pub due: Option<bool>,
}

/// Rules (`?due=true`: those past their review date).
#[utoipa::path(get, path = "/v1/rules", tag = "editorial", params(RulesQuery),
    responses((status = 200, description = "The rules (only those due for review with `?due=true`).", body = RulesOut)),
    security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    _auth: Auth<CatalogWrite>,
    ApiQuery(query): ApiQuery<RulesQuery>,
) -> ApiResult<Json<RulesOut>> {
    let now_ms = state.engine.now_ms();
    let rules = state.engine.rules(query.due.unwrap_or(false));
    Ok(Json(RulesOut { rules: rules.iter().map(|r| rule_out(r, now_ms)).collect() }))
}

/// Delete a rule.
#[utoipa::path(delete, path = "/v1/rules/{id}", tag = "editorial",
    params(("id" = String, Path, description = "The rule's id")),
    responses((status = 200, description = "Deleted: `{\"status\": \"deleted\"}`.", body = StatusOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_rule(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<StatusOut>> {
    blocking(&state, move |engine| engine.delete_rule(&id, &caller.key_id)).await?;
    Ok(Json(StatusOut { status: "deleted".into() }))
}

// ---- review ----

/// `GET /v1/review/decisions` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// Only decisions that filled this slot.
    pub slot: Option<String>,
    /// RFC 3339: decisions at or after.
    pub since: Option<String>,
    /// 1–1000 (default 100).
    pub limit: Option<i64>,
}

/// An item as shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewedItemOut {
    /// Item.
    pub id: String,
    /// Source.
    pub source: String,
    /// Reasons shown.
    pub reasons: Vec<String>,
}

/// A slot as shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewedPlacementOut {
    /// Slot.
    pub slot: String,
    /// Variant.
    pub variant: String,
    /// Items.
    pub items: Vec<ReviewedItemOut>,
}

/// A decision as editors review it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewedDecisionOut {
    /// `dec-…`.
    pub decision_id: String,
    /// Pseudonymous person id (null for anonymous requests).
    pub user: Option<String>,
    /// RFC 3339.
    pub at: String,
    /// Personalized.
    pub personalized: bool,
    /// Journey stage.
    pub journey_stage: String,
    /// Where it was shown: `web`, `app`, `email`, `push`, `in_person`, `offline_purchase`.
    pub channel: String,
    /// Slots.
    pub placements: Vec<ReviewedPlacementOut>,
}

/// Recent decisions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewOut {
    /// Newest first.
    pub decisions: Vec<ReviewedDecisionOut>,
}

/// Recent decisions with items, sources and reasons: what is recommended to whom. Needs the
/// `decisions:read` scope (or admin): the log holds user ids and personal reasons.
#[utoipa::path(get, path = "/v1/review/decisions", tag = "editorial", params(ReviewQuery),
    responses((status = 200, description = "Recent decisions, newest first.", body = ReviewOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn review_decisions(
    State(state): State<AppState>,
    _auth: Auth<crate::auth::DecisionsRead>,
    ApiQuery(query): ApiQuery<ReviewQuery>,
) -> ApiResult<Json<ReviewOut>> {
    let since_ms = optional_ts(query.since.as_deref(), "since")?.unwrap_or(i64::MIN);
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(Code::InvalidCount, "`limit` is 1 to 1000.").with_field("limit"));
    }
    let slot = query.slot.clone();
    let decisions =
        blocking(&state, move |engine| engine.recent_decisions(slot.as_deref(), since_ms, limit as usize)).await?;
    Ok(Json(ReviewOut {
        decisions: decisions
            .into_iter()
            .map(|d| ReviewedDecisionOut {
                decision_id: d.id,
                user: d.person.map(|p| state.engine.pseudonym(&p)),
                at: rfc3339(d.at_ms),
                personalized: d.personalized,
                journey_stage: d.journey_stage,
                channel: d.channel,
                placements: d
                    .placements
                    .into_iter()
                    .map(|p| ReviewedPlacementOut {
                        slot: p.slot,
                        variant: p.variant,
                        items: p
                            .items
                            .into_iter()
                            .map(|(id, source, reasons)| ReviewedItemOut { id, source, reasons })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// `POST /v1/review/flags` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagIn {
    /// The item to hold back.
    pub item: String,
    /// Why (`off-brand`).
    #[serde(default)]
    pub note: String,
}

/// A flag.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagOut {
    /// Item.
    pub item: String,
    /// Note.
    pub note: String,
    /// Who flagged it (key id).
    pub key_id: String,
    /// RFC 3339.
    pub at: String,
}

/// Every flag.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagsOut {
    /// Flags.
    pub flags: Vec<FlagOut>,
}

fn flag_out(f: attune_engine::editorial::Flag) -> FlagOut {
    FlagOut { item: f.item, note: f.note, key_id: f.key_id, at: rfc3339(f.at_ms) }
}

/// Flag an item: it is held back from recommendations until cleared.
#[utoipa::path(post, path = "/v1/review/flags", tag = "editorial", request_body = FlagIn,
    responses((status = 200, description = "The flag; the item is held back until it is cleared.", body = FlagOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_flag(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    ApiJson(body): ApiJson<FlagIn>,
) -> ApiResult<Json<FlagOut>> {
    let flag = blocking(&state, move |engine| engine.flag_item(&body.item, &body.note, &caller.key_id)).await?;
    Ok(Json(flag_out(flag)))
}

/// Every flagged item.
#[utoipa::path(get, path = "/v1/review/flags", tag = "editorial", responses((status = 200, description = "Every flagged item.", body = FlagsOut)), security(("bearer" = [])))]
pub async fn list_flags(State(state): State<AppState>, _auth: Auth<CatalogWrite>) -> ApiResult<Json<FlagsOut>> {
    Ok(Json(FlagsOut { flags: state.engine.flags().into_iter().map(flag_out).collect() }))
}

/// Clear a flag: the item may be recommended again.
#[utoipa::path(delete, path = "/v1/review/flags/{item}", tag = "editorial", params(("item" = String, Path, description = "The flagged item's id")),
    responses((status = 200, description = "Cleared: `{\"status\": \"cleared\"}`.", body = StatusOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_flag(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(item): IdPath,
) -> ApiResult<Json<StatusOut>> {
    blocking(&state, move |engine| engine.clear_flag(&item, &caller.key_id)).await?;
    Ok(Json(StatusOut { status: "cleared".into() }))
}

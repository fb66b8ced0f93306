//! `GET /v1/report` (the four dimensions) and `POST /v1/notifications/plan`.

use attune_core::Purpose;
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::{
    AppState,
    auth::{Admin, Auth, Decide},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, ApiQuery, check_path_id},
};

/// `GET /v1/report` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// RFC 3339 (default: 30 days before `to`).
    pub from: Option<String>,
    /// RFC 3339, exclusive (default: now).
    pub to: Option<String>,
}

/// Behavioral: how deeply people engage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BehavioralOut {
    /// People with an event in the period.
    pub active_people: u64,
    /// Events per active person.
    pub engagement_depth: f64,
    /// Share of reading (dwell) events that reached 90 % of the page.
    pub completion: f64,
    /// Share of active people seen on two days or more.
    pub return_rate: f64,
}

/// Attitudinal: "how well does this feel tailored to you?" (1–10).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttitudinalOut {
    /// Mean survey score (null without answers).
    pub mean_survey_score: Option<f64>,
    /// Answers.
    pub count: u64,
}

/// Business.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BusinessOut {
    /// Share of active people who bought.
    pub conversion: f64,
    /// Revenue per active person.
    pub revenue_per_person: f64,
    /// Revenue.
    pub revenue: f64,
}

/// Ethical: consent, control, erasure, retention.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EthicalOut {
    /// Share of known people whose consent allows each purpose.
    #[schema(value_type = Object)]
    pub consent_rates: serde_json::Map<String, serde_json::Value>,
    /// People without personalization consent.
    pub opt_outs: u64,
    /// Erasures completed.
    pub erasures: u64,
    /// People who paused personalization.
    pub personalization_paused: u64,
    /// Stored events past their retention: must be 0.
    pub data_held_past_retention: u64,
}

/// `GET /v1/report`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportOut {
    /// Period start.
    pub from: String,
    /// Period end.
    pub to: String,
    /// Behavioral.
    pub behavioral: BehavioralOut,
    /// Attitudinal.
    pub attitudinal: AttitudinalOut,
    /// Business.
    pub business: BusinessOut,
    /// Ethical.
    pub ethical: EthicalOut,
    /// With a global holdout (`PUT /v1/holdout`): per week, personalized people against the
    /// holdout on the four dimensions (empty without one).
    pub holdout_comparison: Vec<GroupWeekOut>,
}

/// One week of one group on the four dimensions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupWeekOut {
    /// Week start, RFC 3339.
    pub week: String,
    /// `personalized` or `holdout`.
    pub group: String,
    /// Behavioral: people with an event that week.
    pub active_people: u64,
    /// Behavioral: events per active person.
    pub events_per_person: f64,
    /// Attitudinal: mean survey score (null without answers).
    pub mean_survey_score: Option<f64>,
    /// Attitudinal: answers.
    pub survey_count: u64,
    /// Business: share of active people who bought.
    pub conversion: f64,
    /// Business: revenue per active person.
    pub revenue_per_person: f64,
    /// Ethical: share of active people without personalization consent or with it paused.
    pub opt_out_rate: f64,
    /// Ethical: share of active people who said not interested.
    pub not_interested_rate: f64,
}

fn ts(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    value
        .map(|text| {
            attune_core::validate::parse_ts_ms(text).ok_or_else(|| {
                ApiError::new(Code::InvalidTimestamp, format!("`{field}` must be RFC 3339.")).with_field(field)
            })
        })
        .transpose()
}

/// The four dimensions of a period: behavioral, attitudinal, business, ethical.
#[utoipa::path(get, path = "/v1/report", tag = "measurement", params(ReportQuery),
    responses((status = 200, description = "The report for the period.", body = ReportOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_report(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Json<ReportOut>> {
    let to_ms = ts(query.to.as_deref(), "to")?.unwrap_or_else(|| state.engine.now_ms());
    let from_ms = ts(query.from.as_deref(), "from")?.unwrap_or(to_ms - 30 * 86_400_000);
    if from_ms >= to_ms {
        return Err(ApiError::new(Code::InvalidValue, "`from` is before `to`.").with_field("from"));
    }
    let report = blocking(&state, move |engine| engine.report(from_ms, to_ms)).await?;
    let ethical = &report.ethical;
    Ok(Json(ReportOut {
        from: rfc3339(report.from_ms),
        to: rfc3339(report.to_ms),
        behavioral: BehavioralOut {
            active_people: report.active_people,
            engagement_depth: report.engagement_depth,
            completion: report.completion,
            return_rate: report.return_rate,
        },
        attitudinal: AttitudinalOut { mean_survey_score: report.survey_mean, count: report.survey_count },
        business: BusinessOut {
            conversion: report.conversion,
            revenue_per_person: report.revenue_per_person,
            revenue: report.revenue,
        },
        ethical: EthicalOut {
            consent_rates: Purpose::ALL
                .iter()
                .map(|p| (p.as_str().to_owned(), serde_json::json!(ethical.consent_rate(*p))))
                .collect(),
            opt_outs: ethical.opted_out,
            erasures: ethical.erasures,
            personalization_paused: ethical.personalization_paused,
            data_held_past_retention: ethical.held_past_retention,
        },
        holdout_comparison: report
            .holdout_weeks
            .iter()
            .map(|w| GroupWeekOut {
                week: rfc3339(w.week_start_ms),
                group: w.group.into(),
                active_people: w.active_people,
                events_per_person: w.events_per_person,
                mean_survey_score: w.survey_mean,
                survey_count: w.survey_count,
                conversion: w.conversion,
                revenue_per_person: w.revenue_per_person,
                opt_out_rate: w.opt_out_rate,
                not_interested_rate: w.not_interested_rate,
            })
            .collect(),
    }))
}

/// `POST /v1/notifications/plan` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanIn {
    /// The person.
    pub user: String,
    /// `email`, `push`, `app`, `web`, `in_person` or `offline_purchase` (email and push need that
    /// consent); anything else is a 400 `invalid_channel`.
    pub channel: String,
    /// RFC 3339: not earlier than this (default: now).
    pub not_before: Option<String>,
}

/// A plan: when to send, or null, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanOut {
    /// RFC 3339, or null when nothing should be sent.
    pub send_at: Option<String>,
    /// `preferred_hour` (learned from when the person engages, in their time zone — set in their
    /// preferences or learned from their events' `context.timezone`), `default_hour` (moved out of
    /// the default quiet hours, 21:00–08:00, to 18:00: nothing learned yet), `quiet_hours`,
    /// `as_requested`, `frequency_cap` or `no_consent`.
    pub reason: String,
}

/// Plan a notification: consent, quiet hours in the person's time zone, and one frequency budget
/// across channels (a plan with a `send_at` reserves one send).
#[utoipa::path(post, path = "/v1/notifications/plan", tag = "measurement", request_body = PlanIn,
    responses((status = 200, description = "When to send (null: not now) and why.", body = PlanOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn post_plan(
    State(state): State<AppState>,
    _auth: Auth<Decide>,
    ApiJson(body): ApiJson<PlanIn>,
) -> ApiResult<Json<PlanOut>> {
    check_path_id(&body.user, "user")?;
    super::parse_channel(&body.channel, "channel")?;
    let not_before = ts(body.not_before.as_deref(), "not_before")?.unwrap_or(i64::MIN);
    let plan = blocking(&state, move |engine| engine.plan_notification(&body.user, &body.channel, not_before)).await?;
    Ok(Json(PlanOut { send_at: plan.send_at_ms.map(rfc3339), reason: plan.reason }))
}

//! Experiments (`/v1/experiments…`: define, list, stop, archive, results) and the global holdout
//! (`/v1/holdout`).

use attune_engine::experiments::{Arm, Experiment, Policy, Status, StoredExperiment};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::{Admin, Auth},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, ApiQuery, IdPath, check_path_id},
};

/// An arm.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArmIo {
    /// Name (`control`, `personalized`, …; not `holdout`).
    pub name: String,
    /// Share of everyone, 0–1 (the weights and the holdout add up to at most 1).
    pub weight: f64,
    /// `default` (the full pipeline) or `popular` (the non-personalized default).
    pub policy: String,
}

/// `PUT /v1/experiments/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentIn {
    /// The slot it runs on.
    pub slot: String,
    /// 1–10 arms; the first is the control for lift.
    pub arms: Vec<ArmIo>,
    /// Share held out (non-personalized default), 0–1 (default 0).
    pub holdout: Option<f64>,
    /// Share of everyone who may enter, 0–1 (default 1): each arm's share is coverage × weight.
    pub coverage: Option<f64>,
    /// Event types that count as conversions (`click`, `purchase`, `survey`, …).
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// An experiment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExperimentOut {
    /// Id.
    pub id: String,
    /// Slot.
    pub slot: String,
    /// Arms.
    pub arms: Vec<ArmIo>,
    /// Holdout.
    pub holdout: f64,
    /// Coverage.
    pub coverage: f64,
    /// Metrics shown first.
    pub metrics: Vec<String>,
    /// `running`, `stopped` or `archived`.
    pub status: String,
    /// The bucket ranges each arm owns.
    pub ranges: Vec<RangeOut>,
}

/// A bucket range an arm owns (of 10 000; `docs/experiments.md`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RangeOut {
    /// The arm (`holdout` for the experiment's holdout).
    pub arm: String,
    /// First bucket.
    pub start: u32,
    /// One past the last bucket.
    pub end: u32,
}

/// A test's result on the relative lift over the control.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestOut {
    /// Relative lift, (mean − control mean) / control mean.
    pub lift: f64,
    /// 95 % interval of the lift, `[low, high]`.
    pub ci: [f64; 2],
    /// Two-sided p-value.
    pub p_value: f64,
}

/// One metric in one arm.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MetricArmOut {
    /// The arm (`holdout` for the holdout).
    pub arm: String,
    /// People (for `survey_mean`: people who answered; for `erasures`: people erased).
    pub n: u64,
    /// Sum of the per-person values.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_squares: f64,
    /// CUPED covariate (the same metric over the window before exposure): sum.
    pub pre_sum: f64,
    /// CUPED covariate: sum of squares.
    pub pre_sum_squares: f64,
    /// CUPED: sum of post × pre.
    pub post_pre_sum_of_products: f64,
    /// Mean per person (for `erasures`: the count).
    pub mean: f64,
    /// Fixed-horizon test (gbstats `TwoSidedTTest`); null for the control and when it cannot be
    /// computed (a zero control mean, zero variance).
    pub lift: Option<TestOut>,
    /// Always-valid test (gbstats `SequentialTwoSidedTTest`, tuning 5 000): safe to look at daily.
    pub sequential: Option<TestOut>,
    /// CUPED-adjusted fixed-horizon test (gbstats `RegressionAdjustedStatistic`).
    pub cuped: Option<TestOut>,
}

/// One metric.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MetricOut {
    /// `click_through`, `purchase_conversion`, `revenue_per_person`, `dwell_seconds`,
    /// `return_7d`, `survey_mean`, guardrails `opt_out_or_pause`, `not_interested`, `erasures`.
    pub name: String,
    /// What it measures.
    pub description: String,
    /// `proportion`, `mean` or `count`.
    pub kind: String,
    /// Per arm, control first, holdout last.
    pub arms: Vec<MetricArmOut>,
}

/// People exposed in one arm.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExposedOut {
    /// The arm.
    pub arm: String,
    /// People whose first decision on the slot showed this arm.
    pub people: u64,
}

/// `GET /v1/experiments/{id}/results`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultsOut {
    /// The experiment.
    pub id: String,
    /// `running`, `stopped` or `archived`.
    pub status: String,
    /// The attribution window, in days.
    pub window_days: u32,
    /// Exposed people per arm.
    pub exposed: Vec<ExposedOut>,
    /// Sample-ratio-mismatch check of exposed people against the weights.
    pub srm: SrmOut,
    /// Metrics and guardrails.
    pub metrics: Vec<MetricOut>,
}

/// Sample-ratio-mismatch check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SrmOut {
    /// Chi-square p-value (gbstats `check_srm`).
    pub p_value: f64,
    /// Whether the split differs from the weights (p < 0.001): the results should not be trusted.
    pub mismatch: bool,
}

/// `GET /v1/experiments/{id}/results` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    /// Attribution window after each person's exposure, in days (1–90, default 7).
    pub window_days: Option<u32>,
}

/// `PUT /v1/holdout` body and `GET /v1/holdout`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldoutIo {
    /// Share of everyone kept on the non-personalized default on every slot, 0–0.5.
    pub share: f64,
}

/// `GET /v1/experiments`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExperimentsOut {
    /// Every experiment, by id.
    pub experiments: Vec<ExperimentOut>,
}

fn test_out(t: Option<attune_engine::stats::TestResult>) -> Option<TestOut> {
    t.map(|t| TestOut { lift: t.expected, ci: [t.ci.0, t.ci.1], p_value: t.p_value })
}

/// The wire form of results (also the console's and the gbstats cross-check's input).
pub fn results_out(id: String, r: attune_engine::experiments::ExperimentResults) -> ResultsOut {
    let describe = |name: &str| {
        attune_engine::experiments::METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| (*d).to_owned())
            .unwrap_or_default()
    };
    ResultsOut {
        id,
        status: r.status.as_str().into(),
        window_days: (r.window_ms / 86_400_000) as u32,
        exposed: r.exposed.into_iter().map(|(arm, people)| ExposedOut { arm, people }).collect(),
        srm: SrmOut { p_value: r.srm_p, mismatch: r.srm_mismatch },
        metrics: r
            .metrics
            .into_iter()
            .map(|m| MetricOut {
                description: describe(&m.name),
                name: m.name,
                kind: m.kind.into(),
                arms: m
                    .arms
                    .into_iter()
                    .map(|a| MetricArmOut {
                        arm: a.arm,
                        n: a.stats.n,
                        sum: a.stats.sum,
                        sum_squares: a.stats.sum_squares,
                        pre_sum: a.stats.pre_sum,
                        pre_sum_squares: a.stats.pre_sum_squares,
                        post_pre_sum_of_products: a.stats.post_pre_sum_of_products,
                        mean: a.mean,
                        lift: test_out(a.lift),
                        sequential: test_out(a.sequential),
                        cuped: test_out(a.cuped),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn out(stored: &StoredExperiment) -> ExperimentOut {
    let e = &stored.experiment;
    ExperimentOut {
        id: e.id.clone(),
        slot: e.slot.clone(),
        arms: e
            .arms
            .iter()
            .map(|a| ArmIo { name: a.name.clone(), weight: a.weight, policy: a.policy.as_str().into() })
            .collect(),
        holdout: e.holdout,
        coverage: e.coverage,
        metrics: e.metrics.clone(),
        status: stored.status.as_str().into(),
        ranges: stored
            .allocation
            .iter()
            .map(|s| RangeOut { arm: s.owner.clone(), start: s.start, end: s.end })
            .collect(),
    }
}

/// Define (or change) an experiment. Assignment is deterministic per person; raising a weight or
/// the coverage never moves an assigned person (each arm's bucket ranges only grow).
#[utoipa::path(put, path = "/v1/experiments/{id}", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    request_body = ExperimentIn,
    responses((status = 200, description = "The experiment as stored, with its bucket ranges.", body = ExperimentOut), (status = 400, description = "A field is invalid (`field` names it).", body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_experiment(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ExperimentIn>,
) -> ApiResult<Json<ExperimentOut>> {
    check_path_id(&body.slot, "slot")?;
    if body.arms.is_empty() || body.arms.len() > 10 {
        return Err(ApiError::new(Code::InvalidValue, "An experiment has 1 to 10 arms.").with_field("arms"));
    }
    let holdout = body.holdout.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&holdout) {
        return Err(ApiError::new(Code::InvalidValue, "`holdout` is between 0 and 1.").with_field("holdout"));
    }
    let coverage = body.coverage.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&coverage) {
        return Err(ApiError::new(Code::InvalidValue, "`coverage` is between 0 and 1.").with_field("coverage"));
    }
    let mut arms = Vec::with_capacity(body.arms.len());
    for (i, arm) in body.arms.into_iter().enumerate() {
        check_path_id(&arm.name, &format!("arms[{i}].name"))?;
        if arm.name == "holdout" || arms.iter().any(|a: &Arm| a.name == arm.name) {
            return Err(ApiError::new(Code::InvalidValue, "Arm names are unique and not `holdout`.")
                .with_field(format!("arms[{i}].name")));
        }
        if !(0.0..=1.0).contains(&arm.weight) {
            return Err(ApiError::new(Code::InvalidValue, "An arm's `weight` is between 0 and 1.")
                .with_field(format!("arms[{i}].weight")));
        }
        let policy = Policy::parse(&arm.policy).ok_or_else(|| {
            ApiError::new(Code::InvalidValue, "`policy` is `default` or `popular`.")
                .with_field(format!("arms[{i}].policy"))
        })?;
        arms.push(Arm { name: arm.name, weight: arm.weight, policy });
    }
    if holdout + arms.iter().map(|a| a.weight).sum::<f64>() > 1.0 + 1e-9 {
        return Err(
            ApiError::new(Code::InvalidValue, "The weights and the holdout add up to at most 1.").with_field("arms")
        );
    }
    for (i, metric) in body.metrics.iter().enumerate() {
        check_path_id(metric, &format!("metrics[{i}]"))?;
    }
    let experiment = Experiment { id, slot: body.slot, arms, holdout, metrics: body.metrics, coverage };
    let stored = blocking(&state, move |engine| engine.put_experiment(experiment, &caller.key_id)).await?;
    Ok(Json(out(&stored)))
}

/// An experiment.
#[utoipa::path(get, path = "/v1/experiments/{id}", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    responses((status = 200, description = "The experiment.", body = ExperimentOut), (status = 404, description = "No such experiment.", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_experiment(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ExperimentOut>> {
    state.engine.stored_experiment(&id).map(|e| Json(out(&e))).ok_or_else(|| ApiError::not_found("experiment", &id))
}

/// Every experiment (running, stopped and archived).
#[utoipa::path(get, path = "/v1/experiments", tag = "measurement",
    responses((status = 200, description = "Every experiment, by id.", body = ExperimentsOut)), security(("bearer" = [])))]
pub async fn list_experiments(State(state): State<AppState>, _auth: Auth<Admin>) -> ApiResult<Json<ExperimentsOut>> {
    Ok(Json(ExperimentsOut { experiments: state.engine.stored_experiments().iter().map(out).collect() }))
}

/// Stops an experiment: nobody is assigned or exposed any more (everyone gets the full
/// pipeline); its results stay.
#[utoipa::path(post, path = "/v1/experiments/{id}/stop", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    responses((status = 200, description = "The experiment, stopped.", body = ExperimentOut), (status = 404, description = "No such experiment.", body = ErrorBody)), security(("bearer" = [])))]
pub async fn stop_experiment(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ExperimentOut>> {
    let stored =
        blocking(&state, move |engine| engine.set_experiment_status(&id, Status::Stopped, &caller.key_id)).await?;
    Ok(Json(out(&stored)))
}

/// Archives an experiment: stopped and hidden from the console; its results stay.
#[utoipa::path(post, path = "/v1/experiments/{id}/archive", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    responses((status = 200, description = "The experiment, archived.", body = ExperimentOut), (status = 404, description = "No such experiment.", body = ErrorBody)), security(("bearer" = [])))]
pub async fn archive_experiment(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ExperimentOut>> {
    let stored =
        blocking(&state, move |engine| engine.set_experiment_status(&id, Status::Archived, &caller.key_id)).await?;
    Ok(Json(out(&stored)))
}

/// Per metric and arm: the sufficient statistics over exposed people (each person's events in the
/// attribution window after their first exposure, from the stored event log) and the analysis of
/// GrowthBook's stats engine: relative lift with a 95 % interval and p-value, the same with
/// always-valid (sequential) intervals, CUPED-adjusted; and the sample-ratio check on people.
#[utoipa::path(get, path = "/v1/experiments/{id}/results", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id"), ResultsQuery),
    responses((status = 200, description = "Results per metric and arm, with the sample-ratio check.", body = ResultsOut), (status = 400, description = "`window_days` is out of range.", body = ErrorBody), (status = 404, description = "No such experiment.", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_results(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> ApiResult<Json<ResultsOut>> {
    let days = query.window_days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(ApiError::new(Code::InvalidValue, "`window_days` is between 1 and 90.").with_field("window_days"));
    }
    let key = id.clone();
    let results = blocking(&state, move |engine| engine.experiment_results(&key, i64::from(days) * 86_400_000)).await?;
    Ok(Json(results_out(id, results)))
}

/// The global holdout.
#[utoipa::path(get, path = "/v1/holdout", tag = "measurement",
    responses((status = 200, description = "The global holdout's share (0 when there is none).", body = HoldoutIo)), security(("bearer" = [])))]
pub async fn get_holdout(State(state): State<AppState>, _auth: Auth<Admin>) -> ApiResult<Json<HoldoutIo>> {
    Ok(Json(HoldoutIo { share: state.engine.holdout().share }))
}

/// Sets the global holdout: a stable share of everyone kept on the non-personalized default
/// (what a person without personalization consent gets) on every slot, and out of every
/// experiment. Growing it moves nobody out of it; the report compares these people with the
/// personalized ones.
#[utoipa::path(put, path = "/v1/holdout", tag = "measurement", request_body = HoldoutIo,
    responses((status = 200, description = "The global holdout as stored.", body = HoldoutIo), (status = 400, description = "`share` is out of range.", body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_holdout(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    ApiJson(body): ApiJson<HoldoutIo>,
) -> ApiResult<Json<HoldoutIo>> {
    if !(0.0..=0.5).contains(&body.share) {
        return Err(ApiError::new(Code::InvalidValue, "`share` is between 0 and 0.5.").with_field("share"));
    }
    let holdout = blocking(&state, move |engine| engine.put_holdout(body.share, &caller.key_id)).await?;
    Ok(Json(HoldoutIo { share: holdout.share }))
}

//! `PUT/GET /v1/experiments/{id}` and `GET /v1/experiments/{id}/results`.

use attune_engine::experiments::{Arm, Experiment, Policy};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Admin, Auth},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, IdPath, check_path_id},
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
    /// Metrics.
    pub metrics: Vec<String>,
}

/// One arm's results.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArmResultOut {
    /// The arm (`holdout` for the holdout).
    pub arm: String,
    /// Decisions that showed it.
    pub exposures: u64,
    /// Attributed events of a metric type (events carrying the `decision_id`).
    pub conversions: u64,
    /// Conversions per exposure.
    pub rate: f64,
    /// Relative lift over the control (null for the control or without data).
    pub lift: Option<f64>,
    /// 95 % confidence interval of the lift, `[low, high]`.
    pub lift_ci: Option<[f64; 2]>,
}

/// `GET /v1/experiments/{id}/results`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultsOut {
    /// The experiment.
    pub id: String,
    /// Per arm, holdout last.
    pub arms: Vec<ArmResultOut>,
    /// Sample-ratio-mismatch check of exposures against the weights.
    pub srm: SrmOut,
}

/// Sample-ratio-mismatch check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SrmOut {
    /// Chi-square statistic.
    pub chi2: f64,
    /// Whether the split differs from the weights (p < 0.001): the results should not be trusted.
    pub mismatch: bool,
}

fn out(e: &Experiment) -> ExperimentOut {
    ExperimentOut {
        id: e.id.clone(),
        slot: e.slot.clone(),
        arms: e
            .arms
            .iter()
            .map(|a| ArmIo { name: a.name.clone(), weight: a.weight, policy: a.policy.as_str().into() })
            .collect(),
        holdout: e.holdout,
        metrics: e.metrics.clone(),
    }
}

/// Define (or change) an experiment. Assignment is deterministic per person and stays stable when
/// weights grow.
#[utoipa::path(put, path = "/v1/experiments/{id}", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    request_body = ExperimentIn,
    responses((status = 200, description = "The experiment as stored.", body = ExperimentOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
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
    let experiment = Experiment { id, slot: body.slot, arms, holdout, metrics: body.metrics };
    let reply = out(&experiment);
    blocking(&state, move |engine| engine.put_experiment(experiment, &caller.key_id)).await?;
    Ok(Json(reply))
}

/// An experiment.
#[utoipa::path(get, path = "/v1/experiments/{id}", tag = "measurement",
    params(("id" = String, Path, description = "The experiment's id")),
    responses((status = 200, description = "The experiment.", body = ExperimentOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_experiment(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ExperimentOut>> {
    state.engine.experiment(&id).map(|e| Json(out(&e))).ok_or_else(|| ApiError::not_found("experiment", &id))
}

/// Per arm: exposures, conversions, rate, lift with a 95 % interval; and a sample-ratio check.
#[utoipa::path(get, path = "/v1/experiments/{id}/results", tag = "measurement", params(("id" = String, Path, description = "The experiment's id")),
    responses((status = 200, description = "Results per arm, with the sample-ratio check.", body = ResultsOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_results(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ResultsOut>> {
    let results = state.engine.experiment_results(&id)?;
    Ok(Json(ResultsOut {
        id,
        arms: results
            .arms
            .into_iter()
            .map(|a| ArmResultOut {
                arm: a.name,
                exposures: a.counts.exposures,
                conversions: a.counts.conversions,
                rate: a.rate,
                lift: a.lift.map(|l| l.0),
                lift_ci: a.lift.map(|l| [l.1, l.2]),
            })
            .collect(),
        srm: SrmOut { chi2: results.srm_chi2, mismatch: results.srm_mismatch },
    }))
}

//! `POST /v1/models/train`, `GET /v1/models`, `GET /v1/models/jobs/{job}`.

use std::sync::Arc;

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::{
    AppState,
    auth::{Admin, Auth},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiQuery, IdPath},
};

/// A training job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobOut {
    /// `job-…`.
    pub job: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The model version it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why it failed (the previous models stay in use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<attune_engine::Job> for JobOut {
    fn from(job: attune_engine::Job) -> JobOut {
        JobOut { job: job.id, status: job.status.as_str().to_owned(), version: job.version, error: job.error }
    }
}

/// `POST /v1/models/train` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TrainQuery {
    /// Answer when training is done.
    pub wait: Option<bool>,
}

/// Retrain every model now; the new models are swapped in without a pause, and a failed training
/// keeps the previous ones.
#[utoipa::path(post, path = "/v1/models/train", tag = "models", params(TrainQuery),
    responses((status = 200, description = "The job: `running`, or finished with `?wait=true`.", body = JobOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn post_train(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    ApiQuery(query): ApiQuery<TrainQuery>,
) -> ApiResult<Json<JobOut>> {
    // The scheduler trains; this route only queues the job and reads it.
    let scheduler = Arc::clone(&state.scheduler);
    let job = tokio::task::spawn_blocking(move || -> Result<attune_engine::Job, attune_engine::EngineError> {
        let job = scheduler.queue_training(&caller.key_id)?;
        if query.wait.unwrap_or(false) {
            // A job always ends: the trainer answers it after training, a server that does not
            // train within `TRAINED_ELSEWHERE_WITHIN`, a stopping scheduler at once.
            return Ok(scheduler.wait_for(&job.id, WAIT_AT_MOST).unwrap_or(job));
        }
        Ok(job)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)?;
    Ok(Json(job.into()))
}

/// How long `?wait=true` waits at most (past the scheduler's own deadline for a job another
/// server trains).
const WAIT_AT_MOST: std::time::Duration =
    attune_engine::scheduler::TRAINED_ELSEWHERE_WITHIN.saturating_add(std::time::Duration::from_secs(60));

/// A training job's status.
#[utoipa::path(get, path = "/v1/models/jobs/{job}", tag = "models", params(("job" = String, Path, description = "The job's id, from `POST /v1/models/train`")),
    responses((status = 200, description = "The job's status.", body = JobOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    IdPath(job): IdPath,
) -> ApiResult<Json<JobOut>> {
    state.scheduler.job(&job).map(|job| Json(job.into())).ok_or_else(|| ApiError::not_found("job", &job))
}

/// One model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelOut {
    /// `served` (the ranker every decision for a person with a history uses), `popularity`,
    /// `trending` (the general ranking), `content` (declared goals, the cold start).
    pub name: String,
    /// RFC 3339 (null before the first training).
    pub trained_at: Option<String>,
    /// People trained on.
    pub users: usize,
    /// Items covered.
    pub items: usize,
    /// Events read.
    pub events: usize,
    /// Fit time.
    pub fit_seconds: f64,
    /// The model version (increases with every training).
    pub version: u64,
    /// Offline metrics of its last evaluation: P/R/NDCG/HitRate/Coverage@10 (EVAL.md). For
    /// `served`, the validation split the ranker was chosen on: each person's last 20% of the
    /// training interactions held out (people with at least five). Null for the other models
    /// and before there was data to hold out.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// For `served`: what training chose — each part's model, parameters, recency half-life and
    /// validation NDCG@10 alone, the blend weights per engagement level (history length), and
    /// `context`: the learned context effects (local hour band, device, and weather from events
    /// stored with contextual consent, each × tag) with the weight validation gave each
    /// dimension in the personal and the general ranking (0: switched off), its validation
    /// NDCG@10 without and with it, and its strongest effects.
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

/// The models in use.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelsOut {
    /// Models.
    pub models: Vec<ModelOut>,
}

/// The models in use, with when and on what they were trained.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, description = "The models in use.", body = ModelsOut)), security(("bearer" = [])))]
pub async fn list_models(State(state): State<AppState>, _auth: Auth<Admin>) -> ApiResult<Json<ModelsOut>> {
    let snapshot = state.engine.models();
    let trained_at = (snapshot.trained_at_ms > 0).then(|| rfc3339(snapshot.trained_at_ms));
    Ok(Json(ModelsOut {
        models: snapshot
            .stats
            .iter()
            .map(|s| ModelOut {
                name: s.name.to_owned(),
                trained_at: trained_at.clone(),
                users: snapshot.n_users,
                items: snapshot.n_items,
                events: snapshot.n_events,
                fit_seconds: (s.fit_seconds * 1000.0).round() / 1000.0,
                version: snapshot.version,
                metrics: s.metrics.map(|m| {
                    serde_json::json!({
                        "precision": m.precision, "recall": m.recall, "ndcg": m.ndcg, "hit_rate": m.hit_rate,
                        "coverage": m.coverage, "people": m.people,
                        "protocol": "top 10, per-person time split of the training interactions (EVAL.md)",
                    })
                }),
                params: (s.name == "served").then(|| snapshot.ranker.as_ref().map(ranker_params)).flatten(),
            })
            .collect(),
    }))
}

/// The served ranker's choices as JSON.
fn ranker_params(ranker: &attune_rank::Ranker) -> serde_json::Value {
    let report = ranker.report();
    serde_json::json!({
        "search": format!("{:?}", report.search).to_lowercase(),
        "parts": report.parts.iter().map(|p| serde_json::json!({
            "model": p.name, "params": p.params, "recency_half_life": p.half_life,
            "validation_ndcg": p.validation_ndcg,
        })).collect::<Vec<_>>(),
        "levels": report.levels.iter().map(|l| serde_json::json!({
            "min_history": l.min_history, "weights": l.weights, "validation_people": l.people,
        })).collect::<Vec<_>>(),
        "context": ranker.context().map(|context| {
            let report = context.report();
            serde_json::json!({
                "observations": report.observations,
                "rule": "a dimension is kept where its weight, chosen on half of the validation people, raises \
                         NDCG@10 on the other half by at least two standard errors; else off",
                "dimensions": report.dimensions.iter().map(|d| serde_json::json!({
                    "name": d.name, "values": d.values,
                    "personal_weight": d.personal_weight, "general_weight": d.general_weight,
                    "personal_validation_ndcg": d.personal_ndcg.map(|(without, with)| serde_json::json!({"without": without, "with": with})),
                    "general_validation_ndcg": d.general_ndcg.map(|(without, with)| serde_json::json!({"without": without, "with": with})),
                    "strongest": d.strongest.iter().map(|(value, tag, effect)| serde_json::json!({"value": value, "tag": tag, "effect": effect})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        }),
        "memory_bytes": ranker.model_bytes(),
    })
}

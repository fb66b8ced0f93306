//! Liveness, readiness, metrics and the OpenAPI document.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{AppState, wire::StatusOut};

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = StatusOut)))]
pub async fn healthz() -> Json<StatusOut> {
    Json(StatusOut { status: "ok".into() })
}

/// Ready: store open, models loaded.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = StatusOut),
        (status = 503, description = "Not ready yet: `{\"status\": \"starting\"}` until the models are loaded.", body = StatusOut)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.engine.ready() {
        Json(StatusOut { status: "ready".into() }).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(StatusOut { status: "starting".into() })).into_response()
    }
}

/// Prometheus metrics: requests by route and status, latency histograms, events, store size,
/// resident memory and the engine's estimate of its memory by part (people, catalog, models)
/// and of the models by model (`attune_model_bytes{model=…}`).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text exposition format.", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.engine.clone();
    let stats = tokio::task::spawn_blocking(move || {
        // The memory walk visits every person once: cheap per scrape, never per request.
        let memory = engine.memory_estimate();
        Ok::<_, attune_engine::EngineError>((engine.store_stats()?, engine.purge_due_ms()?, memory))
    })
    .await;
    if let Ok(Ok(((n_events, disk_bytes), purge_due_ms, memory))) = stats {
        metrics::gauge!("attune_memory_bytes", "part" => "people").set(memory.people as f64);
        metrics::gauge!("attune_memory_bytes", "part" => "catalog").set(memory.catalog as f64);
        metrics::gauge!("attune_memory_bytes", "part" => "models").set(memory.models as f64);
        // A model a later training dropped holds nothing now: its gauge goes to 0 instead of
        // keeping its last size.
        static REPORTED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
        for model in reported.iter().filter(|m| !memory.model_parts.iter().any(|(now, _)| now == *m)) {
            metrics::gauge!("attune_model_bytes", "model" => *model).set(0.0);
        }
        for (model, bytes) in &memory.model_parts {
            metrics::gauge!("attune_model_bytes", "model" => *model).set(*bytes as f64);
            if !reported.contains(model) {
                reported.push(model);
            }
        }
        drop(reported);
        if let Some(resident) = resident_bytes() {
            metrics::gauge!("process_resident_memory_bytes").set(resident as f64);
        }
        metrics::gauge!("attune_store_events").set(n_events as f64);
        metrics::gauge!("attune_store_disk_bytes").set(disk_bytes as f64);
        // When deleted bytes still in the store's files must be purged by (0: nothing waits).
        metrics::gauge!("attune_purge_due_timestamp_seconds").set(purge_due_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
    metrics::gauge!("attune_people").set(state.engine.n_people() as f64);
    metrics::gauge!("attune_catalog_items").set(state.engine.catalog().n_available() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// This process's resident memory (Linux: `/proc/self/statm`, in pages of 4 KiB).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The OpenAPI document of this API, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

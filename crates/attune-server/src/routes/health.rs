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

/// Prometheus metrics: requests by route and status, latency histograms, events, store size.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text exposition format.", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.engine.clone();
    let stats = tokio::task::spawn_blocking(move || {
        Ok::<_, attune_engine::EngineError>((engine.store_stats()?, engine.purge_due_ms()?))
    })
    .await;
    if let Ok(Ok(((n_events, disk_bytes), purge_due_ms))) = stats {
        metrics::gauge!("attune_store_events").set(n_events as f64);
        metrics::gauge!("attune_store_disk_bytes").set(disk_bytes as f64);
        // When deleted bytes still in the store's files must be purged by (0: nothing waits).
        metrics::gauge!("attune_purge_due_timestamp_seconds").set(purge_due_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
    metrics::gauge!("attune_people").set(state.engine.n_people() as f64);
    metrics::gauge!("attune_catalog_items").set(state.engine.catalog().n_available() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// The OpenAPI document of this API, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

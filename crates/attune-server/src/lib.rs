//! attune-server: the HTTP API of `API.md` on axum — routes, auth, limits, errors, OpenAPI,
//! metrics.
//!
//! Only this crate knows HTTP and the wire JSON ([`wire`]); it reaches storage only through the
//! engine. Handlers are thin: authenticate (the `Auth<Scope>` extractor, before the body is read),
//! parse (the [`extract`] extractors answer in our error shape), call the engine off the async
//! runtime ([`blocking`]), convert to wire types. Start at [`app`].
#![warn(missing_docs)]

pub mod auth;
pub mod browser;
pub mod console;
pub mod error;
pub mod extract;
pub mod limits;
pub mod me;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod wire;

use std::{sync::Arc, sync::OnceLock, time::Instant};

use attune_engine::{Engine, EngineError, Scheduler, SchedulerConfig};
use axum::{
    Router,
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use auth::AuthMode;
use error::{ApiError, ApiResult, Code};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// How requests are authenticated.
    pub auth: AuthMode,
    /// Rate limits per key (and per session on the console, per address on `/me`).
    pub limiter: Arc<limits::RateLimiter>,
    /// The admin key's own bucket (a higher rate than a scoped key's).
    pub admin_limiter: Arc<limits::RateLimiter>,
    /// Browser keys' buckets, per key and client address.
    pub browser_limiter: Arc<limits::RateLimiter>,
    /// Failed authentications per client address.
    pub failures: Arc<limits::FailureThrottle>,
    /// Console sessions (server-side; the cookie holds a random session id).
    pub sessions: Arc<console::Sessions>,
    /// Prometheus exporter.
    pub metrics: PrometheusHandle,
    /// The engine's background jobs: `POST /v1/models/train` queues a training there and
    /// `GET /v1/models/jobs/{job}` reads it. [`AppState::new`] makes one that runs queued jobs
    /// only; `attune serve` starts the full one ([`AppState::with_scheduler`]).
    pub scheduler: Arc<Scheduler>,
    /// Where `POST /v1/admin/backup` may write (`None`: backups are off).
    pub backup_dir: Option<Arc<std::path::PathBuf>>,
}

/// Failed authentications allowed per client address in [`AUTH_FAILURE_WINDOW`] by default.
pub const DEFAULT_AUTH_FAILURES: u32 = 30;

/// The window of [`DEFAULT_AUTH_FAILURES`].
pub const AUTH_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// How many times a scoped key's rate the admin key may use.
pub const ADMIN_RATE_FACTOR: f64 = 10.0;

impl AppState {
    /// State over an engine. `admin_key: None` means open mode (the binary allows it on loopback only).
    pub fn new(engine: Arc<Engine>, admin_key: Option<&str>, rate_per_second: f64) -> AppState {
        let auth = match admin_key {
            Some(key) => AuthMode::Keys { admin_hash: attune_engine::keys::hash_secret(key) },
            None => AuthMode::Open,
        };
        let admin_rate = rate_per_second * ADMIN_RATE_FACTOR;
        AppState {
            auth,
            limiter: Arc::new(limits::RateLimiter::new(rate_per_second, (rate_per_second * 2.0).max(10.0))),
            admin_limiter: Arc::new(limits::RateLimiter::new(admin_rate, (admin_rate * 2.0).max(10.0))),
            browser_limiter: Arc::new(limits::RateLimiter::new(browser::BROWSER_RATE, browser::BROWSER_BURST)),
            failures: Arc::new(limits::FailureThrottle::new(DEFAULT_AUTH_FAILURES, AUTH_FAILURE_WINDOW)),
            sessions: Arc::new(console::Sessions::default()),
            metrics: metrics_handle(),
            scheduler: Arc::new(Scheduler::start(Arc::clone(&engine), SchedulerConfig::on_demand())),
            backup_dir: None,
            engine,
        }
    }

    /// Uses `scheduler` (over the same engine) for training jobs.
    pub fn with_scheduler(mut self, scheduler: Arc<Scheduler>) -> AppState {
        self.scheduler = scheduler;
        self
    }

    /// Browser keys at `per_second` (and `burst`) per key and client address.
    pub fn with_browser_rate(mut self, per_second: f64, burst: f64) -> AppState {
        self.browser_limiter = Arc::new(limits::RateLimiter::new(per_second, burst));
        self
    }

    /// Lets `POST /v1/admin/backup` write backups under `dir`.
    pub fn with_backup_dir(mut self, dir: std::path::PathBuf) -> AppState {
        self.backup_dir = Some(Arc::new(dir));
        self
    }

    /// At most `limit` failed authentications per client address per `window` (0: no limit).
    pub fn with_auth_failures(mut self, limit: u32, window: std::time::Duration) -> AppState {
        self.failures = Arc::new(limits::FailureThrottle::new(limit, window));
        self
    }
}

/// The process-wide Prometheus recorder (installed once; tests start many apps in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Runs `f` on the engine off the async runtime (engine calls may wait for an fsync).
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> ApiResult<T> {
    let engine = Arc::clone(&state.engine);
    tokio::task::spawn_blocking(move || f(&engine)).await.map_err(ApiError::internal)?.map_err(ApiError::from)
}

/// The whole API as a router.
pub fn app(state: AppState) -> Router {
    use routes::{admin, catalog, decide, editorial, events, experiments, health, measure, models, privacy, users};
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/openapi.json", get(health::openapi))
        .route("/v1/attune.js", get(browser::get_script))
        .route("/v1/events", post(events::post_events))
        .route("/v1/identify", post(events::post_identify))
        .route("/v1/identify/{anonymous_id}", delete(events::delete_identify))
        .route("/v1/items", put(catalog::put_items))
        .route("/v1/items/{id}", get(catalog::get_item).delete(catalog::delete_item))
        .route("/v1/schemas", get(catalog::list_schemas))
        .route("/v1/schemas/{type}", put(catalog::put_schema).get(catalog::get_schema))
        .route("/v1/users/{id}", get(users::get_user).delete(privacy::delete_user))
        .route("/v1/users/{id}/history/{item}", delete(privacy::delete_history))
        .route("/v1/users/{id}/export", get(privacy::get_export))
        .route("/v1/users/{id}/me-link", post(privacy::post_me_link).delete(privacy::delete_me_link))
        .route("/v1/erasures/{receipt_id}", get(privacy::get_erasure))
        .route("/v1/admin/retention/sweep", post(privacy::post_sweep))
        .route("/v1/admin/backup", post(routes::backup::post_backup))
        .merge(
            Router::new()
                .route("/console", get(console::get_overview))
                .route("/console/login", get(console::get_login).post(console::post_login))
                .route("/console/logout", post(console::post_logout))
                .route("/console/person", get(console::get_person))
                .route("/console/editorial", get(console::get_editorial))
                .route("/console/slots", post(console::post_shares))
                .route("/console/picks", post(console::post_pick))
                .route("/console/picks/remove", post(console::post_remove_pick))
                .route("/console/flags/clear", post(console::post_clear_flag))
                .route("/console/rules", get(console::get_rules))
                .route("/console/rules/review", post(console::post_review_rule))
                .route("/console/measure", get(console::get_measure))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), console::guard)),
        )
        .merge(
            Router::new()
                .route("/me", get(me::get_page))
                .route("/me/consent", post(me::post_consent))
                .route("/me/preferences", post(me::post_preferences))
                .route("/me/forget", post(me::post_forget))
                .route("/me/export", get(me::get_export))
                .route("/me/erase", post(me::post_erase))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), me::guard)),
        )
        .route("/v1/users/{id}/consent", put(users::put_consent))
        .route("/v1/users/{id}/preferences", put(users::put_preferences))
        .route("/v1/keys", post(admin::post_key).get(admin::list_keys))
        .route("/v1/keys/{id}", delete(admin::delete_key))
        .route("/v1/audit", get(admin::get_audit))
        .route("/v1/decide", post(decide::post_decide))
        .route("/v1/report", get(measure::get_report))
        .route("/v1/experiments/{id}", put(experiments::put_experiment).get(experiments::get_experiment))
        .route("/v1/experiments/{id}/results", get(experiments::get_results))
        .route("/v1/experiments", get(experiments::list_experiments))
        .route("/v1/experiments/{id}/stop", post(experiments::stop_experiment))
        .route("/v1/experiments/{id}/archive", post(experiments::archive_experiment))
        .route("/v1/holdout", put(experiments::put_holdout).get(experiments::get_holdout))
        .route("/v1/notifications/plan", post(measure::post_plan))
        .route("/v1/digest", post(routes::digest::post_digest))
        .route("/v1/items/{id}/similar", get(decide::get_similar))
        .route("/v1/slots", get(editorial::list_slots))
        .route("/v1/slots/{slot}", put(editorial::put_slot).get(editorial::get_slot))
        .route("/v1/slots/{slot}/variants", get(routes::variants::get_slot_variants))
        .route("/v1/editorial/picks", get(editorial::list_picks))
        .route(
            "/v1/editorial/picks/{id}",
            put(editorial::put_pick).get(editorial::get_pick).delete(editorial::delete_pick),
        )
        .route("/v1/rules", get(editorial::list_rules))
        .route("/v1/rules/{id}", put(editorial::put_rule).get(editorial::get_rule).delete(editorial::delete_rule))
        .route("/v1/review/decisions", get(editorial::review_decisions))
        .route("/v1/review/flags", post(editorial::post_flag).get(editorial::list_flags))
        .route("/v1/review/flags/{item}", delete(editorial::delete_flag))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/train", post(models::post_train))
        .route("/v1/models/jobs/{job}", get(models::get_job))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), browser::cors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_host))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Open mode (no admin key, loopback only) answers only requests that name a loopback host
/// (`localhost`, `127.x.y.z`, `[::1]`, any port): a page on another site that rebinds its DNS
/// name to 127.0.0.1 sends its own name as `Host` and is refused (DNS rebinding).
async fn check_host(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let AuthMode::Open = state.auth {
        let host = request.uri().authority().map(|authority| authority.as_str().to_owned()).or_else(|| {
            request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned)
        });
        if !host.as_deref().is_some_and(auth::is_loopback_host) {
            return ApiError::new(
                Code::InvalidHost,
                "Without an admin key Attune answers only requests to localhost, 127.0.0.1 or [::1].",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "No such route; see GET /v1/openapi.json.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "This route does not accept this method; see GET /v1/openapi.json.")
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::new(Code::Internal, "Something went wrong on the server; the request may be retried.").into_response()
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| String::from("unmatched"), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("attune_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("attune_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

//! The axum application of the command API.

mod error;
pub mod extract;
pub mod routes;

pub use error::ApiError;

use crate::bus::JobCommandBus;
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use ordo_domain::{JobServices, RetryPolicy};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;

/// Settings of the HTTP layer (the command-line and environment map onto these).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Larger request bodies are refused with 413 before they are parsed.
    pub body_limit_bytes: usize,
    /// Applied to submits that leave `max_attempts` or `backoff` out.
    pub retry_defaults: RetryPolicy,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            retry_defaults: RetryPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<JobCommandBus>,
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ApiConfig>,
}

impl AppState {
    pub fn new(pool: PgPool, config: ApiConfig, services: JobServices) -> Self {
        Self::with_registry(pool, config, services, prometheus::Registry::new())
    }

    pub fn with_registry(
        pool: PgPool,
        config: ApiConfig,
        services: JobServices,
        registry: prometheus::Registry,
    ) -> Self {
        let metrics = Arc::new(Metrics::in_registry(registry));
        Self {
            bus: Arc::new(JobCommandBus::new(pool.clone(), services, metrics.clone())),
            pool,
            metrics,
            config: Arc::new(config),
        }
    }
}

/// The full application: routes, body limit, metrics middleware and problem+json fallbacks.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    Router::new()
        .merge(routes::jobs::routes())
        .merge(routes::health::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no route for {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}

/// Counts and times every request by its route template, so label values stay bounded.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.record_http(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

//! The axum application of the command API.

mod error;
pub mod extract;
pub mod routes;

pub use error::ApiError;

use crate::bus::JobCommandBus;
use crate::logs::LogSink;
use crate::metrics::Metrics;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use ordo_domain::{JobServices, RetryPolicy};
use ordo_read_model::ReadyWakeups;
use sqlx::PgPool;
use std::sync::Arc;

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
    /// The dispatch model workers claim from; without it the worker protocol answers 503.
    pub dispatch: Option<WorkerDispatch>,
    /// Where job log lines go; without it `POST /api/v1/jobs/{id}/logs` answers 503.
    pub logs: Option<LogSink>,
}

/// The Redis side of the worker protocol: the claim script, the live namespace's prefix and
/// the wake-ups of waiting claims.
#[derive(Clone)]
pub struct WorkerDispatch {
    pub dispatch: ordo_read_model::DispatchQueues,
    pub redis: redis::aio::ConnectionManager,
    pub prefix: String,
    pub wakeups: Arc<ReadyWakeups>,
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
            dispatch: None,
            logs: None,
        }
    }

    /// Serves the worker protocol from the dispatch model in `redis` under `prefix`; `client`
    /// (the same Redis) carries the subscription to wake-ups. Call within a tokio runtime.
    pub fn with_dispatch(
        self,
        redis: redis::aio::ConnectionManager,
        client: redis::Client,
        prefix: &str,
    ) -> Self {
        Self {
            dispatch: Some(WorkerDispatch {
                dispatch: ordo_read_model::DispatchQueues::new(redis.clone()),
                redis,
                prefix: prefix.to_owned(),
                wakeups: ReadyWakeups::subscribe(client, prefix),
            }),
            ..self
        }
    }

    /// Accepts job log lines and produces them with `sink`.
    pub fn with_logs(self, sink: LogSink) -> Self {
        Self {
            logs: Some(sink),
            ..self
        }
    }
}

/// The full application: [`api_routes`] with problem+json fallbacks and HTTP metrics.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.http().clone();
    ordo_common::http::finish(api_routes(state), metrics)
}

/// The routes alone, with their body limit and state but without fallbacks or the metrics
/// layer, so a process can merge them with other APIs and then call
/// [`ordo_common::http::finish`] once.
pub fn api_routes(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    Router::new()
        .merge(routes::jobs::routes())
        .merge(routes::workers::routes())
        .merge(routes::logs::routes())
        .merge(routes::health::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

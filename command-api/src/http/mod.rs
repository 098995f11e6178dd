//! The axum application of the command API: [`AppState`], what every handler shares;
//! [`extract`], request extractors; [`command`], what the routes that run commands share;
//! [`ApiError`], every answer that is not a success; [`ApiMetrics`]; one module per route group
//! under [`routes`].

pub mod command;
mod error;
pub mod extract;
mod metrics;
pub mod routes;

pub use error::ApiError;
pub use metrics::ApiMetrics;

use crate::bus::JobCommandBus;
use crate::claims::ClaimService;
use crate::metrics::CommandMetrics;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use ordo_common::health::Readiness;
use ordo_common::logs::LogSink;
use ordo_domain::{JobServices, RetryPolicy};
use prometheus::Registry;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The default body limit of a bulk submit: 1,000 jobs of 4 KiB each on average.
pub const DEFAULT_BATCH_BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// Settings of the HTTP layer (the command-line and environment map onto these).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Larger request bodies are refused with 413 before they are parsed.
    pub body_limit_bytes: usize,
    /// The same for `POST /api/v1/jobs/batch`, whose body carries up to 1,000 jobs.
    pub batch_body_limit_bytes: usize,
    /// Applied to submits that leave `max_attempts` or `backoff` out.
    pub retry_defaults: RetryPolicy,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            batch_body_limit_bytes: DEFAULT_BATCH_BODY_LIMIT_BYTES,
            retry_defaults: RetryPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<JobCommandBus>,
    pub pool: PgPool,
    pub metrics: Arc<ApiMetrics>,
    pub config: Arc<ApiConfig>,
    /// Hands jobs to workers; without it the claims of the worker protocol answer 503.
    pub claims: Option<Arc<ClaimService>>,
    /// Where job log lines go; without it `POST /api/v1/jobs/{id}/logs` answers 503.
    pub logs: Option<LogSink>,
    /// The other roles of the process (`ordo dev`'s projector), reported by `/readyz`.
    pub readiness: Readiness,
}

impl AppState {
    /// With metrics in a registry of its own.
    pub fn new(pool: PgPool, config: ApiConfig, services: JobServices) -> Self {
        Self::with_registry(pool, config, services, Registry::new())
    }

    /// With the command bus's and the API's metrics registered in `registry`, which
    /// `/metrics` then renders whole: a process running several roles exposes all of their
    /// metrics on its one endpoint.
    ///
    /// # Panics
    /// If `registry` already holds the command API's metrics (a second API on one registry).
    pub fn with_registry(
        pool: PgPool,
        config: ApiConfig,
        services: JobServices,
        registry: Registry,
    ) -> Self {
        const ONCE: &str = "the command API's metrics are registered once per registry";
        let commands = CommandMetrics::register(&registry).expect(ONCE);
        Self {
            bus: Arc::new(JobCommandBus::new(pool.clone(), services, commands)),
            pool,
            metrics: Arc::new(ApiMetrics::register(registry).expect(ONCE)),
            config: Arc::new(config),
            claims: None,
            readiness: Readiness::default(),
            logs: None,
        }
    }

    /// Serves the worker protocol from the dispatch model in `redis` under `prefix`; `client`
    /// (the same Redis) carries the subscription to wake-ups; waiting claims answer at once
    /// when `stopping` is cancelled. Call within a tokio runtime.
    pub fn with_dispatch(
        self,
        redis: redis::aio::ConnectionManager,
        client: redis::Client,
        prefix: &str,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            claims: Some(Arc::new(ClaimService::new(
                self.bus.clone(),
                redis,
                client,
                prefix,
                stopping,
            ))),
            ..self
        }
    }

    /// Writes every committed event into the read model under `prefix` at once (see
    /// [`crate::write_through`]).
    pub fn with_write_through(self, redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        self.bus.write_through_to(redis, prefix);
        self
    }

    /// Reports the readiness of the process's other roles on `/readyz`.
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        Self { readiness, ..self }
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
    // The inner limit wins: the route's layer runs after (and overrides) the outer one.
    let batch = routes::jobs::batch_routes()
        .merge(routes::workers::batch_routes())
        .layer(DefaultBodyLimit::max(state.config.batch_body_limit_bytes));
    Router::new()
        .merge(routes::jobs::routes())
        .merge(batch)
        .merge(routes::workers::routes())
        .merge(routes::logs::routes())
        .merge(routes::health::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

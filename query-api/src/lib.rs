//! The read side's HTTP API: job views, job lists, queue depths and counts, read from the Redis
//! read model the projectors write (key layout in [`ordo_read_model::keys`]), and log search
//! over ClickHouse's `logs` table. Every request is
//! scoped to the tenant of `X-Ordo-Tenant` and resolves the live namespace first, so a
//! blue/green replay switch is seen by the next request.
//!
//! Layout:
//! - [`read_model`]: the Redis side: the live namespace, bounded calls, index scans;
//! - [`view`]: a job's hash turned into its typed JSON view;
//! - [`cursor`]: the opaque pagination cursor of job lists;
//! - [`extract`]: the tenant and query-string parameters of a request;
//! - [`logs`]: log search: the query language, its SQL, the bounded ClickHouse query;
//! - [`error`]: [`QueryError`], every non-success answer, rendered as problem+json;
//! - [`mod@routes`]: one module per route group.
//!
//! [`routes()`] are the API routes alone (to merge with the command API on one port and
//! finish with [`ordo_common::http::finish`]); [`app`] is the standalone service.

pub mod cursor;
pub mod error;
pub mod extract;
pub mod logs;
pub mod read_model;
pub mod routes;
pub mod view;

pub use error::QueryError;

use axum::Router;
use logs::{LogSearchConfig, LogStore};
use ordo_common::http::{finish, HttpMetrics};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the query API (the command line and environment map onto these).
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Key prefix of the read model; `{prefix}:active` names the live namespace.
    pub prefix: String,
    /// How long a read with `min_sequence` waits when it names no `wait_ms`.
    pub default_wait: Duration,
    /// The most a read with `min_sequence` waits, whatever `wait_ms` asks.
    pub max_wait: Duration,
    /// Bound of every Redis call of a request; a slower Redis answers 503.
    pub redis_timeout: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            prefix: ordo_read_model::keys::DEFAULT_PREFIX.to_owned(),
            default_wait: Duration::from_secs(2),
            max_wait: Duration::from_secs(10),
            redis_timeout: Duration::from_secs(2),
        }
    }
}

/// What every handler shares: the Redis connection (multiplexed, cheap to clone), the
/// settings and, when configured, log search.
#[derive(Clone)]
pub struct QueryState {
    pub(crate) redis: ConnectionManager,
    pub(crate) config: Arc<QueryConfig>,
    pub(crate) logs: Option<Arc<LogStore>>,
}

impl QueryState {
    pub fn new(redis: ConnectionManager, config: QueryConfig) -> Self {
        Self {
            redis,
            config: Arc::new(config),
            logs: None,
        }
    }

    /// With log search over the ClickHouse of `config` (without it, `/api/v1/logs` answers
    /// 503).
    pub fn with_logs(self, config: LogSearchConfig) -> Self {
        Self {
            logs: Some(Arc::new(LogStore::new(config))),
            ..self
        }
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }
}

/// The API routes with their state, without fallbacks or layers (see the crate docs).
pub fn routes(state: QueryState) -> Router {
    Router::new()
        .merge(routes::jobs::routes())
        .merge(routes::queues::routes())
        .merge(routes::stats::routes())
        .merge(routes::logs::routes())
        .merge(routes::services::routes())
        .with_state(state)
}

/// The standalone service (`ordo serve query`): the API routes, `/healthz`, `/readyz` (Redis
/// answers) and `/metrics` (all of `registry`), problem+json fallbacks and HTTP metrics,
/// which are registered in `registry` (an error if they already are).
pub fn app(state: QueryState, registry: prometheus::Registry) -> prometheus::Result<Router> {
    let metrics = HttpMetrics::register(&registry)?;
    let all = routes(state.clone()).merge(routes::health::routes(state, registry));
    Ok(finish(all, metrics))
}

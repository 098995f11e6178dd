//! One error type for every answer of the query API that is not a success, rendered as RFC 9457
//! `application/problem+json` (see [`ordo_common::Problem`]).

use crate::logs::parse::ParseError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ordo_common::problem::RETRY_AFTER_SECS;
use ordo_common::Problem;
use serde_json::{json, Map};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A malformed header or query parameter; the message says what to fix.
    #[error("{0}")]
    BadRequest(String),
    /// A log query that does not parse; `position` is a 0-based character offset.
    #[error("the query does not parse: {message} (at position {position})")]
    BadQuery { message: String, position: usize },
    #[error("{0}")]
    NotFound(String),
    /// The view has not reached the sequence the client asked for within the wait.
    #[error("the read model has job {job_id} at sequence {sequence}, not yet {min_sequence}; retry shortly")]
    NotCaughtUp {
        job_id: String,
        sequence: u64,
        min_sequence: u64,
    },
    /// Redis or ClickHouse failed or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// Log search's circuit breaker is open: answered at once, retry after the cool-down.
    #[error("{detail}")]
    Paused {
        detail: String,
        retry_after_secs: u32,
    },
}

impl QueryError {
    pub(crate) fn redis(error: redis::RedisError) -> Self {
        Self::Unavailable(format!("the read model (Redis) failed: {error}"))
    }
}

impl From<ParseError> for QueryError {
    fn from(error: ParseError) -> Self {
        Self::BadQuery {
            message: error.message,
            position: error.position,
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        // The 503s are transient: the projector catches up, Redis or ClickHouse comes back.
        let problem = match self {
            QueryError::BadRequest(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
            }
            QueryError::BadQuery { position, .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", detail)
                    .with_extensions(Map::from_iter([("position".to_owned(), json!(position))]))
            }
            QueryError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, "not-found", detail),
            QueryError::NotCaughtUp {
                sequence,
                min_sequence,
                ..
            } => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-caught-up", detail)
                .retry_after(RETRY_AFTER_SECS)
                .with_extensions(Map::from_iter([
                    ("sequence".to_owned(), json!(sequence)),
                    ("min_sequence".to_owned(), json!(min_sequence)),
                ])),
            QueryError::Unavailable(_) => {
                tracing::warn!(%detail, "query failed");
                Problem::unavailable(detail)
            }
            QueryError::Paused {
                retry_after_secs, ..
            } => Problem::unavailable(detail).retry_after(retry_after_secs),
        };
        problem.into_response()
    }
}

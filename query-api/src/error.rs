//! One error type for every answer of the query API that is not a success, rendered as RFC 9457
//! `application/problem+json` (see [`ordo_common::Problem`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ordo_common::Problem;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A malformed header or query parameter; the message says what to fix.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The view has not reached the sequence the client asked for within the wait.
    #[error("the read model has job {job_id} at sequence {sequence}, not yet {min_sequence}; retry shortly")]
    NotCaughtUp {
        job_id: String,
        sequence: u64,
        min_sequence: u64,
    },
    /// Redis failed or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
}

impl QueryError {
    pub(crate) fn redis(error: redis::RedisError) -> Self {
        Self::Unavailable(format!("the read model (Redis) failed: {error}"))
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            QueryError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            QueryError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            QueryError::NotCaughtUp { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not-caught-up"),
            QueryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        if let QueryError::Unavailable(detail) = &self {
            tracing::warn!(%detail, "query failed");
        }
        let mut problem = Problem::new(status, kind, self.to_string());
        if let QueryError::NotCaughtUp {
            sequence,
            min_sequence,
            ..
        } = &self
        {
            problem
                .extensions
                .insert("sequence".into(), json!(sequence));
            problem
                .extensions
                .insert("min_sequence".into(), json!(min_sequence));
        }
        let mut response = problem.into_response();
        // Both 503s are transient: the projector catches up, Redis comes back.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

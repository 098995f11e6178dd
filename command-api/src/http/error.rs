//! One error type for every HTTP answer that is not a success, rendered as RFC 9457
//! `application/problem+json` with a `detail` that tells the client what to fix.

use crate::bus::CommandError;
use crate::claims::ClaimError;
use crate::reports::ReportError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ordo_common::Problem;
use ordo_domain::{JobError, ValidationError};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Command(#[from] CommandError),
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        match error {
            ReportError::Invalid(e) => ApiError::Validation(e),
            ReportError::Command(e) => ApiError::Command(e),
        }
    }
}

impl From<ClaimError> for ApiError {
    fn from(error: ClaimError) -> Self {
        match error {
            ClaimError::Command(e) => ApiError::Command(e),
            unavailable @ (ClaimError::Unavailable(_) | ClaimError::Rebuilding(_)) => {
                ApiError::Unavailable(unavailable.to_string())
            }
        }
    }
}

impl ApiError {
    /// The problem document with `detail`: status, a stable, machine-readable type (a relative
    /// URI reference, per RFC 9457) and the members that say more.
    fn problem(&self, detail: String) -> Problem {
        let (status, kind) = match self {
            // Transient: the same request may succeed once the dependency is back.
            ApiError::Unavailable(_) | ApiError::Command(CommandError::Unavailable(_)) => {
                return Problem::unavailable(detail);
            }
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ApiError::Validation(e) => return Problem::validation(e),
            ApiError::NotFound(_)
            | ApiError::Command(CommandError::Rejected(JobError::NotFound)) => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            ApiError::Command(CommandError::Rejected(_)) => {
                (StatusCode::CONFLICT, "invalid-transition")
            }
            ApiError::Command(CommandError::Conflict) => {
                (StatusCode::CONFLICT, "concurrency-conflict")
            }
            ApiError::Command(CommandError::IdempotencyMismatch) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused")
            }
            ApiError::Command(CommandError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal-error")
            }
        };
        Problem::new(status, kind, detail).with_extensions(self.extensions())
    }

    fn extensions(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        if let ApiError::Command(CommandError::Rejected(e)) = self {
            if let Some(status) = rejected_status(e) {
                extra.insert("current_status".into(), json!(status));
            }
        }
        extra
    }
}

fn rejected_status(error: &JobError) -> Option<ordo_domain::JobStatus> {
    match error {
        JobError::NotFound => None,
        JobError::AlreadyExists { status }
        | JobError::InvalidTransition { status, .. }
        | JobError::StaleAttempt { status, .. }
        | JobError::NotDue { status, .. }
        | JobError::LeaseNotExpired { status, .. } => Some(*status),
    }
}

impl ApiError {
    /// The problem document this error answers with (one job's answer inside a batch, too).
    pub fn into_problem(self) -> Problem {
        let detail = match &self {
            // Internal details go to the log, not to the client.
            ApiError::Command(CommandError::Internal(e)) => {
                tracing::error!(error = %e, "command failed");
                "internal error; the request was not applied".to_owned()
            }
            other => other.to_string(),
        };
        self.problem(detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_problem().into_response()
    }
}

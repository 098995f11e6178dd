//! One error type for every HTTP answer that is not a success, rendered as RFC 9457
//! `application/problem+json` with a `detail` that tells the client what to fix.

use crate::bus::CommandError;
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

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Command(e) => match e {
                CommandError::Rejected(JobError::NotFound) => StatusCode::NOT_FOUND,
                CommandError::Rejected(_) | CommandError::Conflict => StatusCode::CONFLICT,
                CommandError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
                CommandError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                CommandError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// A stable, machine-readable problem type (a relative URI reference, per RFC 9457).
    fn kind(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation(_) => "validation-error",
            ApiError::NotFound(_) => "not-found",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Command(e) => match e {
                CommandError::Rejected(JobError::NotFound) => "not-found",
                CommandError::Rejected(_) => "invalid-transition",
                CommandError::Conflict => "concurrency-conflict",
                CommandError::IdempotencyMismatch => "idempotency-key-reused",
                CommandError::Unavailable(_) => "unavailable",
                CommandError::Internal(_) => "internal-error",
            },
        }
    }

    fn extensions(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        match self {
            ApiError::Validation(e) => {
                extra.insert("field".into(), json!(e.field));
                extra.insert("reason".into(), json!(e.reason));
            }
            ApiError::Command(CommandError::Rejected(e)) => {
                if let Some(status) = rejected_status(e) {
                    extra.insert("current_status".into(), json!(status));
                }
            }
            _ => {}
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match &self {
            // Internal details go to the log, not to the client.
            ApiError::Command(CommandError::Internal(e)) => {
                tracing::error!(error = %e, "command failed");
                "internal error; the request was not applied".to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            status: self.status(),
            kind: self.kind(),
            detail,
            extensions: self.extensions(),
        }
        .into_response()
    }
}

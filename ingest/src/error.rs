//! [`IngestError`]: every refusal of a log request, whatever its protocol. The status, the
//! Retry-After and the reason (the `reason` label of the metrics) are decided here once; each
//! protocol only renders them in its own shape (problem+json for Ordo's API and Loki's push,
//! `google.rpc.Status` for OTLP, Elasticsearch's error object for `_bulk`).

use axum::http::StatusCode;
use ordo_common::Problem;
use ordo_domain::ValidationError;
use serde_json::{json, Map};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The body cannot be read as the protocol's format (400).
    #[error("{detail}")]
    Malformed {
        detail: String,
        /// The position of the line at fault in the request, when there is one.
        index: Option<usize>,
    },
    /// A header is unusable (400).
    #[error("{0}")]
    BadRequest(String),
    /// A line is well-formed but a field is not acceptable (422).
    #[error("{}{error}", at(*index))]
    Invalid {
        error: ValidationError,
        index: Option<usize>,
    },
    #[error(
        "the request body is over the limit of {limit} bytes{}",
        if *decompressed { " once decompressed" } else { "" }
    )]
    TooLarge { limit: usize, decompressed: bool },
    #[error("the request body did not arrive within {secs} s")]
    SlowBody { secs: u64 },
    #[error("a request may carry at most {limit} log lines; send smaller batches")]
    TooManyLines { limit: usize },
    #[error("{0}")]
    Unsupported(String),
    /// A path under a protocol's prefix that this role does not serve (404).
    #[error("{0}")]
    NotFound(String),
    /// A route of a protocol's prefix called with a method it does not serve (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error(
        "tenant {tenant} is over its log ingest limit (lines or bytes per second); \
         retry in {retry_after_secs} s"
    )]
    RateLimited {
        tenant: String,
        retry_after_secs: u32,
    },
    #[error("too many log requests in progress on this server; retry")]
    Busy,
    #[error("{0}")]
    Unavailable(String),
}

fn at(index: Option<usize>) -> String {
    index.map_or_else(String::new, |i| format!("line {i}: "))
}

impl IngestError {
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed {
            detail: detail.into(),
            index: None,
        }
    }

    /// Field `field` of line `index` is refused for `reason`.
    pub fn invalid(index: Option<usize>, field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            error: ValidationError::new(field, reason),
            index,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } | Self::TooManyLines { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` label of the refusal metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } | Self::BadRequest(_) | Self::SlowBody { .. } => "malformed",
            Self::Invalid { .. } => "invalid",
            Self::TooLarge { .. } | Self::TooManyLines { .. } => "too_large",
            Self::Unsupported(_) | Self::NotFound(_) | Self::MethodNotAllowed(_) => "unsupported",
            Self::RateLimited { .. } => "rate_limited",
            Self::Busy => "busy",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Seconds a client should wait before it sends the request again, for the transient
    /// refusals (429, 503).
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Busy | Self::Unavailable(_) => Some(ordo_common::problem::RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The problem+json document (Ordo's API and Loki's push): `index` names the line at
    /// fault, `field` and `reason` the field of a 422.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        let problem = match self {
            Self::Invalid { error, .. } => Problem::validation(error),
            Self::Malformed { .. } | Self::BadRequest(_) => {
                Problem::new(self.status(), "malformed-body", detail.clone())
            }
            Self::SlowBody { .. } => Problem::new(self.status(), "request-timeout", detail.clone()),
            Self::TooLarge { .. } | Self::TooManyLines { .. } => {
                Problem::new(self.status(), "payload-too-large", detail.clone())
            }
            Self::Unsupported(_) => {
                Problem::new(self.status(), "unsupported-media-type", detail.clone())
            }
            Self::NotFound(_) => Problem::new(self.status(), "not-found", detail.clone()),
            Self::MethodNotAllowed(_) => {
                Problem::new(self.status(), "method-not-allowed", detail.clone())
            }
            Self::RateLimited { .. } => Problem::new(self.status(), "rate-limited", detail.clone()),
            Self::Busy | Self::Unavailable(_) => Problem::unavailable(detail.clone()),
        };
        let mut problem = Problem { detail, ..problem };
        if let Some(secs) = self.retry_after_secs() {
            problem = problem.retry_after(secs);
        }
        match self {
            Self::Malformed {
                index: Some(index), ..
            }
            | Self::Invalid {
                index: Some(index), ..
            } => problem.with_extensions(Map::from_iter([("index".to_owned(), json!(index))])),
            _ => problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_field_names_its_line_and_field() {
        let error = IngestError::invalid(Some(3), "level", "unknown level \"loud\"");
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem = error.problem().to_json();
        assert_eq!(problem["type"], "/problems/validation-error");
        assert_eq!(problem["index"], 3);
        assert_eq!(problem["field"], "level");
        assert_eq!(problem["detail"], "line 3: level: unknown level \"loud\"");
    }

    #[test]
    fn transient_refusals_say_when_to_come_back() {
        let limited = IngestError::RateLimited {
            tenant: "acme".into(),
            retry_after_secs: 3,
        };
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.problem().retry_after_secs, Some(3));
        assert_eq!(IngestError::Busy.retry_after_secs(), Some(1));
        assert_eq!(IngestError::malformed("x").retry_after_secs(), None);
        let too_large = IngestError::TooLarge {
            limit: 10,
            decompressed: true,
        };
        assert_eq!(
            too_large.to_string(),
            "the request body is over the limit of 10 bytes once decompressed"
        );
        assert_eq!(too_large.reason(), "too_large");
    }
}

//! The built-in handlers, for tests, benchmarks, demos and plain HTTP calls. Each file holds
//! one handler, its payload shape and its tests.

mod fail;
mod http;
mod noop;
mod sleep;

pub use fail::Fail;
pub use http::{Http, MAX_BODY_BYTES};
pub use noop::Noop;
pub use sleep::Sleep;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::handler::JobFailure;

/// Reads a handler's payload; a payload that does not fit is an [`invalid_payload`].
fn parse_payload<T: DeserializeOwned>(
    handler: &str,
    shape: &str,
    payload: &Value,
) -> Result<T, JobFailure> {
    T::deserialize(payload).map_err(|e| invalid_payload(handler, shape, e))
}

/// A permanent failure naming the handler, what is wrong and the expected shape.
fn invalid_payload(handler: &str, shape: &str, problem: impl std::fmt::Display) -> JobFailure {
    JobFailure::permanent(format!(
        "{handler}: invalid payload ({problem}); expected {shape}"
    ))
}

/// Asserts that `failure` is the permanent invalid-payload failure of `handler` for
/// `payload`, and that it mentions `problem`.
#[cfg(test)]
fn assert_invalid_payload(failure: &JobFailure, handler: &str, payload: &Value, problem: &str) {
    assert!(!failure.retryable, "{payload}");
    assert!(
        failure
            .error
            .starts_with(&format!("{handler}: invalid payload (")),
        "{}",
        failure.error
    );
    assert!(
        failure.error.contains(problem),
        "{payload}: {}",
        failure.error
    );
}

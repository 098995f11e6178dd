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

/// Reads a handler's payload; a payload that does not fit is a permanent failure naming the
/// handler, the expected shape and what is wrong.
fn parse_payload<T: DeserializeOwned>(
    handler: &str,
    shape: &str,
    payload: &Value,
) -> Result<T, JobFailure> {
    T::deserialize(payload).map_err(|e| {
        JobFailure::permanent(format!(
            "{handler}: invalid payload ({e}); expected {shape}"
        ))
    })
}

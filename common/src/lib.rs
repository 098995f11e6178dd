//! What several Ordo services share, kept small so dependency arrows stay one-way
//! (`ordo` → services → `common` → `domain`):
//!
//! - [`backoff`]: exponential backoff with jitter for retry loops;
//! - [`http`]: what the HTTP APIs share: the tenant header, problem+json fallbacks, HTTP
//!   metrics, and [`http::finish`], which adds them once to the merged routes of a process;
//! - [`kafka`]: client settings, librdkafka logs forwarded to `tracing`, the idempotent
//!   producer and topic creation;
//! - [`problem`]: RFC 9457 `application/problem+json` answers, the error shape of every API;
//! - [`worker_protocol`]: the JSON of the worker protocol, for the server and for workers.

pub mod backoff;
pub mod http;
pub mod kafka;
pub mod problem;
pub mod worker_protocol;

pub use backoff::Backoff;
pub use problem::Problem;

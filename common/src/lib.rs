//! What several Ordo services share, kept small so dependency arrows stay one-way
//! (`ordo` → services → `common` → `domain`):
//!
//! - [`db`]: the PostgreSQL pool (with timeouts), the embedded `migrations/postgres`, and
//!   scratch databases for tests and benchmarks;
//! - [`health`]: the readiness of each role of a process, for `/readyz`;
//! - [`http`]: what the HTTP APIs share: the tenant header, problem+json fallbacks, HTTP
//!   metrics, and [`http::finish`], which adds them once to the merged routes of a process;
//! - [`logs`]: the producer of topic `ordo.logs` and the metrics of log ingestion;
//! - [`kafka`]: client settings, librdkafka logs forwarded to `tracing`, the idempotent
//!   producer and topic creation;
//! - [`problem`]: RFC 9457 `application/problem+json` answers, the error shape of every API.
//!
//! The worker protocol's JSON, the tenant header and `Backoff` live in `ordo-protocol`, which
//! workers embed without this crate's Kafka and HTTP server dependencies.

pub mod db;
pub mod health;
pub mod http;
pub mod kafka;
pub mod logs;
pub mod problem;

pub use problem::Problem;

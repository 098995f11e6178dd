//! The command side of Ordo: the PostgreSQL event store with its transactional outbox, the
//! command bus that runs the `Job` aggregate against it, and the HTTP API in front of both.
//!
//! Layout:
//! - [`store`]: the cqrs-es repository that appends events and outbox rows in one statement.
//! - [`bus`]: loads a job, runs a command, commits the events; returns the job's new sequence.
//! - [`cache`]: the state each command left behind, so the next one on the job need not load it.
//! - [`http`]: the axum application: [`http::router`], request extractors, problem+json errors,
//!   one module per route group under [`http::routes`].
//! - [`logs`]: job log lines to Kafka (`ordo.logs`), the record that goes on the wire.
//! - [`reaper`]: the lease reaper, which expires the leases of silent workers.
//! - [`metrics`]: Prometheus instruments of this service.

pub mod bus;
pub mod cache;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod reaper;
pub mod store;

pub use bus::{CommandError, CommandOutcome, JobCommandBus};
pub use http::{router, ApiConfig, AppState};
pub use metrics::Metrics;

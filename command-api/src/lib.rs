//! The command side of Ordo: the PostgreSQL event store with its transactional outbox, the
//! command bus that runs the `Job` aggregate against it, and the HTTP API in front of both.
//!
//! Layout:
//! - [`store`]: the cqrs-es repository that appends events and outbox rows in one statement.
//! - [`bus`]: loads a job, runs a command, commits the events; returns the job's new sequence.
//! - [`cache`]: the state each command left behind, so the next one on the job need not load it.
//! - [`metrics`]: the bus's Prometheus instruments ([`CommandMetrics`]).
//! - [`claims`]: how workers get jobs: the claim from the dispatch model in Redis, long-poll
//!   and wake-ups, the `Start` commands, claims put back when they could not start.
//! - [`reports`]: how workers report the end of their attempts (complete, fail, release), one
//!   at a time or many in one call.
//! - [`reaper`]: the lease reaper, which expires the leases of silent workers; it needs only
//!   a bus, so `ordo serve reaper` runs without the HTTP side.
//! - [`http`]: the axum application: [`http::router`], [`AppState`], request extractors,
//!   problem+json errors, the helpers of command routes ([`http::command`]), the API's
//!   metrics, one module per route group under [`http::routes`]. Handlers parse, call the
//!   bus or a service, and render.

pub mod bus;
pub mod cache;
pub mod claims;
pub mod http;
pub mod metrics;
pub mod reaper;
pub mod reports;
pub mod store;
pub mod write_through;

pub use bus::{CommandError, CommandOutcome, JobCommandBus, NewJob, MAX_BATCH_JOBS};
pub use http::{router, ApiConfig, AppState, DEFAULT_BATCH_BODY_LIMIT_BYTES};
pub use metrics::CommandMetrics;

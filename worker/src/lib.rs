//! Ordo's worker runtime: the code that runs claimed jobs.
//!
//! - [`handler`] is the contract with the code doing a job's work: [`JobHandler`] gets a
//!   [`JobContext`] (payload, attempt, timeout, cancellation token) and returns a result or a
//!   [`JobFailure`] that says whether to retry;
//! - [`registry`] holds the handlers by job type ([`Handlers`]); [`Handlers::run`] hands an
//!   attempt to the handler of its type (an unknown type is a permanent failure);
//! - [`supervisor`] runs that attempt: timeouts, cancellation and panics all end in an
//!   [`AttemptOutcome`] ([`outcome`]), so the claim loop only reports it;
//! - [`builtin`] holds the handlers every worker has: `noop`, `sleep` and `fail` for tests,
//!   benchmarks and demos, `http` for real calls;
//! - [`log`] is where a handler writes its job's log lines;
//! - [`client`] speaks the worker protocol to the command API ([`ClientError`] when a call
//!   fails);
//! - [`runtime`] is the claim loop: claims, heartbeats, reports, graceful shutdown;
//! - [`reports`] carries how attempts ended to the API, on the next claim or many per call;
//! - [`metrics`] holds its Prometheus instruments.
//!
//! Users embed their own handlers by implementing [`JobHandler`] and registering it.

pub mod builtin;
pub mod client;
pub mod handler;
pub mod log;
pub mod metrics;
pub mod outcome;
pub mod registry;
pub mod reports;
pub mod runtime;
pub mod supervisor;

pub use client::{ApiClient, ClientError};
pub use handler::{JobContext, JobFailure, JobHandler};
pub use log::JobLog;
pub use metrics::WorkerMetrics;
pub use ordo_protocol::jobs::{BatchJobResult, NewJob};
pub use outcome::AttemptOutcome;
pub use registry::Handlers;
pub use runtime::WorkerConfig;
pub use supervisor::DEFAULT_CANCEL_GRACE;

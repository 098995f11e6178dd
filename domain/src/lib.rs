//! The Ordo domain: the `Job` aggregate and everything it needs to decide, with no I/O.
//!
//! Layout:
//! - [`job`]: the cqrs-es [`Job`] aggregate: state, command handling, event application.
//! - [`command`] and [`event`]: what can be asked of a job and what happened to it.
//! - [`spec`]: validated value types (newtypes) parsed at the edge: names, queues, priority, labels.
//! - [`validation`]: [`ValidationError`], what a parse at the edge (spec, retry policy) refuses.
//! - [`retry`]: the retry policy and its exponential backoff with full jitter.
//! - [`services`]: the injected clock and random source, so decisions are reproducible in tests.
//! - [`envelope`]: the event envelope that goes on the wire (outbox payload, Kafka value).
//! - [`error`]: domain errors; each names the job's current state.
//! - [`sample`]: sample job histories for benchmarks and tests of the read side.

pub mod command;
pub mod envelope;
pub mod error;
pub mod event;
pub mod job;
pub mod retry;
pub mod sample;
pub mod services;
pub mod spec;
pub mod status;
pub mod validation;

pub use command::JobCommand;
pub use envelope::{CommandMetadata, EventEnvelope};
pub use error::JobError;
pub use event::JobEvent;
pub use job::Job;
pub use retry::RetryPolicy;
pub use services::{
    Clock, FixedJitter, Jitter, JobServices, ManualClock, SystemClock, ThreadRngJitter,
};
pub use spec::JobSpec;
pub use status::JobStatus;
pub use validation::ValidationError;

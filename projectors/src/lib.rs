//! Ordo's projectors: the read models built from the event stream. What the Redis read model
//! looks like, and every write to it, is `ordo-read-model`'s; this crate decides when to write.
//!
//! - [`projector`] is the Kafka consumer loop (`ordo serve projector`): batches, offsets
//!   stored after the write, gaps waited on, unknown records parked;
//! - [`replay`] rebuilds or repairs the read model from the PostgreSQL event store
//!   (`ordo replay`), and diffs a live namespace against a replay;
//! - [`metrics`] holds its Prometheus instruments.

pub mod metrics;
pub mod projector;
pub mod replay;

pub use metrics::ProjectorMetrics;
pub use projector::{run, ProjectorConfig};

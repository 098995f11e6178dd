//! Ordo's projectors: the read models built from the event stream.
//!
//! - [`view`] computes, from one event alone, what it changes in a job's view (pure);
//! - [`redis_views`] applies those changes with a sequence-checked Lua script, so duplicates
//!   and redeliveries change nothing and a gap is refused rather than skipped;
//! - [`dispatch`] claims jobs for workers from the dispatch sets (one atomic Lua script);
//! - [`lock`] is a Redis singleton lock with fencing tokens (the lease reaper);
//! - [`keys`] is the Redis key layout, shared with the query API;
//! - [`namespace`] resolves and switches the live namespace (blue/green replays);
//! - [`replay`] rebuilds or repairs it from the PostgreSQL event store (`ordo replay`), and
//!   diffs a live namespace against a replay;
//! - [`projector`] is the Kafka consumer loop (`ordo serve projector`): batches, offsets
//!   committed after the write, gaps waited on, unknown records parked;
//! - [`metrics`] holds its Prometheus instruments.

pub mod dispatch;
pub mod keys;
pub mod lock;
pub mod metrics;
pub mod namespace;
pub mod projector;
pub mod redis_views;
pub mod replay;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod view;

pub use metrics::ProjectorMetrics;
pub use projector::{run, ProjectorConfig};
pub use redis_views::{Outcome, RedisViews};
pub use view::{Dispatch, ViewUpdate};

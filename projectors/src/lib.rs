//! Ordo's projectors: the read models built from the event stream. What the Redis read model
//! looks like, and every write to it, is `ordo-read-model`'s; this crate decides when to write.
//!
//! - [`projector`] is the Kafka consumer loop (`ordo serve projector`), the same for every
//!   read model: batches by size and time, offsets stored after the write, gaps waited on,
//!   unreadable records parked, a circuit breaker around the sink; one file per job, and the
//!   [`Sink`] trait a read model implements;
//! - [`sinks`] are the read models, one module each: [`sinks::redis_views`] (job views and
//!   dispatch queues in Redis), [`sinks::clickhouse::logs`] (log lines in ClickHouse,
//!   exactly once) and [`sinks::clickhouse::history`] (job events in ClickHouse);
//! - [`replay`] rebuilds or repairs the Redis read model from the PostgreSQL event store
//!   (`ordo replay`), and diffs a live namespace against a replay; [`replay::history`] does
//!   the same for the ClickHouse job history;
//! - [`rebuild`] heals a lost read model: the projector role rebuilds it from the event store
//!   when Redis comes back without it;
//! - [`metrics`] holds the Prometheus instruments, labelled by projector.

pub mod metrics;
pub mod projector;
pub mod rebuild;
pub mod replay;
pub mod sinks;

pub use metrics::{LogSinkMetrics, ProjectorMetricFamilies, ProjectorMetrics, RebuildMetrics};
pub use projector::{run, ProjectorConfig, Sink};
pub use sinks::redis_views::{run as run_redis_views, RedisViews};

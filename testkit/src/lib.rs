//! What Ordo's integration tests share. Every test talks to the real services of the local
//! stack (`make services`) and gets its own piece of each, so tests run side by side and never
//! see each other's data:
//!
//! - [`stack`]: the addresses of the local stack (`ORDO_DATABASE_URL`, `ORDO_REDIS_URL`,
//!   `ORDO_KAFKA_BROKERS`, `ORDO_CLICKHOUSE_URL`) and names no other run uses;
//! - [`TestDb`]: a migrated scratch database, dropped with the value;
//! - [`TestPrefix`]: a Redis key prefix, its keys deleted with the value;
//! - [`TestClickHouse`]: a ClickHouse database name, the database dropped with the value;
//! - [`kafka`]: a topic read back from the beginning, records with their headers;
//! - [`http`]: a router served on an ephemeral port, and assertions on JSON and problem+json
//!   answers;
//! - [`domain`]: command metadata and tenants for tests that drive the domain directly;
//! - [`events`]: job specs, events and envelopes as the write side would publish them.

pub mod clickhouse;
pub mod domain;
pub mod events;
pub mod http;
pub mod kafka;
pub mod stack;

mod db;
mod prefix;

pub use clickhouse::TestClickHouse;
pub use db::TestDb;
pub use prefix::TestPrefix;

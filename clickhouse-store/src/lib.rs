//! The ClickHouse side of Ordo's read models: connection settings, the schema migrations,
//! the row types.
//!
//! - [`ClickHouseConfig`]: URL, user, password, database, the bound of every call, log
//!   retention; [`ClickHouseConfig::client`] makes the official `clickhouse` crate's client
//!   (LZ4-compressed inserts, `RowBinaryWithNamesAndTypes` with schema validation, its
//!   defaults);
//! - [`migrate`]: applies `migrations/clickhouse/*.sql` (embedded at build time) in order and
//!   records each in `schema_migrations` with its checksum, then applies the log retention;
//!   [`Migrator`] is the runner itself;
//! - [`LogRow`] and [`JobEventRow`]: one row of `logs` and of `job_events`, as the sinks
//!   insert them and readers fetch them. The README's "Log and history schema" documents
//!   both tables as a contract;
//! - [`LogsTable`]: `logs` and `sink_offsets` as the logs sink uses them (batches in, the
//!   highest stored offset per Kafka partition, the removal of a crashed batch's rows, where
//!   the sink stands per partition);
//! - [`JobEventsTable`]: `job_events` as the history sink and `ordo replay` use it (batches
//!   in, job types and queues, a scratch table exchanged with the live one, comparisons);
//! - [`active_services`]: the service registry that materialized views on `logs` fill.
//!
//! # Exactly-once from Kafka into `logs`
//!
//! `job_events` needs nothing: a redelivered event has the same (tenant, job_id, sequence)
//! and ReplacingMergeTree keeps one copy. `logs` has no natural key (two identical lines may
//! both be real), so its sink makes its writes exactly-once itself, with what this crate
//! offers: each row carries its Kafka position (`kafka_partition`, `kafka_offset`),
//! `sink_offsets` records the batches stored whole, every insert carries a deduplication
//! token, and a crashed batch's rows can be removed. The design, and why "resume after the
//! highest stored offset" alone is not enough (an insert whose rows span several days is one
//! part per day, not committed atomically), is in the sink's module docs,
//! `ordo_projectors::sinks::clickhouse::logs`.

mod config;
mod error;
mod history;
mod insert;
mod logs;
mod migrations;
mod rows;
mod services;

pub use config::{ClickHouseConfig, DEFAULT_DATABASE, DEFAULT_LOG_RETENTION_DAYS, DEFAULT_URL};
pub use error::StoreError;
pub use history::{Difference, DifferenceKind, JobEventsTable, JobKind, JOB_EVENTS};
pub use logs::{LogsTable, PartitionState};
pub use migrations::{migrate, AppliedMigration, Migration, MigrationReport, Migrator};
pub use rows::{severity_number, JobEventRow, LogRow, LEVELS};
pub use services::{active_services, ServiceSummary, DEFAULT_SERVICE_RETIRE_DAYS};

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
//!   both tables as a contract.
//!
//! # Exactly-once from Kafka into `logs`
//!
//! `job_events` needs nothing: a redelivered event has the same (tenant, job_id, sequence)
//! and ReplacingMergeTree keeps one copy. `logs` has no natural key (two identical lines may
//! both be real), so the sink should make its writes exactly-once itself. Recommended:
//!
//! 1. Store each line's Kafka position with it (`kafka_partition`, `kafka_offset`).
//! 2. On partition assignment, seek each partition to one past
//!    `SELECT kafka_partition, max(kafka_offset) FROM logs GROUP BY kafka_partition`
//!    (answered from the `kafka_offsets` projection, not the table) instead of the consumer
//!    group's committed offset: everything stored is never stored again, after a crash, a
//!    rebalance or a committed offset that lagged behind the insert. Committing offsets to
//!    Kafka is then only for monitoring lag.
//! 3. Insert a batch of one partition's records with
//!    `insert_deduplication_token = "{partition}:{first_offset}-{last_offset}"`: an insert
//!    retried after a timeout whose first try did land is dropped by the table's
//!    `non_replicated_deduplication_window` (replicated tables deduplicate by default).
//! 4. Keep a batch within one day (one table partition): ClickHouse writes an insert's rows
//!    as one part per partition, so a batch that straddles midnight could land half, and the
//!    resume point of step 2 would skip the other half.
//!
//! Insert deduplication tokens alone are not enough: after a crash the consumer re-reads
//! from the committed offset and cuts its batches elsewhere, so the tokens differ.

mod config;
mod error;
mod migrations;
mod rows;

pub use config::{ClickHouseConfig, DEFAULT_DATABASE, DEFAULT_LOG_RETENTION_DAYS, DEFAULT_URL};
pub use error::StoreError;
pub use migrations::{migrate, AppliedMigration, Migration, MigrationReport, Migrator};
pub use rows::{severity_number, JobEventRow, LogRow, LEVELS};

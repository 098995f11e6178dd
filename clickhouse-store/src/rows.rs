//! One row of each table, field for column, in the types the `clickhouse` crate maps onto
//! them (it checks the columns' names and types against these structs on every insert and
//! fetch). Normalising what a source sends into these shapes (level names, flattened
//! attributes) is the ingestion's job; the table refuses rows that break the level rules.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The levels a log line may have, least severe first, as stored (lower case).
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// The OpenTelemetry severity number of a level (the first of its range of four: trace 1,
/// debug 5, info 9, warn 13, error 17, fatal 21); `None` for anything but [`LEVELS`].
pub fn severity_number(level: &str) -> Option<u8> {
    let index = LEVELS.iter().position(|l| *l == level)?;
    Some(index as u8 * 4 + 1)
}

/// A row of `logs`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LogRow {
    pub tenant: String,
    /// `DateTime64(9, 'UTC')`.
    #[serde(with = "clickhouse::serde::chrono::datetime64::nanos")]
    pub ts: DateTime<Utc>,
    pub service: String,
    pub env: String,
    pub host: String,
    pub component: String,
    /// One of [`LEVELS`].
    pub level: String,
    /// Within the level's range (see [`severity_number`]).
    pub severity_number: u8,
    pub message: String,
    /// `Map(LowCardinality(String), String)`: strings as they are, other JSON values as
    /// their JSON text, nested objects flattened with dotted keys.
    pub attributes: BTreeMap<String, String>,
    /// `Nullable(UUID)`: set on job log lines only.
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub job_id: Option<Uuid>,
    pub attempt: u32,
    pub worker_id: String,
    pub trace_id: String,
    pub span_id: String,
    /// `DateTime64(6, 'UTC')`.
    #[serde(with = "clickhouse::serde::chrono::datetime64::micros")]
    pub received_at: DateTime<Utc>,
    /// The `ordo.logs` record the line came from; -1 if none.
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// A row of `job_events`: one event envelope, with the fields analytics filter on as columns.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct JobEventRow {
    pub tenant: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub job_id: Uuid,
    pub sequence: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    /// `DateTime64(6, 'UTC')`.
    #[serde(with = "clickhouse::serde::chrono::datetime64::micros")]
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: String,
    pub job_type: String,
    pub queue: String,
    /// 0 when the event has no attempt.
    pub attempt: u32,
    pub worker_id: String,
    pub error: String,
    pub reason: String,
    /// The envelope's `data` as JSON text.
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_numbers_follow_opentelemetry() {
        let numbers: Vec<_> = LEVELS.iter().map(|l| severity_number(l)).collect();
        assert_eq!(
            numbers,
            [1, 5, 9, 13, 17, 21].map(Some).to_vec(),
            "TRACE=1, DEBUG=5, INFO=9, WARN=13, ERROR=17, FATAL=21"
        );
        assert_eq!(severity_number("INFO"), None);
        assert_eq!(severity_number("warning"), None);
    }
}

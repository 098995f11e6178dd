//! `clickhouse-logs`: the lines of `ordo.logs` (contract v2, [`LogBatch::decode`]) as rows
//! of the ClickHouse `logs` table, each with the Kafka position it came from, stored exactly
//! once as the user sees it: after a kill -9 mid-batch, a restart, a rebalance or a
//! ClickHouse outage, no line is missing and none is there twice.
//!
//! # Exactly once
//!
//! An INSERT of a batch whose lines span several days becomes one part per day
//! (`PARTITION BY toDate(ts)`), and ClickHouse commits those parts one by one: a crash
//! mid-insert can leave some days of a batch stored and others not. Resuming after the
//! highest stored `kafka_offset` would then skip the missing days' lines. So:
//!
//! 1. **What is stored whole is recorded apart.** After each batch is inserted, the sink
//!    writes, per Kafka partition of the batch, the next offset to read to `sink_offsets`
//!    (with `floor`, below). The sink resumes from there; the consumer group's committed
//!    offsets (stored after the write, like every sink's) only show lag.
//! 2. **A crashed batch is removed, then read again.** On partition assignment (a start, a
//!    restart after a crash, a rebalance), the sink reads its confirmed offset per
//!    partition; if `logs` holds rows of that partition at or beyond it (the
//!    `kafka_offsets` projection says so without reading the table), they are the partial
//!    rows of a batch that was never confirmed: they are deleted (a synchronous mutation,
//!    `ALTER TABLE … DELETE … mutations_sync = 2`: chDB 26.9 refuses a lightweight DELETE on
//!    a table with a projection unless the table sets `lightweight_mutation_projection_mode`,
//!    and this runs only after a crash), and the partition resumes at the confirmed offset.
//! 3. **Retries are deduplicated, not cleaned up.** Within a process a failed insert may
//!    still land later (the client gave up, the server went on), so it is not deleted and
//!    redone: the loop retries the very same batch (it never adds to a batch it failed to
//!    write), and the sink sends it with the same `insert_deduplication_token`. The table's
//!    `non_replicated_deduplication_window = 1000` drops every part of it that already
//!    landed, whichever try lands first; with `deduplicate_blocks_in_dependent_materialized_views`
//!    the service registry's views do the same. A retry must come within 1,000 inserts into
//!    `logs` (all sinks of the deployment together): minutes at the default batching.
//! 4. **Tokens never repeat across processes.** Each sink instance draws a random run id,
//!    and its tokens are `{run}-{batch number}`. A batch re-read after step 2 gets a new
//!    token, so ClickHouse cannot take it for a duplicate of the crashed insert and drop it
//!    after the delete (as it would with the same token, or without one by the data's hash).
//!
//! `floor` covers the one thing offsets cannot: a log whose offsets start again at 0 (the
//! broker lost the topic; `ORDO_LOGS_TOPIC` pointed at a new topic). Rows of a partition at
//! or below its floor were stored before the sink's current records of that log began and
//! are never taken for a crashed batch. A partition seen for the first time gets the
//! table's highest offset as its floor, and so does every assigned partition when the loop
//! reports lost records. The price: until the new log's offsets pass the floor, a crash
//! mid-batch can leave that batch's stored part twice.
//!
//! An insert whose client is gone (a killed sink) may still run on the server and land
//! after the removal: before it reads its offsets, the sink waits for the inserts into
//! `logs` running at that moment to end (`system.processes`, up to the ClickHouse timeout,
//! then it retries with backoff). What remains: that view is one server's (a cluster would
//! ask every replica), and an insert sent but not yet started by the server is not in it.

use super::error_kind;
use crate::projector::{self, ProjectorConfig, Sink, WriteOutcome};
use crate::LogSinkMetrics;
use crate::ProjectorMetrics;
use chrono::{DateTime, DurationRound, Utc};
use ordo_clickhouse_store::{ClickHouseConfig, LogRow, LogsTable, PartitionState};
use ordo_common::health::RoleHealth;
use ordo_protocol::logs::{LogBatch, LogEntry};
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const NAME: &str = "clickhouse-logs";

/// Runs the `clickhouse-logs` projector: `config.topic` (`ordo.logs`) into the `logs` table
/// of `clickhouse`, its readiness in `health`, until `shutdown`.
pub async fn run(
    config: ProjectorConfig,
    clickhouse: &ClickHouseConfig,
    metrics: ProjectorMetrics,
    log_metrics: LogSinkMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sink = ClickHouseLogs::new(clickhouse, &config.topic, log_metrics);
    projector::run(config, sink, metrics, health, shutdown).await
}

pub struct ClickHouseLogs {
    table: LogsTable,
    topic: String,
    /// Where the sink stands on each assigned partition.
    states: BTreeMap<i32, PartitionState>,
    /// Makes this instance's deduplication tokens its own.
    run: Uuid,
    /// Batches inserted so far; numbers the tokens.
    batches: u64,
    /// The batch whose insert failed, and its token: the loop retries it as it was.
    failed: Option<(BatchId, String)>,
    metrics: LogSinkMetrics,
}

/// Which records a batch holds: its first and last record and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchId {
    first: (i32, i64),
    last: (i32, i64),
    records: usize,
}

impl BatchId {
    fn of(records: &[LogRecord]) -> Option<Self> {
        Some(Self {
            first: records.first()?.source,
            last: records.last()?.source,
            records: records.len(),
        })
    }
}

/// One `ordo.logs` record: its lines as rows.
pub struct LogRecord {
    rows: Vec<LogRow>,
    received_at: DateTime<Utc>,
    /// (partition, offset).
    source: (i32, i64),
}

impl ClickHouseLogs {
    pub fn new(clickhouse: &ClickHouseConfig, topic: &str, metrics: LogSinkMetrics) -> Self {
        Self {
            table: LogsTable::new(clickhouse),
            topic: topic.to_owned(),
            states: BTreeMap::new(),
            run: Uuid::new_v4(),
            batches: 0,
            failed: None,
            metrics,
        }
    }

    /// The token of `batch`: the failed try's again, else a new one.
    fn token(&mut self, batch: BatchId) -> String {
        match &self.failed {
            Some((id, token)) if *id == batch => token.clone(),
            _ => {
                self.batches += 1;
                format!("{}-{}", self.run.simple(), self.batches)
            }
        }
    }

    /// `ordo_log_ingestion_delay_seconds` of each tenant of the batch: now minus its newest
    /// stored line.
    fn set_ingestion_delay(&self, records: &[LogRecord]) {
        let mut newest: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for row in records.iter().flat_map(|r| &r.rows) {
            let at = newest.entry(row.tenant.as_str()).or_insert(row.ts);
            *at = (*at).max(row.ts);
        }
        let now = Utc::now();
        for (tenant, at) in newest {
            self.metrics.ingestion_delay(tenant, now - at);
        }
    }
}

impl Sink for ClickHouseLogs {
    type Item = LogRecord;

    fn name(&self) -> &'static str {
        NAME
    }

    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    fn error_kind(&self, error: &anyhow::Error) -> &'static str {
        error_kind(error)
    }

    fn decode(&self, record: &BorrowedMessage<'_>) -> Result<LogRecord, String> {
        let payload = record.payload().ok_or("the record has no value")?;
        let batch = LogBatch::decode(payload).map_err(|e| e.to_string())?;
        let source = (record.partition(), record.offset());
        Ok(LogRecord {
            received_at: batch.received_at,
            rows: rows(&batch, source)?,
            source,
        })
    }

    fn weight(&self, record: &LogRecord) -> usize {
        // A record without lines still costs a little; it must not make a batch endless.
        record.rows.len().max(1)
    }

    async fn write(&mut self, records: &[LogRecord]) -> anyhow::Result<Vec<WriteOutcome>> {
        let Some(batch) = BatchId::of(records) else {
            return Ok(Vec::new());
        };
        let token = self.token(batch);
        // Set before the insert: a write the loop abandons at its timeout is a failed one.
        self.failed = Some((batch, token.clone()));
        let rows: Vec<&LogRow> = records.iter().flat_map(|r| r.rows.iter()).collect();
        self.table.insert(&rows, &token).await?;
        let mut confirmed = BTreeMap::new();
        for record in records {
            let (partition, offset) = record.source;
            let state = self
                .states
                .get(&partition)
                .copied()
                .unwrap_or(PartitionState {
                    next_offset: None,
                    floor: -1,
                });
            confirmed.insert(
                partition,
                PartitionState {
                    next_offset: Some(offset + 1),
                    ..state
                },
            );
        }
        self.table
            .set_partition_states(NAME, &self.topic, &confirmed)
            .await?;
        self.states.extend(confirmed);
        self.failed = None;
        self.set_ingestion_delay(records);
        Ok(records
            .iter()
            .map(|r| WriteOutcome::Applied {
                occurred_at: r.received_at,
            })
            .collect())
    }

    fn keeps_offsets(&self) -> bool {
        true
    }

    /// Removes the rows of batches that were never confirmed (a crash mid-batch), records a
    /// state for partitions seen for the first time, and answers the confirmed offsets.
    async fn stored_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        // Whatever failed before is settled here, for these partitions.
        self.failed = None;
        self.table.wait_for_running_inserts().await?;
        let mut states = self.table.partition_states(NAME, topic, partitions).await?;
        let stored = self.table.max_offsets().await?;
        let mut first_seen = BTreeMap::new();
        for &partition in partitions {
            let highest = stored.get(&partition).copied();
            let Some(state) = states.get(&partition) else {
                let floor = highest.unwrap_or(-1);
                first_seen.insert(
                    partition,
                    PartitionState {
                        next_offset: None,
                        floor,
                    },
                );
                continue;
            };
            let from = state.unconfirmed_from();
            if highest.is_some_and(|h| h >= from) {
                tracing::warn!(
                    sink = NAME,
                    partition,
                    from,
                    highest,
                    "removing the rows of a batch that was not stored whole (a crash mid-insert); \
                     they are stored again from Kafka"
                );
                self.table.delete_from(partition, from).await?;
            }
        }
        if !first_seen.is_empty() {
            self.table
                .set_partition_states(NAME, topic, &first_seen)
                .await?;
            states.extend(first_seen);
        }
        let resume = states
            .iter()
            .filter_map(|(p, s)| Some((*p, s.next_offset?)))
            .collect();
        self.states = states;
        Ok(resume)
    }

    /// The log's offsets start again: what the table holds of each assigned partition is
    /// below its new floor, and the next offset is the consumer group's to say.
    async fn records_lost(&mut self, detail: &str) -> anyhow::Result<()> {
        let stored = self.table.max_offsets().await?;
        for (partition, state) in &mut self.states {
            state.floor = state
                .floor
                .max(stored.get(partition).copied().unwrap_or(-1));
            state.next_offset = None;
        }
        self.table
            .set_partition_states(NAME, &self.topic, &self.states)
            .await?;
        tracing::warn!(
            sink = NAME,
            detail,
            "the broker lost log records: lines not stored before are gone; offsets stored \
             so far are kept as each partition's floor"
        );
        Ok(())
    }
}

/// The rows of a batch of lines from record `source`, or why the table would refuse them
/// (the record is then parked, not retried for ever).
fn rows(batch: &LogBatch, source: (i32, i64)) -> Result<Vec<LogRow>, String> {
    batch
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            check(line).map_err(|reason| format!("line {index}: {reason}"))?;
            Ok(row(batch, line, source))
        })
        .collect()
}

/// The table's constraints and column ranges that a line could break.
fn check(line: &LogEntry) -> Result<(), String> {
    if ordo_protocol::logs::Level::from_severity_number(line.severity_number.into())
        != Some(line.level)
    {
        return Err(format!(
            "severity_number {} is not within level {}'s range",
            line.severity_number, line.level
        ));
    }
    // DateTime64(9) holds 1900-01-01 to 2262-04-11; nanoseconds since the epoch fit an i64
    // over about the same span.
    if line.ts.timestamp_nanos_opt().is_none() {
        return Err(format!("ts {} is out of the table's range", line.ts));
    }
    Ok(())
}

fn row(batch: &LogBatch, line: &LogEntry, (partition, offset): (i32, i64)) -> LogRow {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    LogRow {
        tenant: batch.tenant.clone(),
        ts: line.ts,
        service: batch.service.clone(),
        env: text(&line.env),
        host: text(&line.host),
        component: text(&line.component),
        level: line.level.as_str().to_owned(),
        severity_number: line.severity_number,
        message: line.message.clone(),
        attributes: line.attributes.clone(),
        job_id: batch.job_id,
        attempt: batch.attempt.unwrap_or(0),
        worker_id: text(&batch.worker_id),
        trace_id: text(&line.trace_id),
        span_id: text(&line.span_id),
        // The column holds microseconds.
        received_at: batch
            .received_at
            .duration_trunc(chrono::TimeDelta::microseconds(1))
            .unwrap_or(batch.received_at),
        kafka_partition: partition,
        kafka_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_protocol::logs::Level;

    fn entry(level: Level, severity_number: u8) -> LogEntry {
        LogEntry {
            ts: "2026-11-21T10:00:00.123456789Z".parse().unwrap(),
            level,
            severity_number,
            message: "card declined".into(),
            attributes: [("order.id".to_owned(), "42".to_owned())].into(),
            trace_id: Some("5b8efff798038103d269b633813fc60c".into()),
            span_id: None,
            env: Some("prod".into()),
            host: None,
            component: Some("payments".into()),
        }
    }

    fn batch(lines: Vec<LogEntry>) -> LogBatch {
        LogBatch {
            v: 2,
            tenant: "acme".into(),
            service: "checkout".into(),
            source: "otlp".into(),
            job_id: None,
            attempt: None,
            worker_id: None,
            received_at: "2026-11-21T10:00:00.310123456Z".parse().unwrap(),
            lines,
        }
    }

    #[test]
    fn a_line_becomes_a_row_with_its_kafka_position() {
        let rows = rows(&batch(vec![entry(Level::Warn, 14)]), (3, 77)).unwrap();
        let row = &rows[0];
        assert_eq!(
            (
                row.tenant.as_str(),
                row.service.as_str(),
                row.level.as_str()
            ),
            ("acme", "checkout", "warn")
        );
        assert_eq!(row.severity_number, 14);
        assert_eq!((row.env.as_str(), row.host.as_str()), ("prod", ""));
        assert_eq!(row.component, "payments");
        assert_eq!(row.ts.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(row.received_at.timestamp_subsec_nanos(), 310_123_000);
        assert_eq!((row.kafka_partition, row.kafka_offset), (3, 77));
        assert_eq!((row.job_id, row.attempt), (None, 0));
        assert_eq!(row.attributes["order.id"], "42");
    }

    #[test]
    fn lines_the_table_would_refuse_are_named() {
        let error = rows(
            &batch(vec![entry(Level::Info, 9), entry(Level::Info, 17)]),
            (0, 0),
        )
        .unwrap_err();
        assert!(error.starts_with("line 1: severity_number 17"), "{error}");
    }
}

//! `clickhouse-history`: every job event of `outbox.event.job` as a row of the ClickHouse
//! `job_events` table, with the job's type and queue on every row ([`JobKinds`]).
//!
//! Delivery stays at least once and that is enough: `job_events` is a ReplacingMergeTree
//! keyed by (tenant, job_id, sequence), so a redelivered event replaces its copy when parts
//! merge, and readers query with `FINAL` (or `LIMIT 1 BY tenant, job_id, sequence`, or
//! `argMax`) to see one copy before that. Offsets are the consumer group's, stored after
//! each insert like every sink's. `ordo replay --projector clickhouse-history` rebuilds the
//! table from the event store ([`crate::replay::history`]).

use super::error_kind;
use super::job_rows::{event_row, JobKinds};
use crate::projector::{self, ProjectorConfig, Sink, WriteOutcome};
use crate::ProjectorMetrics;
use ordo_clickhouse_store::{ClickHouseConfig, JobEventRow, JobEventsTable};
use ordo_common::health::RoleHealth;
use ordo_domain::EventEnvelope;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

/// Runs the `clickhouse-history` projector: `config.topic` into the `job_events` table of
/// `clickhouse`, its readiness in `health`, until `shutdown`.
pub async fn run(
    config: ProjectorConfig,
    clickhouse: &ClickHouseConfig,
    metrics: ProjectorMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sink = ClickHouseHistory::new(clickhouse);
    projector::run(config, sink, metrics, health, shutdown).await
}

pub struct ClickHouseHistory {
    table: JobEventsTable,
    kinds: JobKinds,
}

impl ClickHouseHistory {
    pub fn new(clickhouse: &ClickHouseConfig) -> Self {
        Self {
            table: JobEventsTable::live(clickhouse),
            kinds: JobKinds::new(JobKinds::DEFAULT_CAPACITY),
        }
    }
}

impl Sink for ClickHouseHistory {
    type Item = JobEventRow;

    fn name(&self) -> &'static str {
        "clickhouse-history"
    }

    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    fn error_kind(&self, error: &anyhow::Error) -> &'static str {
        error_kind(error)
    }

    fn decode(&self, record: &BorrowedMessage<'_>) -> Result<JobEventRow, String> {
        let payload = record.payload().ok_or("the record has no value")?;
        let envelope: EventEnvelope = serde_json::from_slice(payload)
            .map_err(|e| format!("the value is not an event envelope: {e}"))?;
        let event = envelope.event().map_err(|e| e.to_string())?;
        event_row(&envelope, &event)
    }

    async fn write(&mut self, events: &[JobEventRow]) -> anyhow::Result<Vec<WriteOutcome>> {
        let mut rows = events.to_vec();
        let unknown = self.kinds.complete(&mut rows, &self.table).await?;
        if unknown > 0 {
            // Their JobSubmitted is older than the topic's retention and was never stored;
            // `ordo replay --projector clickhouse-history` fills them in.
            tracing::debug!(
                events = unknown,
                "job events without a known type and queue"
            );
        }
        self.table.insert(&rows).await?;
        Ok(rows
            .iter()
            .map(|row| WriteOutcome::Applied {
                occurred_at: row.occurred_at,
            })
            .collect())
    }
}

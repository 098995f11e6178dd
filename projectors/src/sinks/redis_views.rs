//! `redis-views`: job views, indexes, counters and dispatch queues in Redis. Each record is
//! an [`EventEnvelope`] of a job event, written as a [`ViewUpdate`] through [`JobViews`],
//! whose script checks the job's sequence: redeliveries are duplicates, and a missing earlier
//! event is a gap (the partition waits; see [`crate::projector`]). Jobs put in a ready set
//! wake the claims waiting for one.

use crate::projector::{self, ProjectorConfig, Sink, WriteOutcome};
use crate::ProjectorMetrics;
use chrono::DateTime;
use ordo_domain::EventEnvelope;
use ordo_read_model::{namespace, ApplyOutcome, JobViews, ViewUpdate};
use rdkafka::message::{BorrowedMessage, Message};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

/// Runs the `redis-views` projector: `config.topic` into the live namespace under
/// `config.prefix`, until `shutdown`.
pub async fn run(
    config: ProjectorConfig,
    redis: ConnectionManager,
    metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sink = RedisViews::new(redis, &config.prefix);
    projector::run(config, sink, metrics, shutdown).await
}

pub struct RedisViews {
    redis: ConnectionManager,
    views: JobViews,
    prefix: String,
}

impl RedisViews {
    /// Writes into the live namespace under `prefix`, resolved per batch so a blue/green
    /// switch is followed from the next batch on.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            views: JobViews::new(redis.clone(), prefix).waking_claims(prefix),
            redis,
            prefix: prefix.to_owned(),
        }
    }
}

impl Sink for RedisViews {
    type Item = ViewUpdate;

    fn name(&self) -> &'static str {
        "redis-views"
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn decode(&self, record: &BorrowedMessage<'_>) -> Result<ViewUpdate, String> {
        let payload = record.payload().ok_or("the record has no value")?;
        let envelope: EventEnvelope = serde_json::from_slice(payload)
            .map_err(|e| format!("the value is not an event envelope: {e}"))?;
        if let Some(key) = record.key() {
            if key != envelope.job_id.as_bytes() {
                return Err(format!(
                    "the record key {:?} is not the envelope's job_id {}",
                    String::from_utf8_lossy(key),
                    envelope.job_id
                ));
            }
        }
        let event = envelope.event().map_err(|e| e.to_string())?;
        Ok(ViewUpdate::of(&envelope, &event))
    }

    async fn write(&mut self, updates: &[ViewUpdate]) -> anyhow::Result<Vec<WriteOutcome>> {
        let live = namespace::active(&mut self.redis, &self.prefix).await?;
        self.views.set_namespace(live);
        let outcomes = self.views.apply(updates).await?;
        Ok(outcomes
            .into_iter()
            .zip(updates)
            .map(|(outcome, update)| match outcome {
                ApplyOutcome::Applied => WriteOutcome::Applied {
                    // The update keeps the event's time in milliseconds.
                    occurred_at: DateTime::from_timestamp_millis(update.at_ms).unwrap_or_default(),
                },
                ApplyOutcome::Duplicate => WriteOutcome::Duplicate,
                ApplyOutcome::Gap { last } => WriteOutcome::Gap {
                    detail: format!(
                        "job {} event #{} refused: its view stands at #{last}",
                        update.job_id, update.sequence
                    ),
                },
            })
            .collect())
    }
}

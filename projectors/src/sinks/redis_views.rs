//! `redis-views`: job views, indexes, counters and dispatch queues in Redis. Each record is
//! an [`EventEnvelope`] of a job event, written as a [`ViewUpdate`] through [`JobViews`],
//! whose script checks the job's sequence: redeliveries are duplicates, and a missing earlier
//! event is a gap. With a [`JobRepair`], a gap is repaired at once: the job's view is rebuilt
//! from the event store (as `ordo replay --job` would) and the partition goes on; without
//! one, or when the store does not have the missing events yet, the partition waits (see
//! [`crate::projector`]). Jobs put in a ready set wake the claims waiting for one.

use crate::projector::{self, GapResolution, ProjectorConfig, Sink, WriteOutcome};
use crate::replay::JobRepair;
use crate::ProjectorMetrics;
use chrono::DateTime;
use ordo_common::health::RoleHealth;
use ordo_domain::EventEnvelope;
use ordo_read_model::namespace::ModelState;
use ordo_read_model::{namespace, ApplyOutcome, JobViews, ViewUpdate};
use rdkafka::message::{BorrowedMessage, Message};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

/// Runs the `redis-views` projector: `config.topic` into the live namespace under
/// `config.prefix`, repairing gaps with `repair` if given, its readiness in `health`, until
/// `shutdown`.
pub async fn run(
    config: ProjectorConfig,
    redis: ConnectionManager,
    repair: Option<JobRepair>,
    metrics: ProjectorMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut sink = RedisViews::new(redis, &config.prefix);
    sink.repair = repair;
    projector::run(config, sink, metrics, health, shutdown).await
}

pub struct RedisViews {
    redis: ConnectionManager,
    views: JobViews,
    prefix: String,
    repair: Option<JobRepair>,
}

impl RedisViews {
    /// Writes into the live namespace under `prefix`, resolved per batch so a blue/green
    /// switch is followed from the next batch on.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            views: JobViews::new(redis.clone(), prefix).waking_claims(prefix),
            redis,
            prefix: prefix.to_owned(),
            repair: None,
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

    /// Rebuilds the job from the event store, unless an earlier repair in the batch (one per
    /// job is enough: it re-applies the whole stored history) already brought the view this
    /// far. Repaired only when the view now has the waiting event.
    /// While the whole model is lost or being rebuilt, the rebuild covers the gap.
    async fn resolve_gap(&mut self, update: &ViewUpdate) -> anyhow::Result<GapResolution> {
        let Some(repair) = &mut self.repair else {
            return Ok(GapResolution::Wait);
        };
        if namespace::live(&mut self.redis, &self.prefix).await?.state != ModelState::Complete {
            return Ok(GapResolution::Superseded);
        }
        if self.views.sequence(&update.job_id).await? < update.sequence {
            let summary = repair.job(&update.job_id).await?;
            tracing::info!(
                job_id = %update.job_id,
                events = summary.events,
                applied = summary.applied,
                "rebuilt a job's view from the event store"
            );
        }
        Ok(
            if self.views.sequence(&update.job_id).await? >= update.sequence {
                GapResolution::Repaired
            } else {
                GapResolution::Wait
            },
        )
    }

    /// Removes the live namespace's marker: the projector role's rebuild (see
    /// [`crate::rebuild`]) then rebuilds the whole model from the event store.
    async fn records_lost(&mut self, _detail: &str) -> anyhow::Result<()> {
        let live = namespace::active(&mut self.redis, &self.prefix).await?;
        namespace::unmark(&mut self.redis, &live).await?;
        Ok(())
    }
}

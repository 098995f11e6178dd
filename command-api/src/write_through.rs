//! Write-through: the command side puts each event it has just committed into the Redis read
//! model itself, through the same sequence-checked script the projector uses
//! ([`JobViews::apply`]), so a submitted job is claimable, and a command's result readable,
//! within a Redis round trip of its commit instead of after the relay → Kafka → projector
//! pipeline. Jobs it puts in a ready set wake the claims waiting for one.
//!
//! The write runs beside the command's answer, not before it: a submit answers as soon as it
//! is committed (measured: waiting for the write cost one client a fifth of its submits/s), and
//! its job is claimable a round trip later. At most [`IN_FLIGHT`] writes run at once; beyond
//! that, and for anything else the write-through did not write (Redis away or slower than
//! [`WRITE_TIMEOUT`], the process died between the commit and the write, an event whose
//! predecessor the view lacks, two events of one job written out of order), the projector
//! writes as before: it stays the source of the read model, and what the write-through wrote
//! is a duplicate for it later. It never fails a command: the commit is what counts. It writes into the live namespace as the projector resolves it;
//! during a rebuild of the model that is the namespace being replaced, which is harmless: the
//! rebuild's catch-up pass and the projector fill the new one.

use chrono::{DateTime, Utc};
use ordo_domain::JobEvent;
use ordo_read_model::{namespace, ApplyOutcome, JobViews, ViewUpdate};
use prometheus::IntCounterVec;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest a write-through may take; a slower Redis is left to the projector.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// Most write-throughs running at once; more are left to the projector.
pub const IN_FLIGHT: usize = 256;

/// Writes committed events into the read model of the deployment under a prefix (cheap to
/// clone).
#[derive(Clone)]
pub struct WriteThrough {
    redis: ConnectionManager,
    views: JobViews,
    prefix: String,
    outcomes: IntCounterVec,
    slots: Arc<Semaphore>,
}

impl WriteThrough {
    /// Into the live namespace under `prefix` of `redis`, counting outcomes in `outcomes`
    /// (labelled `outcome`).
    pub fn new(redis: ConnectionManager, prefix: &str, outcomes: IntCounterVec) -> Self {
        Self {
            views: JobViews::new(redis.clone(), prefix).waking_claims(prefix),
            redis,
            prefix: prefix.to_owned(),
            outcomes,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Starts writing `events` (job id, sequence, event; one call's, in order), committed for
    /// `tenant` at `at`, beside the caller; outcomes are counted per event (`skipped` when
    /// [`IN_FLIGHT`] writes are running already), failures logged, never returned.
    pub fn write_events<'a>(
        &self,
        tenant: &str,
        at: DateTime<Utc>,
        events: impl IntoIterator<Item = (&'a str, u64, &'a JobEvent)>,
    ) {
        let updates = events
            .into_iter()
            .map(|(job_id, sequence, event)| {
                ViewUpdate::of_event(job_id, tenant, sequence, at, event)
            })
            .collect();
        self.apply(updates);
    }

    fn apply(&self, updates: Vec<ViewUpdate>) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.count("skipped", updates.len());
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            this.write(&updates).await;
            drop(slot);
        });
    }

    async fn write(self, updates: &[ViewUpdate]) {
        let (mut redis, mut views) = (self.redis.clone(), self.views.clone());
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            views.set_namespace(namespace::active(&mut redis, &self.prefix).await?);
            views.apply(updates).await
        })
        .await;
        match written {
            Ok(Ok(outcomes)) => {
                for outcome in outcomes {
                    let label = match outcome {
                        ApplyOutcome::Applied => "applied",
                        ApplyOutcome::Duplicate => "duplicate",
                        ApplyOutcome::Gap { .. } => "gap",
                    };
                    self.count(label, 1);
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "write-through failed; the projector writes the events");
                self.count("failed", updates.len());
            }
            Err(_) => {
                tracing::debug!("write-through timed out; the projector writes the events");
                self.count("failed", updates.len());
            }
        }
    }

    fn count(&self, outcome: &str, events: usize) {
        self.outcomes
            .with_label_values(&[outcome])
            .inc_by(events as u64);
    }
}

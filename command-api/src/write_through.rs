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

    /// Starts applying `updates` (one command's events, in order) beside the caller; outcomes
    /// are counted (`skipped` when [`IN_FLIGHT`] writes are running already), failures
    /// logged, never returned.
    pub fn apply(&self, updates: Vec<ViewUpdate>) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.outcomes.with_label_values(&["skipped"]).inc();
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            this.write(&updates).await;
            drop(slot);
        });
    }

    async fn write(mut self, updates: &[ViewUpdate]) {
        let counts = self.outcomes.clone();
        let written = tokio::time::timeout(WRITE_TIMEOUT, async move {
            let live = namespace::active(&mut self.redis, &self.prefix).await?;
            self.views.set_namespace(live);
            self.views.apply(updates).await
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
                    counts.with_label_values(&[label]).inc();
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "write-through failed; the projector writes the events");
                counts.with_label_values(&["failed"]).inc();
            }
            Err(_) => {
                tracing::debug!("write-through timed out; the projector writes the events");
                counts.with_label_values(&["failed"]).inc();
            }
        }
    }
}

//! Write-through: the command side puts each event it has just committed into the Redis read
//! model itself, through the same sequence-checked script the projector uses
//! ([`JobViews::apply`]), so a submitted job is claimable, and a command's result readable,
//! within a Redis round trip of its commit instead of after the relay → Kafka → projector
//! pipeline. Jobs it puts in a ready set wake the claims waiting for one.
//!
//! The projector stays the source of the read model: what the write-through wrote is a
//! duplicate for it later, and whatever the write-through did not write (Redis away or slower
//! than [`WRITE_TIMEOUT`], the process died between the commit and the write, an event whose
//! predecessor the view lacks) the projector writes as before. It never fails a command: the
//! commit is what counts. It writes into the live namespace as the projector resolves it;
//! during a rebuild of the model that is the namespace being replaced, which is harmless: the
//! rebuild's catch-up pass and the projector fill the new one.

use ordo_read_model::{namespace, ApplyOutcome, JobViews, ViewUpdate};
use prometheus::IntCounterVec;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Longest a command waits for its write-through; a slower Redis is left to the projector.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Writes committed events into the read model of the deployment under a prefix (cheap to
/// clone).
#[derive(Clone)]
pub struct WriteThrough {
    redis: ConnectionManager,
    views: JobViews,
    prefix: String,
    outcomes: IntCounterVec,
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
        }
    }

    /// Applies `updates` (one command's events, in order); outcomes are counted, failures
    /// logged, never returned.
    pub async fn apply(&self, updates: &[ViewUpdate]) {
        let mut this = self.clone();
        let written = tokio::time::timeout(WRITE_TIMEOUT, async move {
            let live = namespace::active(&mut this.redis, &this.prefix).await?;
            this.views.set_namespace(live);
            this.views.apply(updates).await
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
                    self.outcomes.with_label_values(&[label]).inc();
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "write-through failed; the projector writes the events");
                self.outcomes.with_label_values(&["failed"]).inc();
            }
            Err(_) => {
                tracing::debug!("write-through timed out; the projector writes the events");
                self.outcomes.with_label_values(&["failed"]).inc();
            }
        }
    }
}

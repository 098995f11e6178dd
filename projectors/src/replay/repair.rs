//! Repairs of one job at a time for the live projector: when it meets a gap (an event whose
//! predecessor the view lacks: Redis restarted and lost the view, say), it rebuilds that
//! job's view from the event store with the same in-place replay as `ordo replay --job`,
//! instead of holding its partition until an operator runs it.

use super::{run, Mode, ReplayOptions, Scope, Silent, Summary};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// Repairs, at most `per_second` of them a second, so that a burst of gaps (a Redis that
/// came back empty) cannot flood PostgreSQL; a repair waits for its turn.
pub struct JobRepair {
    pool: PgPool,
    redis: ConnectionManager,
    prefix: String,
    options: ReplayOptions,
    interval: Duration,
    next: Instant,
}

/// Default bound of repairs per second.
pub const DEFAULT_REPAIRS_PER_SECOND: u32 = 50;
/// The replay session's statement timeout for one job: a repair that takes longer fails
/// and is retried with the gap's backoff.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

impl JobRepair {
    /// Repairs jobs in the live namespace under `prefix` from the event store of `pool`.
    pub fn new(pool: PgPool, redis: ConnectionManager, prefix: &str, per_second: u32) -> Self {
        Self {
            pool,
            redis,
            prefix: prefix.to_owned(),
            options: ReplayOptions {
                statement_timeout: STATEMENT_TIMEOUT,
                ..ReplayOptions::default()
            },
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Instant::now(),
        }
    }

    /// Forgets `job_id` in the live namespace and re-applies its whole stored history. An
    /// error when the store cannot be read or has no events for the job.
    pub async fn job(&mut self, job_id: &str) -> anyhow::Result<Summary> {
        tokio::time::sleep_until(self.next).await;
        self.next = Instant::now() + self.interval;
        let options = ReplayOptions {
            scope: Scope::Jobs(vec![job_id.to_owned()]),
            ..self.options.clone()
        };
        run(
            &self.pool,
            &self.redis,
            &self.prefix,
            &Mode::InPlace,
            &options,
            &Silent,
        )
        .await
    }
}

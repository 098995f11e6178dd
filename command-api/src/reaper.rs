//! The lease reaper: attempts whose lease ran out (their worker died or hangs) become
//! `ExpireLease` commands, which the aggregate turns into a retry or a dead letter. It reads
//! the running sets of the dispatch model and holds a Redis singleton lock, so one reaper
//! works at a time; a second one, or a stale view, does no harm either, because the aggregate
//! refuses to expire a lease that has not run out or an attempt that is no longer running.

use crate::bus::{CommandError, JobCommandBus};
use chrono::{DateTime, Utc};
use ordo_domain::spec::TenantId;
use ordo_domain::{CommandMetadata, JobCommand, JobError};
use ordo_read_model::{namespace, Claim, DispatchQueues, ExpiredLease, SingletonLock};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ReaperConfig {
    /// Key prefix of the read model (the live namespace is resolved on every sweep).
    pub prefix: String,
    pub interval: Duration,
    /// Expired leases handled per queue and sweep.
    pub batch: usize,
    pub lock_ttl: Duration,
}

impl ReaperConfig {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            interval: Duration::from_secs(1),
            batch: 500,
            lock_ttl: Duration::from_secs(5),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Leases expired by a command.
    pub expired: u64,
    /// Entries left for later: the lease was extended, or the view is behind.
    pub skipped: u64,
    /// Entries of jobs that are not running any more (leftovers of refused claims) removed.
    pub cleaned: u64,
    /// Leftovers of claims that never started (the job is still QUEUED) put back in ready.
    pub requeued: u64,
}

/// Sweeps every `interval` while it holds the lock, until `shutdown`.
pub async fn run(
    bus: Arc<JobCommandBus>,
    redis: ConnectionManager,
    config: ReaperConfig,
    shutdown: CancellationToken,
) {
    let mut lock = SingletonLock::new(redis.clone(), &config.prefix, "reaper", config.lock_ttl);
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match lock.hold().await {
            Ok(Some(token)) => match sweep(&bus, &mut redis.clone(), &config, token).await {
                Ok(done) if done != Sweep::default() => {
                    tracing::info!(?done, token, "reaper sweep");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reaper sweep failed; next tick retries"),
            },
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "reaper lock unavailable; next tick retries"),
        }
    }
    if let Err(error) = lock.release().await {
        tracing::warn!(%error, "reaper lock not released; it expires by itself");
    }
}

/// One pass over the running sets of every queue: each lease that ended before now.
pub async fn sweep(
    bus: &JobCommandBus,
    redis: &mut ConnectionManager,
    config: &ReaperConfig,
    token: u64,
) -> anyhow::Result<Sweep> {
    let now = bus.services().clock.now();
    let ns = namespace::active(redis, &config.prefix).await?;
    let mut dispatch = DispatchQueues::new(redis.clone());
    let mut done = Sweep::default();
    for queue in dispatch.queues(&ns).await? {
        let expired = dispatch
            .expired(&ns, &queue, now.timestamp_millis(), config.batch)
            .await?;
        for lease in expired {
            let verdict = expire(bus, &queue.tenant, &lease, now, token).await;
            match verdict {
                Verdict::Expired => done.expired += 1,
                Verdict::Wait => done.skipped += 1,
                Verdict::NotRunning if lease.status.as_deref() == Some("QUEUED") => {
                    let claim = Claim {
                        queue: queue.queue.clone(),
                        job_id: lease.job_id,
                        attempt: lease.attempt,
                    };
                    dispatch
                        .release(&ns, &queue.tenant, &claim, now.timestamp_millis())
                        .await?;
                    done.requeued += 1;
                }
                Verdict::NotRunning if lease.status.as_deref() != Some("RUNNING") => {
                    dispatch.drop_running(&ns, &queue, &lease.job_id).await?;
                    done.cleaned += 1;
                }
                Verdict::NotRunning => done.skipped += 1,
                Verdict::Failed(error) => return Err(error.into()),
            }
        }
    }
    Ok(done)
}

enum Verdict {
    Expired,
    /// Not yet (a heartbeat the view has not caught up with) or a concurrent change.
    Wait,
    /// The job is missing or not running that attempt.
    NotRunning,
    Failed(CommandError),
}

async fn expire(
    bus: &JobCommandBus,
    tenant: &str,
    lease: &ExpiredLease,
    now: DateTime<Utc>,
    token: u64,
) -> Verdict {
    let attempt = lease.attempt;
    let (Ok(tenant), Ok(job_id)) = (TenantId::parse(tenant), lease.job_id.parse()) else {
        return Verdict::NotRunning;
    };
    let metadata = CommandMetadata {
        tenant: tenant.to_string(),
        actor: "ordo-reaper".into(),
        correlation_id: format!("reaper-{token}"),
        occurred_at: now,
    };
    match bus
        .execute(
            job_id,
            &tenant,
            JobCommand::ExpireLease { attempt },
            metadata,
        )
        .await
    {
        Ok(_) => Verdict::Expired,
        Err(CommandError::Rejected(JobError::LeaseNotExpired { .. }) | CommandError::Conflict) => {
            Verdict::Wait
        }
        Err(CommandError::Rejected(_)) => Verdict::NotRunning,
        Err(error) => Verdict::Failed(error),
    }
}

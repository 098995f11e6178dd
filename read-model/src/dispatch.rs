//! The dispatch model: per tenant and queue, a ready set (claimable jobs, by priority and
//! enqueue time), a scheduled set (delayed starts and retry backoffs, by due time) and a
//! running set (claimed jobs, by lease expiry); see [`crate::keys`]. The projector moves jobs
//! between them as events arrive (`lua/apply.lua`); [`DispatchQueues`] is everything else
//! that touches them: claims for workers, a claim given back, and the reaper's view of
//! expired leases. Every script that puts a job in a ready set scores it with
//! `lua/score.lua`, the one place the score formula lives.

use crate::keys;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script};
use std::sync::LazyLock;
use std::time::Duration;

// Scripts are hashed once per process and shared: a handle is cloned per request.
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(scored_script!("lua/claim.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(scored_script!("lua/release.lua")));
static EXPIRED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/expired.lua")));

/// A job popped for a worker: it may start attempt `attempt` of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub queue: String,
    pub job_id: String,
    pub attempt: u32,
}

/// An entry of a running set whose lease has ended, with what the job's view says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub job_id: String,
    /// The view's attempt (0 without a view).
    pub attempt: u32,
    /// The view's status, `None` without a view.
    pub status: Option<String>,
}

/// A queue of the dispatch model: `{tenant}:{queue}` split at the first `:` (tenants
/// cannot contain one, queues can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantQueue {
    pub tenant: String,
    pub queue: String,
}

/// The claim, release and lease-expiry operations on the dispatch sets (cheap to clone).
#[derive(Clone)]
pub struct DispatchQueues {
    connection: ConnectionManager,
}

impl DispatchQueues {
    pub fn new(connection: ConnectionManager) -> Self {
        Self { connection }
    }

    /// Claims up to `max` jobs of `tenant` from `queues` (in that order of preference) in
    /// `namespace`, each running until `lease` from `now_ms`.
    pub async fn claim(
        &mut self,
        namespace: &str,
        tenant: &str,
        queues: &[String],
        max: usize,
        now_ms: i64,
        lease: Duration,
    ) -> RedisResult<Vec<Claim>> {
        if max == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<String> = CLAIM
            .arg(namespace)
            .arg(tenant)
            .arg(now_ms)
            .arg(lease.as_millis() as u64)
            .arg(max)
            .arg(queues)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| Claim {
                queue: c[0].clone(),
                job_id: c[1].clone(),
                attempt: c[2].parse().unwrap_or(0),
            })
            .collect())
    }

    /// Puts a claim the write side could not start (for a reason that may pass) back in the
    /// ready set at `enqueued_ms`, at the job's own priority.
    pub async fn release(
        &mut self,
        namespace: &str,
        tenant: &str,
        claim: &Claim,
        enqueued_ms: i64,
    ) -> RedisResult<()> {
        RELEASE
            .key(keys::job(namespace, &claim.job_id))
            .key(keys::dispatch(namespace, "running", tenant, &claim.queue))
            .key(keys::dispatch(namespace, "ready", tenant, &claim.queue))
            .arg(&claim.job_id)
            .arg(enqueued_ms)
            .invoke_async(&mut self.connection)
            .await
    }

    /// Every queue the model has seen, of every tenant.
    pub async fn queues(&mut self, namespace: &str) -> RedisResult<Vec<TenantQueue>> {
        let members: Vec<String> = self.connection.smembers(keys::queues(namespace)).await?;
        Ok(members
            .into_iter()
            .filter_map(|member| {
                let (tenant, queue) = member.split_once(':')?;
                Some(TenantQueue {
                    tenant: tenant.to_owned(),
                    queue: queue.to_owned(),
                })
            })
            .collect())
    }

    /// Up to `limit` running entries of `queue` whose lease ended at or before `now_ms`, the
    /// earliest first.
    pub async fn expired(
        &mut self,
        namespace: &str,
        queue: &TenantQueue,
        now_ms: i64,
        limit: usize,
    ) -> RedisResult<Vec<ExpiredLease>> {
        let flat: Vec<String> = EXPIRED
            .key(keys::dispatch(
                namespace,
                "running",
                &queue.tenant,
                &queue.queue,
            ))
            .arg(now_ms)
            .arg(limit)
            .arg(namespace)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| ExpiredLease {
                job_id: c[0].clone(),
                attempt: c[1].parse().unwrap_or(0),
                status: (!c[2].is_empty()).then(|| c[2].clone()),
            })
            .collect())
    }

    /// Removes a job from `queue`'s running set (a leftover of a claim for a job that is not
    /// running any more).
    pub async fn drop_running(
        &mut self,
        namespace: &str,
        queue: &TenantQueue,
        job_id: &str,
    ) -> RedisResult<()> {
        let running = keys::dispatch(namespace, "running", &queue.tenant, &queue.queue);
        self.connection.zrem::<_, _, ()>(running, job_id).await
    }
}

//! How workers get jobs: a claim takes ready jobs from the dispatch model in Redis (see
//! [`ordo_read_model::DispatchQueues`]) and starts each one with a `Start` command; an empty
//! claim may wait (long-poll) for a job to become ready. The HTTP route only parses the
//! request into a [`WorkerClaim`] and renders the answer.

use crate::bus::{CommandError, JobCommandBus};
use chrono::{DateTime, Duration as Span, Utc};
use futures::future;
use futures::stream::{self, StreamExt};
use ordo_domain::spec::{QueueName, TenantId, WorkerId};
use ordo_domain::{CommandMetadata, JobCommand, JobError, ValidationError};
use ordo_protocol::worker::{
    ClaimRequest, ClaimedJob, LEASE_MS, MAX_CLAIM_JOBS, MAX_CLAIM_WAIT_MS,
};
use ordo_read_model::namespace::ModelState;
use ordo_read_model::{namespace, Claim, DispatchQueues, ReadyWakeups};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often an empty long-poll looks again without a wake-up (see [`ReadyWakeups`]): for
/// delayed jobs and retries falling due, which nothing announces, and for wake-ups lost to a
/// reconnect.
const FALLBACK_POLL: Duration = Duration::from_millis(50);
/// Start commands of one claim run side by side, on that many pool connections at most.
const STARTS_IN_PARALLEL: usize = 16;
/// Most queues one claim may name.
const MAX_CLAIM_QUEUES: usize = 32;

/// A lease a worker asked for (claim or heartbeat), within [`LEASE_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease(Duration);

impl Lease {
    /// `lease_ms` milliseconds, if within [`LEASE_MS`]; the error names the field.
    pub fn parse(lease_ms: u64) -> Result<Self, ValidationError> {
        if LEASE_MS.contains(&lease_ms) {
            Ok(Self(Duration::from_millis(lease_ms)))
        } else {
            let (min, max) = (LEASE_MS.start(), LEASE_MS.end());
            Err(ValidationError::new(
                "lease_ms",
                format!("must be {min} to {max}"),
            ))
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    /// When this lease, taken at `now`, runs out.
    pub fn ends_at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        // At most LEASE_MS's end (minutes): the cast cannot truncate.
        now + Span::milliseconds(self.0.as_millis() as i64)
    }
}

/// A worker's claim, validated: who asks, from which queues (in that order of preference),
/// for how many jobs, how long to wait for one, and for which lease.
#[derive(Debug, Clone)]
pub struct WorkerClaim {
    pub worker_id: WorkerId,
    pub queues: Vec<QueueName>,
    pub max_jobs: usize,
    pub wait: Duration,
    pub lease: Lease,
}

impl WorkerClaim {
    /// Parses the body of `POST /api/v1/workers/claim`; the error names the first bad field.
    pub fn parse(request: &ClaimRequest) -> Result<Self, ValidationError> {
        let worker_id = WorkerId::parse(&request.worker_id)?;
        if request.queues.is_empty() || request.queues.len() > MAX_CLAIM_QUEUES {
            return Err(ValidationError::new(
                "queues",
                format!("name 1 to {MAX_CLAIM_QUEUES} queues"),
            ));
        }
        let queues = request
            .queues
            .iter()
            .map(|q| QueueName::parse(q))
            .collect::<Result<_, _>>()?;
        if !(1..=MAX_CLAIM_JOBS).contains(&request.max_jobs) {
            return Err(ValidationError::new(
                "max_jobs",
                format!("must be 1 to {MAX_CLAIM_JOBS}"),
            ));
        }
        if request.wait_ms > MAX_CLAIM_WAIT_MS {
            return Err(ValidationError::new(
                "wait_ms",
                format!("must be at most {MAX_CLAIM_WAIT_MS}"),
            ));
        }
        Ok(Self {
            worker_id,
            queues,
            max_jobs: request.max_jobs as usize,
            wait: Duration::from_millis(request.wait_ms),
            lease: Lease::parse(request.lease_ms)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The dispatch model could not be read or changed.
    #[error("the dispatch model (Redis) is unavailable; retry")]
    Unavailable(#[source] redis::RedisError),
    /// The read model is lost or being rebuilt from the event store: its dispatch sets
    /// cannot be trusted to hold every ready job until the rebuild ends.
    #[error(
        "the dispatch model is being rebuilt from the event store (namespace {0}); retry shortly"
    )]
    Rebuilding(String),
    /// Nothing started, and the write side could not decide on a claimed job (the claims
    /// went back to ready).
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl ClaimError {
    fn unavailable(error: redis::RedisError) -> Self {
        tracing::warn!(%error, "dispatch model unavailable");
        Self::Unavailable(error)
    }
}

/// Hands ready jobs to workers: the dispatch model of the live namespace under `prefix`, the
/// wake-ups of waiting claims, and the command bus that starts what was claimed. Cheap to
/// clone.
#[derive(Clone)]
pub struct ClaimService {
    bus: Arc<JobCommandBus>,
    dispatch: DispatchQueues,
    redis: ConnectionManager,
    prefix: String,
    wakeups: Arc<ReadyWakeups>,
    /// Cancelled when the server stops: a waiting claim answers at once (with no jobs), so
    /// the server's graceful shutdown does not wait out the long-polls.
    stopping: CancellationToken,
}

impl ClaimService {
    /// Claims from the dispatch model in `redis` under `prefix`; `client` (the same Redis)
    /// carries the subscription to wake-ups; waits end when `stopping` is cancelled. Call
    /// within a tokio runtime.
    pub fn new(
        bus: Arc<JobCommandBus>,
        redis: ConnectionManager,
        client: redis::Client,
        prefix: &str,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            bus,
            dispatch: DispatchQueues::new(redis.clone()),
            redis,
            prefix: prefix.to_owned(),
            wakeups: ReadyWakeups::subscribe(client, prefix),
            stopping,
        }
    }

    /// Up to `claim.max_jobs` started jobs of `tenant`, waiting up to `claim.wait` for one to
    /// become ready; empty when none did. Each `Start` is recorded with `metadata` (its time
    /// set when it runs).
    pub async fn claim(
        &self,
        tenant: &TenantId,
        metadata: &CommandMetadata,
        claim: &WorkerClaim,
    ) -> Result<Vec<ClaimedJob>, ClaimError> {
        let mut pass = self.clone();
        let queues: Vec<String> = claim.queues.iter().map(|q| q.as_str().to_owned()).collect();
        let deadline = Instant::now() + claim.wait;
        let signals: Vec<_> = queues
            .iter()
            .map(|queue| self.wakeups.signal(tenant.as_str(), queue))
            .collect();
        loop {
            // Listening before looking: a job announced during the look still wakes the wait.
            let woken = future::select_all(signals.iter().map(|signal| {
                let mut notified = Box::pin(signal.notified());
                notified.as_mut().enable();
                notified
            }));
            let jobs = pass.claim_once(tenant, metadata, claim, &queues).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !jobs.is_empty() || left.is_zero() || self.stopping.is_cancelled() {
                return Ok(jobs);
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(FALLBACK_POLL.min(left)) => {}
                _ = self.stopping.cancelled() => {}
            }
        }
    }

    /// One pass: the claim script, then `Start` for each claim. Claims the aggregate refuses
    /// (a stale view: the job was cancelled or started meanwhile) are skipped, the projector
    /// cleans their sets; a claim the write side could not decide on goes back to ready.
    async fn claim_once(
        &mut self,
        tenant: &TenantId,
        metadata: &CommandMetadata,
        claim: &WorkerClaim,
        queues: &[String],
    ) -> Result<Vec<ClaimedJob>, ClaimError> {
        let bus: &JobCommandBus = &self.bus;
        let clock = &bus.services().clock;
        let now = clock.now();
        let live = namespace::live(&mut self.redis, &self.prefix)
            .await
            .map_err(ClaimError::unavailable)?;
        if live.state != ModelState::Complete {
            return Err(ClaimError::Rebuilding(live.namespace));
        }
        let namespace = live.namespace;
        let claims = self
            .dispatch
            .claim(
                &namespace,
                tenant.as_str(),
                queues,
                claim.max_jobs,
                now.timestamp_millis(),
                claim.lease.duration(),
            )
            .await
            .map_err(ClaimError::unavailable)?;
        let lease_expires_at = claim.lease.ends_at(now);
        // The starts are independent commands on different jobs: run them side by side, in
        // claim order so the answer keeps the queue's priority order.
        let started: Vec<_> = stream::iter(claims)
            .map(|claimed| async move {
                let result = match claimed.job_id.parse::<Uuid>() {
                    Ok(job_id) => {
                        let start = JobCommand::Start {
                            worker_id: claim.worker_id.clone(),
                            attempt: claimed.attempt,
                            lease_expires_at,
                        };
                        let metadata = CommandMetadata {
                            occurred_at: clock.now(),
                            ..metadata.clone()
                        };
                        let started = bus.start(job_id, tenant, start, metadata).await;
                        Some(started.map(|(outcome, spec)| (job_id, outcome, spec)))
                    }
                    Err(_) => None,
                };
                (claimed, result)
            })
            .buffered(STARTS_IN_PARALLEL)
            .collect()
            .await;
        let mut jobs = Vec::with_capacity(started.len());
        let mut undecided = None;
        for (claimed, result) in started {
            match result {
                Some(Ok((job_id, outcome, spec))) => jobs.push(ClaimedJob {
                    job_id,
                    attempt: claimed.attempt,
                    job_type: spec.job_type.to_string(),
                    queue: claimed.queue,
                    payload: spec.payload,
                    priority: spec.priority.get(),
                    max_attempts: spec.retry.max_attempts,
                    timeout_secs: spec.timeout_secs.get().into(),
                    lease_expires_at,
                    sequence: outcome.sequence,
                }),
                // Relays stream a commit from the WAL a moment before it is visible to other
                // sessions, so under load a claim can find a job whose submit this session
                // cannot read yet: not stale, early. Back to ready, for the next claim.
                Some(Err(CommandError::Rejected(JobError::NotFound))) => {
                    tracing::debug!(job_id = %claimed.job_id, "claimed before its submit was visible; released");
                    self.release(&namespace, tenant, &claimed, now).await;
                }
                Some(Err(CommandError::Rejected(_) | CommandError::Conflict)) | None => {
                    tracing::debug!(job_id = %claimed.job_id, "stale claim skipped");
                }
                Some(Err(error)) => {
                    self.release(&namespace, tenant, &claimed, now).await;
                    undecided = Some(error);
                }
            }
        }
        match undecided {
            // Only when nothing started: the jobs that did must reach their worker.
            Some(error) if jobs.is_empty() => Err(error.into()),
            _ => Ok(jobs),
        }
    }

    /// Puts a claim that did not start back in ready.
    async fn release(
        &mut self,
        namespace: &str,
        tenant: &TenantId,
        claim: &Claim,
        now: DateTime<Utc>,
    ) {
        // Enqueued now, at its priority: behind its peers that were already waiting.
        if let Err(error) = self
            .dispatch
            .release(namespace, tenant.as_str(), claim, now.timestamp_millis())
            .await
        {
            tracing::warn!(%error, job_id = %claim.job_id, "claim not released; the reaper will requeue it once its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: serde_json::Value) -> Result<WorkerClaim, ValidationError> {
        WorkerClaim::parse(&serde_json::from_value(body).expect("a claim request"))
    }

    #[test]
    fn a_claim_is_parsed_with_the_protocol_defaults() {
        let claim = parsed(json!({"worker_id": "w-1", "queues": ["a", "b"]})).unwrap();
        assert_eq!(claim.worker_id.as_str(), "w-1");
        let queues: Vec<_> = claim.queues.iter().map(QueueName::as_str).collect();
        assert_eq!(queues, ["a", "b"]);
        assert_eq!((claim.max_jobs, claim.wait), (1, Duration::ZERO));
        assert_eq!(claim.lease.duration(), Duration::from_secs(30));
    }

    #[test]
    fn a_bad_claim_names_its_first_bad_field() {
        let queues: Vec<String> = (0..=MAX_CLAIM_QUEUES).map(|i| format!("q{i}")).collect();
        for (body, field) in [
            (json!({"worker_id": "", "queues": ["q"]}), "worker_id"),
            (json!({"worker_id": "w", "queues": []}), "queues"),
            (json!({"worker_id": "w", "queues": queues}), "queues"),
            (json!({"worker_id": "w", "queues": ["bad queue!"]}), "queue"),
            (
                json!({"worker_id": "w", "queues": ["q"], "max_jobs": 101}),
                "max_jobs",
            ),
            (
                json!({"worker_id": "w", "queues": ["q"], "wait_ms": 30_001}),
                "wait_ms",
            ),
            (
                json!({"worker_id": "w", "queues": ["q"], "lease_ms": 999}),
                "lease_ms",
            ),
        ] {
            let error = parsed(body.clone()).expect_err("refused");
            assert_eq!(error.field, field, "{body}: {error:?}");
        }
    }

    #[test]
    fn a_lease_ends_its_length_after_it_was_taken() {
        let now = Utc::now();
        let lease = Lease::parse(1_500).unwrap();
        assert_eq!(lease.ends_at(now), now + Span::milliseconds(1_500));
        assert!(Lease::parse(600_001).is_err());
    }
}

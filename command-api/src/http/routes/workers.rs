//! The worker protocol, usable from any language: claim jobs, heartbeat (extends the lease and
//! says whether the job was cancelled), complete, fail, release (give the attempt back
//! unfinished, uncounted). Every call names the attempt it works on, so a worker whose lease
//! ran out cannot report for an attempt another worker now runs.

use super::jobs::{execute, parse_job_id, CommandResponse};
use crate::bus::CommandError;
use crate::http::extract::{JsonBody, RequestContext};
use crate::http::{ApiError, AppState, WorkerDispatch};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Duration as Span, Utc};
use futures::future;
use futures::stream::{self, StreamExt};
use ordo_domain::spec::{check_storable_json, check_text, QueueName, WorkerId};
use ordo_domain::{JobCommand, JobError, JobStatus, ValidationError};
use ordo_protocol::worker::{
    ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, FailRequest, HeartbeatRequest,
    HeartbeatResponse, ReleaseRequest, LEASE_MS, MAX_CLAIM_JOBS, MAX_CLAIM_WAIT_MS,
};
use ordo_read_model::namespace;
use ordo_read_model::Claim;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often an empty long-poll looks again without a wake-up (see
/// [`ordo_read_model::ReadyWakeups`]): for delayed jobs and retries falling due, which
/// nothing announces, and for wake-ups lost to a reconnect.
const FALLBACK_POLL: Duration = Duration::from_millis(50);
/// Characters of a worker's error or release reason.
const MAX_REPORT_CHARS: usize = 10_000;
/// Start commands of one claim run side by side, on that many pool connections at most.
const STARTS_IN_PARALLEL: usize = 16;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workers/claim", post(claim))
        .route("/api/v1/jobs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/jobs/{id}/complete", post(complete))
        .route("/api/v1/jobs/{id}/fail", post(fail))
        .route("/api/v1/jobs/{id}/release", post(release_attempt))
}

/// `POST /api/v1/workers/claim`: up to `max_jobs` jobs of the caller's tenant from `queues`
/// (in that order of preference), waiting up to `wait_ms` for one to become ready.
async fn claim(
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(request): JsonBody<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let worker_id = WorkerId::parse(&request.worker_id)?;
    if request.queues.is_empty() || request.queues.len() > 32 {
        return Err(ValidationError::new("queues", "name 1 to 32 queues").into());
    }
    let queues = request
        .queues
        .iter()
        .map(|q| QueueName::parse(q).map(|q| q.as_str().to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=MAX_CLAIM_JOBS).contains(&request.max_jobs) {
        return Err(
            ValidationError::new("max_jobs", format!("must be 1 to {MAX_CLAIM_JOBS}")).into(),
        );
    }
    if request.wait_ms > MAX_CLAIM_WAIT_MS {
        return Err(ValidationError::new(
            "wait_ms",
            format!("must be at most {MAX_CLAIM_WAIT_MS}"),
        )
        .into());
    }
    check_lease(request.lease_ms)?;
    let mut dispatch = dispatch(&state)?.clone();
    let deadline = Instant::now() + Duration::from_millis(request.wait_ms);
    let signals: Vec<_> = queues
        .iter()
        .map(|queue| dispatch.wakeups.signal(ctx.tenant.as_str(), queue))
        .collect();
    loop {
        // Listening before looking: a job announced during the look still wakes the wait.
        let woken = future::select_all(signals.iter().map(|signal| {
            let mut notified = Box::pin(signal.notified());
            notified.as_mut().enable();
            notified
        }));
        let jobs = claim_once(&state, &ctx, &mut dispatch, &worker_id, &queues, &request).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !jobs.is_empty() || left.is_zero() {
            return Ok(Json(ClaimResponse { jobs }));
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(FALLBACK_POLL.min(left)) => {}
        }
    }
}

/// One pass: the claim script, then `Start` for each claim. Claims the aggregate refuses (a
/// stale view: the job was cancelled or started meanwhile) are skipped, the projector cleans
/// their sets; a claim the write side could not decide on goes back to ready.
async fn claim_once(
    state: &AppState,
    ctx: &RequestContext,
    dispatch: &mut WorkerDispatch,
    worker_id: &WorkerId,
    queues: &[String],
    request: &ClaimRequest,
) -> Result<Vec<ClaimedJob>, ApiError> {
    let now = state.bus.services().clock.now();
    let lease = Duration::from_millis(request.lease_ms);
    let namespace = namespace::active(&mut dispatch.redis, &dispatch.prefix)
        .await
        .map_err(unavailable)?;
    let claims = dispatch
        .dispatch
        .claim(
            &namespace,
            ctx.tenant.as_str(),
            queues,
            request.max_jobs as usize,
            now.timestamp_millis(),
            lease,
        )
        .await
        .map_err(unavailable)?;
    let lease_expires_at = now + Span::milliseconds(request.lease_ms as i64);
    // The starts are independent commands on different jobs: run them side by side, in claim
    // order so the answer keeps the queue's priority order.
    let started: Vec<_> = stream::iter(claims)
        .map(|claim| async move {
            let result = match claim.job_id.parse::<Uuid>() {
                Ok(job_id) => {
                    let start = JobCommand::Start {
                        worker_id: worker_id.clone(),
                        attempt: claim.attempt,
                        lease_expires_at,
                    };
                    let started = state
                        .bus
                        .start(job_id, &ctx.tenant, start, ctx.metadata(state))
                        .await;
                    Some(started.map(|(outcome, spec)| (job_id, outcome, spec)))
                }
                Err(_) => None,
            };
            (claim, result)
        })
        .buffered(STARTS_IN_PARALLEL)
        .collect()
        .await;
    let mut jobs = Vec::with_capacity(started.len());
    let mut undecided = None;
    for (claim, result) in started {
        match result {
            Some(Ok((job_id, outcome, spec))) => jobs.push(ClaimedJob {
                job_id,
                attempt: claim.attempt,
                job_type: spec.job_type.to_string(),
                queue: claim.queue,
                payload: spec.payload,
                priority: spec.priority.get(),
                max_attempts: spec.retry.max_attempts,
                timeout_secs: spec.timeout_secs.get().into(),
                lease_expires_at,
                sequence: outcome.sequence,
            }),
            // Relays stream a commit from the WAL a moment before it is visible to other
            // sessions, so under load a claim can find a job whose submit this session cannot
            // read yet: not stale, early. Back to ready, for the next claim.
            Some(Err(CommandError::Rejected(JobError::NotFound))) => {
                tracing::debug!(job_id = %claim.job_id, "claimed before its submit was visible; released");
                release(dispatch, &namespace, ctx, &claim, now).await;
            }
            Some(Err(CommandError::Rejected(_) | CommandError::Conflict)) | None => {
                tracing::debug!(job_id = %claim.job_id, "stale claim skipped");
            }
            Some(Err(error)) => {
                release(dispatch, &namespace, ctx, &claim, now).await;
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

async fn release(
    dispatch: &mut WorkerDispatch,
    namespace: &str,
    ctx: &RequestContext,
    claim: &Claim,
    now: DateTime<Utc>,
) {
    // Enqueued now, at its priority: behind its peers that were already waiting.
    if let Err(error) = dispatch
        .dispatch
        .release(
            namespace,
            ctx.tenant.as_str(),
            claim,
            now.timestamp_millis(),
        )
        .await
    {
        tracing::warn!(%error, job_id = %claim.job_id, "claim not released; the reaper will requeue it once its lease ends");
    }
}

fn check_lease(lease_ms: u64) -> Result<(), ValidationError> {
    if LEASE_MS.contains(&lease_ms) {
        Ok(())
    } else {
        let (min, max) = (LEASE_MS.start(), LEASE_MS.end());
        Err(ValidationError::new(
            "lease_ms",
            format!("must be {min} to {max}"),
        ))
    }
}

fn dispatch(state: &AppState) -> Result<&WorkerDispatch, ApiError> {
    state.dispatch.as_ref().ok_or_else(|| {
        ApiError::Unavailable("the worker protocol needs Redis (ORDO_REDIS_URL)".into())
    })
}

fn unavailable(error: redis::RedisError) -> ApiError {
    tracing::warn!(%error, "dispatch model unavailable");
    ApiError::Unavailable("the dispatch model (Redis) is unavailable; retry".into())
}

/// `POST /api/v1/jobs/{id}/heartbeat`: the attempt is alive; its lease now ends `lease_ms`
/// from now. A cancelled job answers `cancelled: true` instead of an error.
async fn heartbeat(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    check_lease(request.lease_ms)?;
    let job_id = parse_job_id(&id)?;
    let lease_expires_at =
        state.bus.services().clock.now() + Span::milliseconds(request.lease_ms as i64);
    let command = JobCommand::ExtendLease {
        attempt: request.attempt,
        lease_expires_at,
    };
    match state
        .bus
        .execute(job_id, &ctx.tenant, command, ctx.metadata(&state))
        .await
    {
        Ok(_) => Ok(Json(HeartbeatResponse {
            cancelled: false,
            lease_expires_at: Some(lease_expires_at),
        })),
        Err(CommandError::Rejected(JobError::InvalidTransition {
            status: JobStatus::Cancelled,
            ..
        })) => Ok(Json(HeartbeatResponse {
            cancelled: true,
            lease_expires_at: None,
        })),
        Err(error) => Err(error.into()),
    }
}

/// `POST /api/v1/jobs/{id}/complete`: attempt `attempt` succeeded with `result`.
async fn complete(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CompleteRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    check_storable_json("result", &request.result)?;
    let command = JobCommand::Complete {
        attempt: request.attempt,
        result: request.result,
    };
    execute(&state, &ctx, &id, command).await
}

/// `POST /api/v1/jobs/{id}/fail`: attempt `attempt` failed; a retryable failure is retried
/// after its backoff while attempts remain, anything else dead-letters the job.
async fn fail(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<FailRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    check_text("error", &request.error, MAX_REPORT_CHARS)?;
    let command = JobCommand::Fail {
        attempt: request.attempt,
        error: request.error,
        retryable: request.retryable,
    };
    execute(&state, &ctx, &id, command).await
}

/// `POST /api/v1/jobs/{id}/release`: the worker gives attempt `attempt` back unfinished (it is
/// shutting down); the job is QUEUED again at once and the attempt does not count against
/// `max_attempts`.
async fn release_attempt(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    check_text("reason", &request.reason, MAX_REPORT_CHARS)?;
    let command = JobCommand::Release {
        attempt: request.attempt,
        reason: request.reason,
    };
    execute(&state, &ctx, &id, command).await
}

//! The worker protocol, usable from any language: claim jobs, heartbeat (extends the lease and
//! says whether the job was cancelled), complete, fail, release (give the attempt back
//! unfinished, uncounted). Every call names the attempt it works on, so a worker whose lease
//! ran out cannot report for an attempt another worker now runs.

use crate::bus::CommandError;
use crate::claims::{Lease, WorkerClaim};
use crate::http::command::{execute, parse_job_id, CommandResponse};
use crate::http::extract::{JsonBody, RequestContext};
use crate::http::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ordo_domain::spec::{check_storable_json, check_text};
use ordo_domain::{JobCommand, JobError, JobStatus};
use ordo_protocol::worker::{
    ClaimRequest, ClaimResponse, CompleteRequest, FailRequest, HeartbeatRequest, HeartbeatResponse,
    ReleaseRequest,
};

/// Characters of a worker's error or release reason.
const MAX_REPORT_CHARS: usize = 10_000;

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
    let claim = WorkerClaim::parse(&request)?;
    let claims = state.claims.as_ref().ok_or_else(|| {
        ApiError::Unavailable("the worker protocol needs Redis (ORDO_REDIS_URL)".into())
    })?;
    let jobs = claims
        .claim(&ctx.tenant, &ctx.metadata(&state), &claim)
        .await?;
    Ok(Json(ClaimResponse { jobs }))
}

/// `POST /api/v1/jobs/{id}/heartbeat`: the attempt is alive; its lease now ends `lease_ms`
/// from now. A cancelled job answers `cancelled: true` instead of an error.
async fn heartbeat(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let lease = Lease::parse(request.lease_ms)?;
    let job_id = parse_job_id(&id)?;
    let lease_expires_at = lease.ends_at(state.bus.services().clock.now());
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

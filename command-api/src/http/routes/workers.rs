//! The worker protocol, usable from any language: claim jobs, heartbeat (extends the lease and
//! says whether the job was cancelled), complete, fail, release (give the attempt back
//! unfinished, uncounted). Every call names the attempt it works on, so a worker whose lease
//! ran out cannot report for an attempt another worker now runs. Reports also go many at a
//! time (`POST /api/v1/workers/reports`) or ride on the next claim (its `reports`), so a busy
//! worker spends one round trip per batch of jobs instead of one per job.

use crate::bus::CommandError;
use crate::claims::{Lease, WorkerClaim};
use crate::http::command::{accepted, parse_job_id, refused, CommandResponse};
use crate::http::extract::{check_batch_len, BatchJsonBody, JsonBody, RequestContext};
use crate::http::{ApiError, AppState};
use crate::reports::{self, ReportError};
use crate::CommandOutcome;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ordo_domain::{JobCommand, JobError, JobStatus};
use ordo_protocol::worker::{
    AttemptReport, ClaimRequest, ClaimResponse, CompleteRequest, FailRequest, HeartbeatRequest,
    HeartbeatResponse, ReleaseRequest, ReportResult, ReportsRequest, ReportsResponse, MAX_REPORTS,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/jobs/{id}/complete", post(complete))
        .route("/api/v1/jobs/{id}/fail", post(fail))
        .route("/api/v1/jobs/{id}/release", post(release_attempt))
}

/// The calls that carry many reports (each with its result), under the batch body limit.
pub fn batch_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workers/claim", post(claim))
        .route("/api/v1/workers/reports", post(report_many))
}

/// `POST /api/v1/workers/claim`: up to `max_jobs` jobs of the caller's tenant from `queues`
/// (in that order of preference), waiting up to `wait_ms` for one to become ready. The
/// `reports` it carries are applied alongside; their results come back in `reports`.
async fn claim(
    State(state): State<AppState>,
    ctx: RequestContext,
    BatchJsonBody(mut request): BatchJsonBody<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let claim = WorkerClaim::parse(&request)?;
    check_batch_len("reports", request.reports.len(), 0, MAX_REPORTS)?;
    let claims = state.claims.as_ref().ok_or_else(|| {
        ApiError::Unavailable("the worker protocol needs Redis (ORDO_REDIS_URL)".into())
    })?;
    let reports = std::mem::take(&mut request.reports);
    let metadata = ctx.metadata(&state);
    if reports.is_empty() {
        let jobs = claims.claim(&ctx.tenant, &metadata, &claim).await?;
        return Ok(Json(ClaimResponse {
            jobs,
            reports: Vec::new(),
            claim_problem: None,
        }));
    }
    // Side by side: the reports' events and the claim's starts share group commits, so the
    // claim takes one commit's time instead of two.
    let (applied, claimed) = tokio::join!(
        reports::apply(&state.bus, &ctx.tenant, &metadata, reports),
        claims.claim(&ctx.tenant, &metadata, &claim)
    );
    let reports = results(applied);
    // The reports are applied: their results must reach the worker whatever the claim did.
    let (jobs, claim_problem) = match claimed {
        Ok(jobs) => (jobs, None),
        Err(error) => (
            Vec::new(),
            Some(ApiError::from(error).into_problem().to_json()),
        ),
    };
    Ok(Json(ClaimResponse {
        jobs,
        reports,
        claim_problem,
    }))
}

/// `POST /api/v1/workers/reports`: `{"reports": [...]}`, 1 to 1,000 reports, each applied on
/// its own; 200 with one result per report in order (see [`ReportResult`]).
async fn report_many(
    State(state): State<AppState>,
    ctx: RequestContext,
    BatchJsonBody(request): BatchJsonBody<ReportsRequest>,
) -> Result<Json<ReportsResponse>, ApiError> {
    check_batch_len("reports", request.reports.len(), 1, MAX_REPORTS)?;
    let metadata = ctx.metadata(&state);
    let applied = reports::apply(&state.bus, &ctx.tenant, &metadata, request.reports).await;
    Ok(Json(ReportsResponse {
        results: results(applied),
    }))
}

fn results(applied: Vec<Result<CommandOutcome, ReportError>>) -> Vec<ReportResult> {
    applied
        .into_iter()
        .map(|result| match result {
            Ok(outcome) => accepted(outcome, 200),
            Err(error) => refused(error.into()),
        })
        .collect()
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
    let report = AttemptReport::Completed {
        job_id: parse_job_id(&id)?,
        attempt: request.attempt,
        result: request.result,
    };
    report_one(&state, &ctx, report).await
}

/// `POST /api/v1/jobs/{id}/fail`: attempt `attempt` failed; a retryable failure is retried
/// after its backoff while attempts remain, anything else dead-letters the job.
async fn fail(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<FailRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    let report = AttemptReport::Failed {
        job_id: parse_job_id(&id)?,
        attempt: request.attempt,
        error: request.error,
        retryable: request.retryable,
    };
    report_one(&state, &ctx, report).await
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
    let report = AttemptReport::Released {
        job_id: parse_job_id(&id)?,
        attempt: request.attempt,
        reason: request.reason,
    };
    report_one(&state, &ctx, report).await
}

async fn report_one(
    state: &AppState,
    ctx: &RequestContext,
    report: AttemptReport,
) -> Result<Json<CommandResponse>, ApiError> {
    let outcome = reports::apply_one(&state.bus, &ctx.tenant, ctx.metadata(state), report).await?;
    Ok(Json(outcome.into()))
}

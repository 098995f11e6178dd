//! What the routes that run job commands share: the job id of the path, running a command
//! for the caller, and the answer to an accepted command.

use crate::bus::CommandOutcome;
use crate::http::extract::RequestContext;
use crate::http::{ApiError, AppState};
use axum::Json;
use ordo_domain::JobCommand;
use ordo_protocol::jobs::BatchJobResult;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The answer to every accepted command.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandResponse {
    pub job_id: Uuid,
    pub status: ordo_domain::JobStatus,
    pub sequence: u64,
}

impl From<CommandOutcome> for CommandResponse {
    fn from(outcome: CommandOutcome) -> Self {
        Self {
            job_id: outcome.job_id,
            status: outcome.status,
            sequence: outcome.sequence,
        }
    }
}

/// The job id of a path; anything but a UUID names no job (404).
pub fn parse_job_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no job {id:?}: job ids are UUIDs")))
}

/// Runs a command against the job `id` of the caller's tenant.
pub async fn execute(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    command: JobCommand,
) -> Result<Json<CommandResponse>, ApiError> {
    let job_id = parse_job_id(id)?;
    let outcome = state
        .bus
        .execute(job_id, &ctx.tenant, command, ctx.metadata(state))
        .await?;
    Ok(Json(outcome.into()))
}

/// The result of an item of a batch call (a job of a bulk submit, a worker's report) that
/// was accepted with `status`.
pub fn accepted(outcome: CommandOutcome, status: u16) -> BatchJobResult {
    BatchJobResult {
        status,
        job_id: Some(outcome.job_id),
        job_status: serde_json::to_value(outcome.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        sequence: Some(outcome.sequence),
        problem: None,
    }
}

/// The result of an item of a batch call that was refused: its status and problem document.
pub fn refused(error: ApiError) -> BatchJobResult {
    let problem = error.into_problem();
    BatchJobResult {
        status: problem.status.as_u16(),
        job_id: None,
        job_status: None,
        sequence: None,
        problem: Some(problem.to_json()),
    }
}

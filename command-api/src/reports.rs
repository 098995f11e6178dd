//! How a worker's attempts ended: complete, fail, release. One at a time from
//! `POST /api/v1/jobs/{id}/complete|fail|release`, or many in one round trip from
//! `POST /api/v1/workers/reports` and a claim's `reports` (complete-and-claim-next). Every
//! path checks a report the same way and runs it as one command on its job; the reports of
//! one call run side by side, so the event store's group commit appends them in one statement.

use crate::bus::{CommandError, CommandOutcome, JobCommandBus};
use futures::stream::{self, StreamExt};
use ordo_domain::spec::{check_storable_json, check_text, TenantId};
use ordo_domain::{CommandMetadata, JobCommand, ValidationError};
use ordo_protocol::worker::AttemptReport;
use uuid::Uuid;

/// Characters of a worker's error or release reason.
const MAX_REPORT_CHARS: usize = 10_000;
/// Reports of one call in the bus at once (as many as a claim starts side by side).
const REPORTS_IN_PARALLEL: usize = 16;

/// Why a report was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The job a report is about and the command it asks for, once its text and result can be
/// stored.
pub fn command_of(report: AttemptReport) -> Result<(Uuid, JobCommand), ValidationError> {
    Ok(match report {
        AttemptReport::Completed {
            job_id,
            attempt,
            result,
        } => {
            check_storable_json("result", &result)?;
            (job_id, JobCommand::Complete { attempt, result })
        }
        AttemptReport::Failed {
            job_id,
            attempt,
            error,
            retryable,
        } => {
            check_text("error", &error, MAX_REPORT_CHARS)?;
            let command = JobCommand::Fail {
                attempt,
                error,
                retryable,
            };
            (job_id, command)
        }
        AttemptReport::Released {
            job_id,
            attempt,
            reason,
        } => {
            check_text("reason", &reason, MAX_REPORT_CHARS)?;
            (job_id, JobCommand::Release { attempt, reason })
        }
    })
}

/// Applies one report for `tenant`.
pub async fn apply_one(
    bus: &JobCommandBus,
    tenant: &TenantId,
    metadata: CommandMetadata,
    report: AttemptReport,
) -> Result<CommandOutcome, ReportError> {
    let (job_id, command) = command_of(report)?;
    Ok(bus.execute(job_id, tenant, command, metadata).await?)
}

/// Applies each report on its own (one refused report does not hold up the others) and
/// answers one result per report, in order. Each command is stamped when it runs.
pub async fn apply(
    bus: &JobCommandBus,
    tenant: &TenantId,
    metadata: &CommandMetadata,
    reports: Vec<AttemptReport>,
) -> Vec<Result<CommandOutcome, ReportError>> {
    let clock = &bus.services().clock;
    stream::iter(reports)
        .map(|report| {
            let metadata = CommandMetadata {
                occurred_at: clock.now(),
                ..metadata.clone()
            };
            apply_one(bus, tenant, metadata, report)
        })
        .buffered(REPORTS_IN_PARALLEL)
        .collect()
        .await
}

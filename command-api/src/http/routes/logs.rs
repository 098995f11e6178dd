//! The log lines of the worker protocol: a worker sends what its job printed, the command API
//! produces it to Kafka as one batch of contract v2 ([`ordo_protocol::logs`]), keyed by the
//! job. Like the other calls it names its attempt, so a worker whose lease ran out cannot
//! write into the attempt another worker now runs; only this endpoint sets `attempt`.

use crate::bus::CommandError;
use crate::http::command::parse_job_id;
use crate::http::extract::{JsonBody, RequestContext};
use crate::http::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use ordo_common::logs::LogSink;
use ordo_domain::spec::{check_storable_json, check_storable_text, WorkerId};
use ordo_domain::{Job, JobError, JobStatus, ValidationError};
use ordo_protocol::logs::{flatten, LogBatch, LogEntry, VERSION};
use ordo_protocol::worker::{LogLine, LogRequest};
use serde::Serialize;

/// The `service` and `source` of lines a job's worker wrote.
pub const JOB_SERVICE: &str = "job";

const MAX_LINES: usize = 1000;
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
const MAX_FIELDS_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/jobs/{id}/logs", post(append))
}

#[derive(Debug, Serialize)]
pub struct LogLinesResponse {
    pub accepted: usize,
}

/// `POST /api/v1/jobs/{id}/logs`: 202 once Kafka holds every line; 409 unless the job is
/// RUNNING attempt `attempt`.
async fn append(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<LogRequest>,
) -> Result<(StatusCode, Json<LogLinesResponse>), ApiError> {
    let job_id = parse_job_id(&id)?;
    if !(1..=MAX_LINES).contains(&request.lines.len()) {
        return Err(ValidationError::new("lines", format!("send 1 to {MAX_LINES} lines")).into());
    }
    let worker_id = request
        .worker_id
        .as_deref()
        .map(WorkerId::parse)
        .transpose()?;
    for (i, line) in request.lines.iter().enumerate() {
        check_line(i, line)?;
    }
    let sink = sink(&state)?;

    let job = state.bus.job(job_id, &ctx.tenant).await?;
    require_running(&job, request.attempt).map_err(CommandError::Rejected)?;

    let received_at = state.bus.services().clock.now();
    let lines = request.lines.len();
    let batch = LogBatch {
        v: VERSION,
        tenant: ctx.tenant.to_string(),
        service: JOB_SERVICE.to_owned(),
        source: JOB_SERVICE.to_owned(),
        job_id: Some(job_id),
        attempt: Some(request.attempt),
        worker_id: worker_id.map(|w| w.as_str().to_owned()),
        received_at,
        lines: request
            .lines
            .into_iter()
            .map(|line| LogEntry {
                attributes: flatten(line.fields.unwrap_or_default()),
                ..LogEntry::new(line.ts.unwrap_or(received_at), line.level, line.message)
            })
            .collect(),
    };
    let logs = state.metrics.logs();
    sink.send(std::slice::from_ref(&batch))
        .await
        .map_err(|error| {
            tracing::warn!(%error, %job_id, "log lines not produced");
            logs.rejected_request(JOB_SERVICE, "unavailable", lines);
            ApiError::Unavailable(format!(
                "the log lines did not reach Kafka ({error}); retry"
            ))
        })?;
    logs.accepted(JOB_SERVICE, lines);
    Ok((
        StatusCode::ACCEPTED,
        Json(LogLinesResponse { accepted: lines }),
    ))
}

/// Line `i` fits the topic and the logs store.
fn check_line(i: usize, line: &LogLine) -> Result<(), ValidationError> {
    let field = |name: &str| format!("lines[{i}].{name}");
    if line.message.len() > MAX_MESSAGE_BYTES {
        return Err(ValidationError::new(
            field("message"),
            format!("must be at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    check_storable_text(&field("message"), &line.message)?;
    if let Some(fields) = &line.fields {
        let size = serde_json::to_vec(fields)
            .expect("JSON values serialize")
            .len();
        if size > MAX_FIELDS_BYTES {
            return Err(ValidationError::new(
                field("fields"),
                format!("must be at most {MAX_FIELDS_BYTES} bytes as JSON"),
            ));
        }
        fields.iter().try_for_each(|(key, value)| {
            check_storable_text(&field("fields"), key)?;
            check_storable_json(&field("fields"), value)
        })?;
    }
    Ok(())
}

/// What `complete` and `fail` demand of a job, checked without writing anything.
fn require_running(job: &Job, attempt: u32) -> Result<(), JobError> {
    let status = job.status().ok_or(JobError::NotFound)?;
    if status != JobStatus::Running {
        Err(JobError::InvalidTransition {
            command: "append logs to",
            status,
        })
    } else if job.attempt() != attempt {
        Err(JobError::StaleAttempt {
            expected: job.attempt(),
            got: attempt,
            status,
        })
    } else {
        Ok(())
    }
}

fn sink(state: &AppState) -> Result<&LogSink, ApiError> {
    state
        .logs
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("job logs need Kafka (ORDO_KAFKA_BROKERS)".into()))
}

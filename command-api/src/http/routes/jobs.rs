//! Job commands: submit (one, or up to 1,000 at once), cancel, requeue; and a job's history
//! from the event store.

use crate::bus::{NewJob, MAX_BATCH_JOBS};
use crate::http::command::{accepted, execute, parse_job_id, refused, CommandResponse};
use crate::http::extract::{
    check_batch_len, BatchJsonBody, IdempotencyKey, JsonBody, OptionalJsonBody, RequestContext,
};
use crate::http::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ordo_domain::spec::{
    check_storable_json, check_text, JobName, JobType, Labels, Priority, QueueName, TenantId,
    TimeoutSecs,
};
use ordo_domain::{EventEnvelope, JobCommand, JobSpec, RetryPolicy, ValidationError};
use ordo_protocol::jobs::{BatchJobResult, BatchSubmitResponse, IDEMPOTENCY_KEY_FIELD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", post(submit))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/requeue", post(requeue))
        .route("/api/v1/jobs/{id}/events", get(events))
}

/// `POST /api/v1/jobs/batch`, apart because its body limit is its own.
pub fn batch_routes() -> Router<AppState> {
    Router::new().route("/api/v1/jobs/batch", post(submit_batch))
}

/// The body of `POST /api/v1/jobs/batch`. Each job is taken as any JSON value first, so a
/// malformed job is refused alone (its own 422) instead of the whole batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmitBody {
    pub jobs: Vec<Value>,
}

/// One job of a batch: the body of `POST /api/v1/jobs` with an optional `idempotency_key`
/// (the single submit's `Idempotency-Key` header). Field names in its errors are relative to
/// the job.
fn parse_batch_job(
    job: Value,
    tenant: &TenantId,
    defaults: RetryPolicy,
) -> Result<NewJob, ValidationError> {
    let Value::Object(mut fields) = job else {
        return Err(ValidationError::new("job", "must be a JSON object"));
    };
    let idempotency_key = match fields.remove(IDEMPOTENCY_KEY_FIELD) {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => {
            let visible = key.chars().all(|c| c == ' ' || c.is_ascii_graphic());
            if key.is_empty() || key.len() > 200 || !visible {
                return Err(ValidationError::new(
                    IDEMPOTENCY_KEY_FIELD,
                    "must be 1 to 200 visible ASCII characters",
                ));
            }
            Some(key)
        }
        Some(_) => {
            return Err(ValidationError::new(
                IDEMPOTENCY_KEY_FIELD,
                "must be a string",
            ))
        }
    };
    let request: SubmitJobRequest = serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "job".to_owned() } else { path };
            ValidationError::new(field, e.into_inner().to_string())
        })?;
    Ok(NewJob {
        spec: request.into_spec(tenant.clone(), defaults)?,
        idempotency_key,
    })
}

/// The body of `POST /api/v1/jobs`. Unknown fields are refused so a typo never goes unnoticed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJobRequest {
    #[serde(rename = "type")]
    pub job_type: String,
    pub name: Option<String>,
    pub queue: Option<String>,
    pub payload: Option<Value>,
    pub priority: Option<i64>,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: Option<i64>,
    pub backoff: Option<BackoffRequest>,
    pub timeout_secs: Option<i64>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffRequest {
    pub initial_delay_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub max_delay_ms: Option<u64>,
}

impl SubmitJobRequest {
    /// Parses the request into a job specification; the error names the first bad field.
    pub fn into_spec(
        self,
        tenant: TenantId,
        defaults: RetryPolicy,
    ) -> Result<JobSpec, ValidationError> {
        let job_type = JobType::parse(&self.job_type)?;
        let payload = self.payload.unwrap_or(Value::Object(Default::default()));
        check_storable_json("payload", &payload)?;
        let backoff = self.backoff.unwrap_or_default();
        let max_attempts = match self.max_attempts {
            Some(n) => u32::try_from(n)
                .map_err(|_| ValidationError::new("max_attempts", "must be between 1 and 100"))?,
            None => defaults.max_attempts,
        };
        let retry = RetryPolicy {
            max_attempts,
            initial_delay_ms: backoff
                .initial_delay_ms
                .unwrap_or(defaults.initial_delay_ms),
            multiplier: backoff.multiplier.unwrap_or(defaults.multiplier),
            max_delay_ms: backoff.max_delay_ms.unwrap_or(defaults.max_delay_ms),
        }
        .validate()?;
        Ok(JobSpec {
            tenant,
            name: JobName::parse(self.name.as_deref().unwrap_or(job_type.as_str()))?,
            queue: QueueName::parse(self.queue.as_deref().unwrap_or("default"))?,
            job_type,
            payload,
            priority: self
                .priority
                .map(Priority::parse)
                .transpose()?
                .unwrap_or_default(),
            run_at: self.run_at,
            retry,
            timeout_secs: self
                .timeout_secs
                .map(TimeoutSecs::parse)
                .transpose()?
                .unwrap_or_default(),
            labels: Labels::parse(self.labels.unwrap_or_default())?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub job_id: Uuid,
    pub events: Vec<EventEnvelope>,
}

/// `POST /api/v1/jobs`: 201 with the new job; 200 with the existing one when an
/// `Idempotency-Key` was seen before.
async fn submit(
    State(state): State<AppState>,
    ctx: RequestContext,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<SubmitJobRequest>,
) -> Result<Response, ApiError> {
    let spec = request.into_spec(ctx.tenant.clone(), state.config.retry_defaults)?;
    let outcome = state
        .bus
        .submit(spec, key.as_deref(), ctx.metadata(&state))
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/jobs/{}", outcome.job_id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(CommandResponse::from(outcome)),
    )
        .into_response())
}

/// `POST /api/v1/jobs/batch`: `{"jobs": [...]}`, 1 to 1,000 jobs, each created or refused on
/// its own (one append for all created); 200 with one result per job in request order. A
/// failing event store answers 503 and creates none.
async fn submit_batch(
    State(state): State<AppState>,
    ctx: RequestContext,
    BatchJsonBody(body): BatchJsonBody<BatchSubmitBody>,
) -> Result<Json<BatchSubmitResponse>, ApiError> {
    check_batch_len("jobs", body.jobs.len(), 1, MAX_BATCH_JOBS)?;
    let mut results: Vec<Option<BatchJobResult>> = Vec::with_capacity(body.jobs.len());
    let mut valid = Vec::with_capacity(body.jobs.len());
    for job in body.jobs {
        match parse_batch_job(job, &ctx.tenant, state.config.retry_defaults) {
            Ok(job) => {
                valid.push(job);
                results.push(None);
            }
            Err(e) => results.push(Some(refused(e.into()))),
        }
    }
    let mut outcomes = state
        .bus
        .submit_batch(valid, ctx.metadata(&state))
        .await?
        .into_iter();
    let results = results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| match outcomes.next() {
                Some(Ok(outcome)) => {
                    let status = if outcome.created { 201 } else { 200 };
                    accepted(outcome, status)
                }
                Some(Err(e)) => refused(e.into()),
                None => refused(ApiError::Command(crate::bus::CommandError::Internal(
                    "a job of the batch got no answer".into(),
                ))),
            })
        })
        .collect();
    Ok(Json(BatchSubmitResponse { results }))
}

/// `POST /api/v1/jobs/{id}/cancel` with an optional `{"reason": "..."}`.
async fn cancel(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    OptionalJsonBody(request): OptionalJsonBody<CancelRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    let reason = request
        .reason
        .unwrap_or_else(|| format!("cancelled by {}", ctx.actor));
    check_text("reason", &reason, 1_000)?;
    execute(&state, &ctx, &id, JobCommand::Cancel { reason }).await
}

/// `POST /api/v1/jobs/{id}/requeue`: a dead-lettered job gets a new cycle of attempts.
async fn requeue(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<CommandResponse>, ApiError> {
    execute(&state, &ctx, &id, JobCommand::Requeue).await
}

/// `GET /api/v1/jobs/{id}/events`: every event of the job, oldest first, as on the wire.
async fn events(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let job_id = parse_job_id(&id)?;
    let events = state.bus.history(job_id, &ctx.tenant).await?;
    Ok(Json(HistoryResponse { job_id, events }))
}

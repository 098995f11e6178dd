//! Job commands: submit, cancel, requeue; and a job's history from the event store.

use crate::http::command::{execute, parse_job_id, CommandResponse};
use crate::http::extract::{IdempotencyKey, JsonBody, OptionalJsonBody, RequestContext};
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

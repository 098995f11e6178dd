//! The JSON of a bulk submit, `POST /api/v1/jobs/batch`: what a worker (enqueueing follow-up
//! jobs) or the CLI sends, and the per-job answers it gets back, in request order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Most jobs one bulk submit may carry; more are refused whole (422).
pub const MAX_BATCH_JOBS: usize = 1_000;

/// The field of a batch's job that carries its idempotency key (the single submit takes it
/// in the `Idempotency-Key` header).
pub const IDEMPOTENCY_KEY_FIELD: &str = "idempotency_key";

/// One job of a bulk submit: the body of `POST /api/v1/jobs` plus an optional idempotency key.
/// Fields left `None` take the server's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// `{"initial_delay_ms", "multiplier", "max_delay_ms"}`, each optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// A repeat with the same key and the same job answers 200 with the job the first created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The body of `POST /api/v1/jobs/batch`. The server takes each job as any JSON object (see
/// [`NewJob`] for its fields), so one malformed job is refused alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchSubmitRequest<J = NewJob> {
    pub jobs: Vec<J>,
}

/// The answer of `POST /api/v1/jobs/batch`: one result per job, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchSubmitResponse {
    pub results: Vec<BatchJobResult>,
}

/// What happened to one job of a batch: `status` is what `POST /api/v1/jobs` would have
/// answered: 201 created, 200 an idempotent repeat, 4xx refused (`problem` says why; nothing
/// of this job was written).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchJobResult {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    /// The job's status (`QUEUED`, `SCHEDULED`, …) when it was created or found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    /// The sequence of the job's last event: query endpoints can wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The problem+json document of a refused job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Value>,
}

impl BatchJobResult {
    /// Created (201) or found by its idempotency key (200).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

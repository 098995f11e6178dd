//! The wire shapes of the worker protocol (`/api/v1/workers/claim`, `/api/v1/jobs/{id}/…`),
//! shared by the command API, which serves them, and Ordo's own worker runtime, which calls
//! them; a worker in another language sends the same JSON. Requests refuse unknown fields, so
//! a misspelt option is an error rather than a silent default.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::ops::RangeInclusive;
use uuid::Uuid;

/// Lease a claim or heartbeat asks for when it does not say.
pub const DEFAULT_LEASE_MS: u64 = 30_000;
/// The leases a claim or heartbeat may ask for.
pub const LEASE_MS: RangeInclusive<u64> = 1_000..=600_000;
/// Most jobs one claim may ask for.
pub const MAX_CLAIM_JOBS: u32 = 100;
/// Longest long-poll wait of a claim.
pub const MAX_CLAIM_WAIT_MS: u64 = 30_000;
/// Most reports one call may carry (`POST /api/v1/workers/reports`, or riding on a claim).
pub const MAX_REPORTS: usize = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// In order of preference.
    pub queues: Vec<String>,
    #[serde(default = "one")]
    pub max_jobs: u32,
    /// Long-poll: how long to wait for a job when none is ready.
    #[serde(default)]
    pub wait_ms: u64,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How attempts this worker ran ended, applied alongside the claim: complete-and-claim-next
    /// in one round trip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<AttemptReport>,
}

fn one() -> u32 {
    1
}

fn default_lease_ms() -> u64 {
    DEFAULT_LEASE_MS
}

/// A claimed job: everything a worker needs to run attempt `attempt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimedJob {
    pub job_id: Uuid,
    pub attempt: u32,
    #[serde(rename = "type")]
    pub job_type: String,
    pub queue: String,
    pub payload: Value,
    pub priority: u8,
    pub max_attempts: u32,
    pub timeout_secs: u64,
    pub lease_expires_at: DateTime<Utc>,
    pub sequence: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub jobs: Vec<ClaimedJob>,
    /// One result per report the claim carried, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportResult>,
    /// Why no job was claimed (a problem+json document), when the claim carried reports: they
    /// were applied, so the answer is a 200 that holds their results, and the claim failed
    /// after them (e.g. 503 while the dispatch model is rebuilt). Without reports a failed
    /// claim answers its own status instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_problem: Option<Value>,
}

/// How an attempt ended, as its worker reports it: one item of `POST /api/v1/workers/reports`
/// or of a claim's `reports`. The same as the bodies of `POST /api/v1/jobs/{id}/complete`,
/// `…/fail` and `…/release`, with the job named in the item and `outcome` saying which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase", deny_unknown_fields)]
pub enum AttemptReport {
    Completed {
        job_id: Uuid,
        attempt: u32,
        #[serde(default)]
        result: Value,
    },
    Failed {
        job_id: Uuid,
        attempt: u32,
        error: String,
        /// A permanent failure dead-letters the job at once.
        #[serde(default = "retryable_by_default")]
        retryable: bool,
    },
    /// Given back unfinished (the worker is shutting down); the attempt does not count.
    Released {
        job_id: Uuid,
        attempt: u32,
        reason: String,
    },
}

impl AttemptReport {
    pub fn job_id(&self) -> Uuid {
        match self {
            Self::Completed { job_id, .. }
            | Self::Failed { job_id, .. }
            | Self::Released { job_id, .. } => *job_id,
        }
    }
}

/// `POST /api/v1/workers/reports`: 1 to [`MAX_REPORTS`] reports, each applied on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsRequest {
    pub reports: Vec<AttemptReport>,
}

/// One result per report, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportsResponse {
    pub results: Vec<ReportResult>,
}

/// The result of one report: the shape of a batch submit's results (200 with the job's new
/// status and sequence, or the status and problem+json of a refusal: 409 when the attempt
/// is no longer the job's running one).
pub type ReportResult = crate::jobs::BatchJobResult;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub attempt: u32,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// True when the job was cancelled: the worker should stop it and report nothing more.
    pub cancelled: bool,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub attempt: u32,
    #[serde(default)]
    pub result: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub attempt: u32,
    pub error: String,
    /// A permanent failure dead-letters the job at once.
    #[serde(default = "retryable_by_default")]
    pub retryable: bool,
}

fn retryable_by_default() -> bool {
    true
}

/// `POST /api/v1/jobs/{id}/release`: the worker gives attempt `attempt` back unfinished (it is
/// shutting down); the job is queued again and the attempt does not count.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub attempt: u32,
    pub reason: String,
}

/// `POST /api/v1/jobs/{id}/logs`: lines a job's attempt wrote, for the log pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRequest {
    pub attempt: u32,
    #[serde(default)]
    pub worker_id: Option<String>,
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    /// When the line was written; the server's clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<DateTime<Utc>>,
    /// Structured context of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
}

/// A line's level: the one of every log line Ordo stores (aliases such as `warning` are
/// accepted, see [`crate::logs::Level::parse`]).
pub use crate::logs::Level as LogLevel;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_fill_their_defaults() {
        let claim: ClaimRequest =
            serde_json::from_value(json!({"worker_id": "w", "queues": ["q"]})).unwrap();
        assert_eq!((claim.max_jobs, claim.wait_ms), (1, 0));
        assert_eq!(claim.lease_ms, DEFAULT_LEASE_MS);
        assert!(LEASE_MS.contains(&DEFAULT_LEASE_MS));
        let fail: FailRequest =
            serde_json::from_value(json!({"attempt": 1, "error": "boom"})).unwrap();
        assert!(
            fail.retryable,
            "a failure is retryable unless the worker says not"
        );
        let heartbeat: HeartbeatRequest = serde_json::from_value(json!({"attempt": 2})).unwrap();
        assert_eq!(heartbeat.lease_ms, DEFAULT_LEASE_MS);
    }

    #[test]
    fn a_misspelt_option_is_an_error_not_a_default() {
        let error = serde_json::from_value::<ClaimRequest>(
            json!({"worker_id": "w", "queues": ["q"], "max_job": 5}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("max_job"), "{error}");
        assert!(
            serde_json::from_value::<LogLine>(json!({"level": "loud", "message": "m"})).is_err()
        );
    }

    #[test]
    fn a_report_says_its_outcome_and_refuses_fields_of_another() {
        let report: AttemptReport = serde_json::from_value(
            json!({"outcome": "failed", "job_id": Uuid::nil(), "attempt": 2, "error": "boom"}),
        )
        .unwrap();
        assert_eq!(
            report,
            AttemptReport::Failed {
                job_id: Uuid::nil(),
                attempt: 2,
                error: "boom".into(),
                retryable: true,
            }
        );
        let wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["outcome"], "failed");
        let error = serde_json::from_value::<AttemptReport>(
            json!({"outcome": "completed", "job_id": Uuid::nil(), "attempt": 1, "error": "x"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("error"), "{error}");
    }

    #[test]
    fn a_claimed_job_names_its_type_type_on_the_wire() {
        let job = ClaimedJob {
            job_id: Uuid::nil(),
            attempt: 1,
            job_type: "email.send".into(),
            queue: "q".into(),
            payload: json!({}),
            priority: 5,
            max_attempts: 3,
            timeout_secs: 60,
            lease_expires_at: DateTime::<Utc>::UNIX_EPOCH,
            sequence: 2,
        };
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(wire["type"], "email.send");
        assert_eq!(wire.get("job_type"), None);
    }
}

use crate::status::JobStatus;
use chrono::{DateTime, Utc};

/// Why the aggregate refused a command. Every refusal names the job's current state, so a
/// client can tell a stale view from a bug.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("job not found")]
    NotFound,
    #[error("job already exists (status {status})")]
    AlreadyExists { status: JobStatus },
    #[error("cannot {command} a job that is {status}")]
    InvalidTransition {
        command: &'static str,
        status: JobStatus,
    },
    #[error("attempt {got} does not match the job's {expected} (status {status})")]
    StaleAttempt {
        expected: u32,
        got: u32,
        status: JobStatus,
    },
    #[error("job is {status} and not due before {due_at}")]
    NotDue {
        status: JobStatus,
        due_at: DateTime<Utc>,
    },
    #[error("lease of attempt {attempt} runs until {lease_expires_at} (status {status})")]
    LeaseNotExpired {
        attempt: u32,
        lease_expires_at: DateTime<Utc>,
        status: JobStatus,
    },
}

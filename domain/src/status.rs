use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is in its life cycle. See DESIGN.md for the transition diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Accepted, waiting for its `run_at`.
    Pending,
    /// Ready to be claimed by a worker.
    Queued,
    /// Claimed by a worker that holds a lease.
    Running,
    Completed,
    /// An attempt failed; always followed in the same command by RETRYING or DEAD_LETTER.
    Failed,
    /// Waiting for its backoff before the next attempt.
    Retrying,
    /// No attempts left or a permanent error; only an operator's requeue leaves this state.
    DeadLetter,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Retrying,
        JobStatus::DeadLetter,
        JobStatus::Cancelled,
    ];

    /// Completed and cancelled jobs never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }

    /// Final for the running system: nothing happens to the job without an operator.
    pub fn is_final(self) -> bool {
        self.is_terminal() || self == JobStatus::DeadLetter
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
            JobStatus::Retrying => "RETRYING",
            JobStatus::DeadLetter => "DEAD_LETTER",
            JobStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

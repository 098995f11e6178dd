//! How one attempt ended: what the supervisor returns, the claim loop reports and the metrics
//! count.

use serde_json::Value;

use crate::handler::JobFailure;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The handler's result, to report with `complete`.
    Completed(Value),
    /// To report with `fail`; `retryable` says whether the job may get another attempt.
    Failed(JobFailure),
    /// The job was cancelled or the worker is shutting down: nothing to report as the job's
    /// result (the server already knows about a cancel; after a shutdown the lease runs out
    /// and the attempt is retried).
    Cancelled,
}

impl AttemptOutcome {
    /// The `outcome` label of `ordo_worker_job_duration_seconds`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

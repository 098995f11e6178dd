use crate::spec::{JobSpec, WorkerId};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Everything that can be asked of a job. Attempt numbers are 1-based and belong to the
/// current cycle (a requeue from the dead letter starts a new cycle at attempt 1).
#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    Submit(Box<JobSpec>),
    /// Moves a PENDING or RETRYING job whose time has come to QUEUED.
    EnqueueDue,
    /// A worker's claim: only the next attempt of a claimable job may start.
    Start {
        worker_id: WorkerId,
        attempt: u32,
        lease_expires_at: DateTime<Utc>,
    },
    Complete {
        attempt: u32,
        result: Value,
    },
    Fail {
        attempt: u32,
        error: String,
        retryable: bool,
    },
    /// A worker's heartbeat: the running attempt's lease now ends at `lease_expires_at`
    /// (the heartbeat's time plus the lease length, so it may also shorten it).
    ExtendLease {
        attempt: u32,
        lease_expires_at: DateTime<Utc>,
    },
    /// The reaper's verdict on an attempt whose lease ran out.
    ExpireLease {
        attempt: u32,
    },
    /// A worker gives back the running attempt unfinished (it is shutting down): the job is
    /// QUEUED again and the attempt does not count, so another worker runs it under the same
    /// number.
    Release {
        attempt: u32,
        reason: String,
    },
    Cancel {
        reason: String,
    },
    /// An operator's second chance for a dead-lettered job.
    Requeue,
}

impl JobCommand {
    /// A bounded name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Submit(_) => "submit",
            JobCommand::EnqueueDue => "enqueue_due",
            JobCommand::Start { .. } => "start",
            JobCommand::Complete { .. } => "complete",
            JobCommand::Fail { .. } => "fail",
            JobCommand::ExtendLease { .. } => "extend_lease",
            JobCommand::ExpireLease { .. } => "expire_lease",
            JobCommand::Release { .. } => "release",
            JobCommand::Cancel { .. } => "cancel",
            JobCommand::Requeue => "requeue",
        }
    }
}

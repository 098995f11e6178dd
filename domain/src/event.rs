use crate::spec::{JobSpec, WorkerId};
use crate::status::JobStatus;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of every event's payload shape. Bump it for the event whose shape changes and
/// register a cqrs-es `EventUpcaster` that lifts stored older versions.
pub const EVENT_VERSION: u32 = 1;

/// Everything that happens to a job. Each event is one state transition (or, for
/// `JobSubmitted`, the job's creation) and carries the times the aggregate decided with,
/// so replaying events never consults a clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// The job exists: QUEUED, or PENDING when `run_at` is later than `submitted_at`.
    JobSubmitted {
        spec: Box<JobSpec>,
        submitted_at: DateTime<Utc>,
    },
    /// PENDING/RETRYING → QUEUED once due, or DEAD_LETTER → QUEUED after a requeue.
    JobQueued {
        at: DateTime<Utc>,
    },
    JobStarted {
        attempt: u32,
        worker_id: WorkerId,
        lease_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    JobCompleted {
        attempt: u32,
        result: Value,
        at: DateTime<Utc>,
    },
    JobFailed {
        attempt: u32,
        error: String,
        retryable: bool,
        at: DateTime<Utc>,
    },
    /// The running attempt's worker is alive: its lease now ends at `lease_expires_at`.
    JobLeaseExtended {
        attempt: u32,
        lease_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The worker went silent: its lease ran out before it reported. RUNNING → FAILED.
    JobLeaseExpired {
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// FAILED → RETRYING; the next attempt is not due before `next_attempt_at`.
    JobRetryScheduled {
        next_attempt: u32,
        delay_ms: u64,
        next_attempt_at: DateTime<Utc>,
    },
    JobDeadLettered {
        reason: String,
        at: DateTime<Utc>,
    },
    /// RUNNING → QUEUED: the worker gave the attempt back unfinished; it does not count, and
    /// the next start runs attempt `attempt` again.
    JobReleased {
        attempt: u32,
        reason: String,
        at: DateTime<Utc>,
    },
    JobCancelled {
        reason: String,
        previous_status: JobStatus,
        at: DateTime<Utc>,
    },
    /// DEAD_LETTER → a new cycle of attempts; followed by `JobQueued`.
    JobRequeued {
        cycle: u32,
        at: DateTime<Utc>,
    },
}

impl JobEvent {
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::JobSubmitted { .. } => "JobSubmitted",
            JobEvent::JobQueued { .. } => "JobQueued",
            JobEvent::JobStarted { .. } => "JobStarted",
            JobEvent::JobCompleted { .. } => "JobCompleted",
            JobEvent::JobFailed { .. } => "JobFailed",
            JobEvent::JobLeaseExtended { .. } => "JobLeaseExtended",
            JobEvent::JobLeaseExpired { .. } => "JobLeaseExpired",
            JobEvent::JobRetryScheduled { .. } => "JobRetryScheduled",
            JobEvent::JobDeadLettered { .. } => "JobDeadLettered",
            JobEvent::JobReleased { .. } => "JobReleased",
            JobEvent::JobCancelled { .. } => "JobCancelled",
            JobEvent::JobRequeued { .. } => "JobRequeued",
        }
    }
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}

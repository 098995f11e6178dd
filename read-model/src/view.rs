//! What one event changes in the Redis read model, computed from the event alone (pure). The
//! Lua script of `views.rs` applies it, reading from the job's hash what the event does
//! not carry (its previous status, type, queue and priority).

use chrono::{DateTime, SecondsFormat, Utc};
use ordo_domain::{EventEnvelope, JobEvent, JobStatus};

/// Where the job stands in the dispatch model of its (tenant, queue) after the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The event does not move the job between dispatch sets.
    Keep,
    /// In none of them (finished, failed awaiting its retry decision, dead-lettered).
    Out,
    /// Ready to claim, ordered by priority and then by this time (ms).
    Ready(i64),
    /// Waiting until this time (ms): a delayed start or a retry backoff.
    Scheduled(i64),
    /// Claimed; the lease ends at this time (ms).
    Running(i64),
}

impl Placement {
    /// The (kind, time) pair the Lua script reads.
    pub fn wire(self) -> (&'static str, i64) {
        match self {
            Self::Keep => ("keep", 0),
            Self::Out => ("out", 0),
            Self::Ready(ms) => ("ready", ms),
            Self::Scheduled(ms) => ("scheduled", ms),
            Self::Running(ms) => ("running", ms),
        }
    }
}

/// The change one event makes to a job's view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewUpdate {
    pub job_id: String,
    pub tenant: String,
    pub sequence: u64,
    /// When the event happened (ms); the score of the indexes it touches.
    pub at_ms: i64,
    pub status: Option<JobStatus>,
    pub set: Vec<(&'static str, String)>,
    pub clear: Vec<&'static str>,
    /// `key=value` of each label; only on the first event, which creates the indexes.
    pub labels: Vec<String>,
    pub placement: Placement,
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ViewUpdate {
    pub fn of(envelope: &EventEnvelope, event: &JobEvent) -> Self {
        Self::of_event(
            &envelope.job_id,
            &envelope.tenant,
            envelope.sequence,
            envelope.occurred_at,
            event,
        )
    }

    /// The update of event number `sequence` of job `job_id` of `tenant`, which happened
    /// `at` (what the command side knows of an event it has just committed).
    pub fn of_event(
        job_id: &str,
        tenant: &str,
        sequence: u64,
        at: DateTime<Utc>,
        event: &JobEvent,
    ) -> Self {
        let mut update = Self {
            job_id: job_id.to_owned(),
            tenant: tenant.to_owned(),
            sequence,
            at_ms: at.timestamp_millis(),
            status: None,
            set: Vec::new(),
            clear: Vec::new(),
            labels: Vec::new(),
            placement: Placement::Keep,
        };
        match event {
            JobEvent::JobSubmitted { spec, submitted_at } => {
                let delayed = spec.run_at.filter(|run_at| run_at > submitted_at);
                update.status = Some(if delayed.is_some() {
                    JobStatus::Pending
                } else {
                    JobStatus::Queued
                });
                update.placement = match delayed {
                    Some(run_at) => Placement::Scheduled(run_at.timestamp_millis()),
                    None => Placement::Ready(submitted_at.timestamp_millis()),
                };
                update.set = vec![
                    ("tenant", spec.tenant.as_str().to_owned()),
                    ("name", spec.name.as_str().to_owned()),
                    ("type", spec.job_type.as_str().to_owned()),
                    ("queue", spec.queue.as_str().to_owned()),
                    ("priority", spec.priority.get().to_string()),
                    ("max_attempts", spec.retry.max_attempts.to_string()),
                    ("timeout_secs", spec.timeout_secs.get().to_string()),
                    (
                        "labels",
                        serde_json::to_string(&spec.labels).unwrap_or_default(),
                    ),
                    ("submitted_at", time(submitted_at)),
                    ("attempt", "0".into()),
                    ("cycle", "1".into()),
                ];
                if let Some(run_at) = delayed {
                    update.set.push(("run_at", time(&run_at)));
                }
                update.labels = spec
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
            }
            JobEvent::JobQueued { at } => {
                update.status = Some(JobStatus::Queued);
                update.placement = Placement::Ready(at.timestamp_millis());
                update.set = vec![("queued_at", time(at))];
                update.clear = vec!["next_attempt_at"];
            }
            JobEvent::JobStarted {
                attempt,
                worker_id,
                lease_expires_at,
                at,
            } => {
                update.status = Some(JobStatus::Running);
                update.placement = Placement::Running(lease_expires_at.timestamp_millis());
                update.set = vec![
                    ("attempt", attempt.to_string()),
                    ("worker_id", worker_id.as_str().to_owned()),
                    ("lease_expires_at", time(lease_expires_at)),
                    ("started_at", time(at)),
                ];
            }
            JobEvent::JobCompleted { result, at, .. } => {
                update.status = Some(JobStatus::Completed);
                update.placement = Placement::Out;
                update.set = vec![("result", result.to_string()), ("finished_at", time(at))];
                update.clear = vec!["lease_expires_at"];
            }
            JobEvent::JobFailed { error, .. } => {
                update.status = Some(JobStatus::Failed);
                update.placement = Placement::Out;
                update.set = vec![("last_error", error.clone())];
                update.clear = vec!["lease_expires_at"];
            }
            JobEvent::JobLeaseExtended {
                lease_expires_at, ..
            } => {
                update.placement = Placement::Running(lease_expires_at.timestamp_millis());
                update.set = vec![("lease_expires_at", time(lease_expires_at))];
            }
            JobEvent::JobLeaseExpired { .. } => {
                update.status = Some(JobStatus::Failed);
                update.placement = Placement::Out;
                update.set = vec![("last_error", "lease expired".into())];
                update.clear = vec!["lease_expires_at"];
            }
            JobEvent::JobRetryScheduled {
                next_attempt_at, ..
            } => {
                update.status = Some(JobStatus::Retrying);
                update.placement = Placement::Scheduled(next_attempt_at.timestamp_millis());
                update.set = vec![("next_attempt_at", time(next_attempt_at))];
            }
            JobEvent::JobDeadLettered { reason, at } => {
                update.status = Some(JobStatus::DeadLetter);
                update.placement = Placement::Out;
                update.set = vec![
                    ("dead_letter_reason", reason.clone()),
                    ("finished_at", time(at)),
                ];
            }
            JobEvent::JobCancelled { reason, at, .. } => {
                update.status = Some(JobStatus::Cancelled);
                update.placement = Placement::Out;
                update.set = vec![("cancel_reason", reason.clone()), ("finished_at", time(at))];
                update.clear = vec!["lease_expires_at", "next_attempt_at"];
            }
            JobEvent::JobReleased { attempt, at, .. } => {
                update.status = Some(JobStatus::Queued);
                update.placement = Placement::Ready(at.timestamp_millis());
                update.set = vec![
                    ("attempt", attempt.saturating_sub(1).to_string()),
                    ("queued_at", time(at)),
                ];
                update.clear = vec!["worker_id", "lease_expires_at", "started_at"];
            }
            JobEvent::JobRequeued { cycle, .. } => {
                update.set = vec![("cycle", cycle.to_string()), ("attempt", "0".into())];
                update.clear = vec!["finished_at", "dead_letter_reason"];
            }
        }
        update
    }
}

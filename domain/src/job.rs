//! The `Job` aggregate: decides on commands against the job's current state and turns each
//! accepted decision into events. All checks happen before the first event is written, so a
//! refused command leaves neither events nor a half-changed aggregate behind.

use crate::command::JobCommand;
use crate::error::JobError;
use crate::event::JobEvent;
use crate::services::JobServices;
use crate::spec::{JobSpec, WorkerId};
use crate::status::JobStatus;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub worker_id: WorkerId,
    pub expires_at: DateTime<Utc>,
}

/// A job as the write side knows it. `Default` is a job that was never submitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    spec: Option<Box<JobSpec>>,
    status: Option<JobStatus>,
    /// The last attempt started in the current cycle (0 before the first start).
    attempt: u32,
    /// 1 for the first cycle of attempts; each requeue from the dead letter adds one.
    cycle: u32,
    /// When a PENDING or RETRYING job becomes due.
    due_at: Option<DateTime<Utc>>,
    lease: Option<Lease>,
    last_error: Option<String>,
}

type Sink = EventSink<Job>;

impl Job {
    /// `None` until the job has been submitted.
    pub fn status(&self) -> Option<JobStatus> {
        self.status
    }

    pub fn spec(&self) -> Option<&JobSpec> {
        self.spec.as_deref()
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn cycle(&self) -> u32 {
        self.cycle
    }

    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        self.due_at
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn max_attempts(&self) -> u32 {
        self.spec.as_ref().map_or(1, |s| s.retry.max_attempts)
    }

    fn require(
        status: JobStatus,
        allowed: &[JobStatus],
        command: &'static str,
    ) -> Result<(), JobError> {
        if allowed.contains(&status) {
            Ok(())
        } else {
            Err(JobError::InvalidTransition { command, status })
        }
    }

    fn require_due(&self, status: JobStatus, now: DateTime<Utc>) -> Result<(), JobError> {
        match self.due_at {
            Some(due_at) if now < due_at => Err(JobError::NotDue { status, due_at }),
            _ => Ok(()),
        }
    }

    fn require_attempt(&self, status: JobStatus, expected: u32, got: u32) -> Result<(), JobError> {
        if expected == got {
            Ok(())
        } else {
            Err(JobError::StaleAttempt {
                expected,
                got,
                status,
            })
        }
    }

    /// After FAILED: retry after a backoff while attempts and the error allow it, else dead-letter.
    async fn after_failure(
        &mut self,
        retryable: bool,
        error: &str,
        now: DateTime<Utc>,
        services: &JobServices,
        sink: &Sink,
    ) {
        let attempt = self.attempt;
        let max_attempts = self.max_attempts();
        let event = if !retryable {
            JobEvent::JobDeadLettered {
                reason: format!("non-retryable error: {error}"),
                at: now,
            }
        } else if attempt >= max_attempts {
            JobEvent::JobDeadLettered {
                reason: format!("attempts exhausted ({attempt}/{max_attempts}): {error}"),
                at: now,
            }
        } else {
            let policy = self.spec.as_ref().map(|s| s.retry).unwrap_or_default();
            let delay_ms = policy.delay_ms(attempt, services.jitter.as_ref());
            JobEvent::JobRetryScheduled {
                next_attempt: attempt + 1,
                delay_ms,
                next_attempt_at: now + Duration::milliseconds(delay_ms as i64),
            }
        };
        sink.write(event, self).await;
    }
}

impl Aggregate for Job {
    const TYPE: &'static str = "job";
    type Command = JobCommand;
    type Event = JobEvent;
    type Error = JobError;
    type Services = JobServices;

    async fn handle(
        &mut self,
        command: JobCommand,
        services: &JobServices,
        sink: &Sink,
    ) -> Result<(), JobError> {
        use JobStatus::*;
        let now = services.clock.now();
        let Some(status) = self.status else {
            return match command {
                JobCommand::Submit(spec) => {
                    let event = JobEvent::JobSubmitted {
                        spec,
                        submitted_at: now,
                    };
                    sink.write(event, self).await;
                    Ok(())
                }
                _ => Err(JobError::NotFound),
            };
        };
        match command {
            JobCommand::Submit(_) => return Err(JobError::AlreadyExists { status }),
            JobCommand::EnqueueDue => {
                Self::require(status, &[Pending, Retrying], "enqueue")?;
                self.require_due(status, now)?;
                sink.write(JobEvent::JobQueued { at: now }, self).await;
            }
            JobCommand::Start {
                worker_id,
                attempt,
                lease_expires_at,
            } => {
                Self::require(status, &[Pending, Queued, Retrying], "start")?;
                self.require_due(status, now)?;
                self.require_attempt(status, self.attempt + 1, attempt)?;
                if status != Queued {
                    sink.write(JobEvent::JobQueued { at: now }, self).await;
                }
                let event = JobEvent::JobStarted {
                    attempt,
                    worker_id,
                    lease_expires_at,
                    at: now,
                };
                sink.write(event, self).await;
            }
            JobCommand::Complete { attempt, result } => {
                Self::require(status, &[Running], "complete")?;
                self.require_attempt(status, self.attempt, attempt)?;
                let event = JobEvent::JobCompleted {
                    attempt,
                    result,
                    at: now,
                };
                sink.write(event, self).await;
            }
            JobCommand::Fail {
                attempt,
                error,
                retryable,
            } => {
                Self::require(status, &[Running], "fail")?;
                self.require_attempt(status, self.attempt, attempt)?;
                let event = JobEvent::JobFailed {
                    attempt,
                    error: error.clone(),
                    retryable,
                    at: now,
                };
                sink.write(event, self).await;
                self.after_failure(retryable, &error, now, services, sink)
                    .await;
            }
            JobCommand::ExtendLease {
                attempt,
                lease_expires_at,
            } => {
                Self::require(status, &[Running], "extend the lease of")?;
                self.require_attempt(status, self.attempt, attempt)?;
                let event = JobEvent::JobLeaseExtended {
                    attempt,
                    lease_expires_at,
                    at: now,
                };
                sink.write(event, self).await;
            }
            JobCommand::ExpireLease { attempt } => {
                Self::require(status, &[Running], "expire the lease of")?;
                self.require_attempt(status, self.attempt, attempt)?;
                if let Some(lease) = self.lease.as_ref().filter(|l| now < l.expires_at) {
                    return Err(JobError::LeaseNotExpired {
                        attempt,
                        lease_expires_at: lease.expires_at,
                        status,
                    });
                }
                sink.write(JobEvent::JobLeaseExpired { attempt, at: now }, self)
                    .await;
                self.after_failure(true, "lease expired", now, services, sink)
                    .await;
            }
            JobCommand::Release { attempt, reason } => {
                Self::require(status, &[Running], "release")?;
                self.require_attempt(status, self.attempt, attempt)?;
                let event = JobEvent::JobReleased {
                    attempt,
                    reason,
                    at: now,
                };
                sink.write(event, self).await;
            }
            JobCommand::Cancel { reason } => {
                if status.is_final() {
                    return Err(JobError::InvalidTransition {
                        command: "cancel",
                        status,
                    });
                }
                let event = JobEvent::JobCancelled {
                    reason,
                    previous_status: status,
                    at: now,
                };
                sink.write(event, self).await;
            }
            JobCommand::Requeue => {
                Self::require(status, &[DeadLetter], "requeue")?;
                let cycle = self.cycle + 1;
                sink.write(JobEvent::JobRequeued { cycle, at: now }, self)
                    .await;
                sink.write(JobEvent::JobQueued { at: now }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: JobEvent) {
        match event {
            JobEvent::JobSubmitted { spec, submitted_at } => {
                let delayed = spec.run_at.filter(|run_at| *run_at > submitted_at);
                self.status = Some(if delayed.is_some() {
                    JobStatus::Pending
                } else {
                    JobStatus::Queued
                });
                self.due_at = delayed;
                self.spec = Some(spec);
                self.cycle = 1;
            }
            JobEvent::JobQueued { .. } => {
                self.status = Some(JobStatus::Queued);
                self.due_at = None;
            }
            JobEvent::JobStarted {
                attempt,
                worker_id,
                lease_expires_at,
                ..
            } => {
                self.status = Some(JobStatus::Running);
                self.attempt = attempt;
                self.lease = Some(Lease {
                    worker_id,
                    expires_at: lease_expires_at,
                });
            }
            JobEvent::JobCompleted { .. } => {
                self.status = Some(JobStatus::Completed);
                self.lease = None;
            }
            JobEvent::JobFailed { error, .. } => {
                self.status = Some(JobStatus::Failed);
                self.lease = None;
                self.last_error = Some(error);
            }
            JobEvent::JobLeaseExtended {
                lease_expires_at, ..
            } => {
                if let Some(lease) = self.lease.as_mut() {
                    lease.expires_at = lease_expires_at;
                }
            }
            JobEvent::JobLeaseExpired { .. } => {
                self.status = Some(JobStatus::Failed);
                self.lease = None;
                self.last_error = Some("lease expired".to_owned());
            }
            JobEvent::JobRetryScheduled {
                next_attempt_at, ..
            } => {
                self.status = Some(JobStatus::Retrying);
                self.due_at = Some(next_attempt_at);
            }
            JobEvent::JobDeadLettered { .. } => {
                self.status = Some(JobStatus::DeadLetter);
            }
            JobEvent::JobReleased { attempt, .. } => {
                self.status = Some(JobStatus::Queued);
                self.attempt = attempt.saturating_sub(1);
                self.lease = None;
                self.due_at = None;
            }
            JobEvent::JobCancelled { .. } => {
                self.status = Some(JobStatus::Cancelled);
                self.lease = None;
                self.due_at = None;
            }
            JobEvent::JobRequeued { cycle, .. } => {
                self.cycle = cycle;
                self.attempt = 0;
            }
        }
    }
}

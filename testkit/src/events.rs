//! Job events as the write side would publish them, for tests of the read side that need a
//! job's history without running commands.

use chrono::{DateTime, Duration, Utc};
use ordo_domain::spec::{
    JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs, WorkerId,
};
use ordo_domain::{sample, CommandMetadata, EventEnvelope, JobEvent, JobSpec, RetryPolicy};
use serde_json::json;

pub fn spec(tenant: &str, job_type: &str, queue: &str, labels: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        tenant: TenantId::parse(tenant).unwrap(),
        name: JobName::parse("test job").unwrap(),
        job_type: JobType::parse(job_type).unwrap(),
        queue: QueueName::parse(queue).unwrap(),
        payload: json!({}),
        priority: Priority::parse(5).unwrap(),
        run_at: None,
        retry: RetryPolicy::default(),
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::parse(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap(),
    }
}

pub fn submitted(spec: JobSpec, at: DateTime<Utc>) -> JobEvent {
    JobEvent::JobSubmitted {
        spec: Box::new(spec),
        submitted_at: at,
    }
}

pub fn started(attempt: u32, at: DateTime<Utc>) -> JobEvent {
    JobEvent::JobStarted {
        attempt,
        worker_id: WorkerId::parse("w-1").unwrap(),
        lease_expires_at: at + Duration::seconds(30),
        at,
    }
}

pub fn completed(attempt: u32, at: DateTime<Utc>) -> JobEvent {
    JobEvent::JobCompleted {
        attempt,
        result: json!({"rows": 3}),
        at,
    }
}

/// Submitted, failed once, retried, completed: seven events.
pub fn retried_lifecycle(spec: JobSpec, start: DateTime<Utc>) -> Vec<JobEvent> {
    vec![
        submitted(spec, start),
        started(1, start),
        JobEvent::JobFailed {
            attempt: 1,
            error: "boom".into(),
            retryable: true,
            at: start,
        },
        JobEvent::JobRetryScheduled {
            next_attempt: 2,
            delay_ms: 100,
            next_attempt_at: start + Duration::milliseconds(100),
        },
        JobEvent::JobQueued { at: start },
        started(2, start),
        completed(2, start),
    ]
}

/// The envelopes of `events` of job `id` of `tenant`: sequences from 1, the first event at
/// `start` and each next one a millisecond later.
pub fn envelopes(
    id: &str,
    tenant: &str,
    start: DateTime<Utc>,
    events: &[JobEvent],
) -> Vec<EventEnvelope> {
    let metadata = CommandMetadata {
        tenant: tenant.to_owned(),
        actor: "test".into(),
        correlation_id: "c".into(),
        occurred_at: start,
    };
    sample::envelopes(id, &metadata, events)
}

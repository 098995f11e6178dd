//! Sample job histories, as the envelopes the write side would publish, for benchmarks and
//! tests of the read side that need realistic events without going through the write side.

use crate::envelope::CommandMetadata;
use crate::spec::{JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs, WorkerId};
use crate::{EventEnvelope, JobEvent, JobSpec, RetryPolicy};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// A job of type `sample.noop`, labelled `origin=sample`, with default settings.
pub fn spec(tenant: &TenantId, queue: &QueueName) -> JobSpec {
    JobSpec {
        tenant: tenant.clone(),
        name: JobName::parse("sample").expect("valid name"),
        job_type: JobType::parse("sample.noop").expect("valid type"),
        queue: queue.clone(),
        payload: json!({}),
        priority: Priority::default(),
        run_at: None,
        retry: RetryPolicy::default(),
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::parse([("origin".to_owned(), "sample".to_owned())].into())
            .expect("valid labels"),
    }
}

/// The envelopes of one job of tenant `tenant` on `queue`, starting at `start`, one
/// millisecond apart: submitted, started, completed; with `retried`, the first attempt fails
/// and is retried first (seven events instead of three).
pub fn lifecycle(
    job_id: &str,
    tenant: &TenantId,
    queue: &QueueName,
    start: DateTime<Utc>,
    retried: bool,
) -> Vec<EventEnvelope> {
    let worker_id = WorkerId::parse("sample-worker").expect("valid worker id");
    let lease_expires_at = start + Duration::seconds(30);
    let started = |attempt| JobEvent::JobStarted {
        attempt,
        worker_id: worker_id.clone(),
        lease_expires_at,
        at: start,
    };
    let mut events = vec![
        JobEvent::JobSubmitted {
            spec: Box::new(spec(tenant, queue)),
            submitted_at: start,
        },
        started(1),
    ];
    if retried {
        events.extend([
            JobEvent::JobFailed {
                attempt: 1,
                error: "sample failure".into(),
                retryable: true,
                at: start,
            },
            JobEvent::JobRetryScheduled {
                next_attempt: 2,
                delay_ms: 1,
                next_attempt_at: start,
            },
            JobEvent::JobQueued { at: start },
            started(2),
        ]);
    }
    events.push(JobEvent::JobCompleted {
        attempt: if retried { 2 } else { 1 },
        result: json!({"ok": true}),
        at: start,
    });
    let metadata = CommandMetadata {
        tenant: tenant.to_string(),
        actor: "sample".into(),
        correlation_id: job_id.to_owned(),
        occurred_at: start,
    };
    envelopes(job_id, &metadata, &events)
}

/// The envelopes of `events` of job `job_id`, numbered from 1, with `metadata`; the first
/// occurred at `metadata.occurred_at` and each next one a millisecond later.
pub fn envelopes(
    job_id: &str,
    metadata: &CommandMetadata,
    events: &[JobEvent],
) -> Vec<EventEnvelope> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let metadata = CommandMetadata {
                occurred_at: metadata.occurred_at + Duration::milliseconds(i as i64),
                ..metadata.clone()
            };
            EventEnvelope::of(job_id, i as u64 + 1, &metadata, event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_envelopes_decode_to_their_events_in_sequence() {
        let tenant = TenantId::parse("acme").unwrap();
        let queue = QueueName::parse("q").unwrap();
        for retried in [false, true] {
            let envelopes = lifecycle("job-1", &tenant, &queue, Utc::now(), retried);
            assert_eq!(envelopes.len(), if retried { 7 } else { 3 });
            for (i, envelope) in envelopes.iter().enumerate() {
                assert_eq!(envelope.sequence, i as u64 + 1);
                let event = envelope.event().expect("decodes");
                assert_eq!(event.name(), envelope.event_type);
                let json = serde_json::to_string(envelope).unwrap();
                let back: EventEnvelope = serde_json::from_str(&json).unwrap();
                assert_eq!(back.event().unwrap(), event);
            }
        }
    }
}

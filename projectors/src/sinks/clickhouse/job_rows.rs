//! A job event as a `job_events` row, the same for the live sink and for `ordo replay`, so a
//! replayed table equals what the sink built: the envelope's fields, the columns some events
//! carry (attempt, worker, error, reason), and the job's type and queue on every row.
//!
//! Only `JobSubmitted` carries the type and queue; later events get them from
//! [`JobKinds`], a bounded cache filled by the `JobSubmitted` rows it sees, which asks the
//! table for the jobs it does not hold (their `JobSubmitted` was stored earlier: a job's
//! events come in order, on one partition, and a replay reads them in append order).

use chrono::{DurationRound, TimeDelta};
use ordo_clickhouse_store::{JobEventRow, JobEventsTable, JobKind, StoreError};
use ordo_domain::{EventEnvelope, JobEvent};
use std::collections::HashMap;
use uuid::Uuid;

/// The row of `event`, carried by `envelope`; the type and queue are left empty but on
/// `JobSubmitted` ([`JobKinds::complete`] fills them).
pub fn event_row(envelope: &EventEnvelope, event: &JobEvent) -> Result<JobEventRow, String> {
    let job_id = Uuid::parse_str(&envelope.job_id)
        .map_err(|e| format!("job_id {:?} is not a UUID: {e}", envelope.job_id))?;
    let mut row = JobEventRow {
        tenant: envelope.tenant.clone(),
        job_id,
        sequence: envelope.sequence,
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
        event_version: envelope.event_version,
        // The column holds microseconds (what the event store keeps too).
        occurred_at: envelope
            .occurred_at
            .duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or(envelope.occurred_at),
        actor: envelope.actor.clone(),
        correlation_id: envelope.correlation_id.clone(),
        job_type: String::new(),
        queue: String::new(),
        attempt: 0,
        worker_id: String::new(),
        error: String::new(),
        reason: String::new(),
        data: envelope.data.to_string(),
    };
    match event {
        JobEvent::JobSubmitted { spec, .. } => {
            row.job_type = spec.job_type.as_str().to_owned();
            row.queue = spec.queue.as_str().to_owned();
        }
        JobEvent::JobStarted {
            attempt, worker_id, ..
        } => {
            row.attempt = *attempt;
            row.worker_id = worker_id.as_str().to_owned();
        }
        JobEvent::JobFailed { attempt, error, .. } => {
            row.attempt = *attempt;
            row.error = error.clone();
        }
        JobEvent::JobReleased {
            attempt, reason, ..
        } => {
            row.attempt = *attempt;
            row.reason = reason.clone();
        }
        JobEvent::JobCompleted { attempt, .. }
        | JobEvent::JobLeaseExtended { attempt, .. }
        | JobEvent::JobLeaseExpired { attempt, .. } => row.attempt = *attempt,
        JobEvent::JobRetryScheduled { next_attempt, .. } => row.attempt = *next_attempt,
        JobEvent::JobDeadLettered { reason, .. } | JobEvent::JobCancelled { reason, .. } => {
            row.reason = reason.clone();
        }
        JobEvent::JobQueued { .. } | JobEvent::JobRequeued { .. } => {}
    }
    Ok(row)
}

/// Jobs' types and queues, at most about `capacity` of them in memory.
pub struct JobKinds {
    /// Two generations: lookups promote from `older`; when `newer` is full it becomes
    /// `older` and the previous `older` is dropped. Recently used jobs stay, memory is
    /// bounded, and no per-entry bookkeeping is needed.
    newer: HashMap<Uuid, JobKind>,
    older: HashMap<Uuid, JobKind>,
    capacity: usize,
}

impl JobKinds {
    /// Enough for the jobs of many batches (about 100 bytes each).
    pub const DEFAULT_CAPACITY: usize = 200_000;

    pub fn new(capacity: usize) -> Self {
        Self {
            newer: HashMap::new(),
            older: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    /// Fills the type and queue of `rows` (in event order), from the `JobSubmitted` rows
    /// among them, from memory, or from `table`; rows of jobs whose `JobSubmitted` is
    /// nowhere keep them empty. Returns how many are left empty.
    pub async fn complete(
        &mut self,
        rows: &mut [JobEventRow],
        table: &JobEventsTable,
    ) -> Result<usize, StoreError> {
        let mut missing = Vec::new();
        for (index, row) in rows.iter_mut().enumerate() {
            if !row.job_type.is_empty() {
                self.remember(row.job_id, kind_of(row));
            } else if let Some(kind) = self.get(&row.job_id) {
                fill(row, &kind);
            } else {
                missing.push(index);
            }
        }
        if missing.is_empty() {
            return Ok(0);
        }
        let mut jobs: Vec<(String, Uuid)> = missing
            .iter()
            .map(|&i| (rows[i].tenant.clone(), rows[i].job_id))
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        let found = table.kinds(&jobs).await?;
        let mut unknown = 0;
        for index in missing {
            let row = &mut rows[index];
            match found.get(&row.job_id) {
                Some(kind) => {
                    fill(row, kind);
                    self.remember(row.job_id, kind.clone());
                }
                None => unknown += 1,
            }
        }
        Ok(unknown)
    }

    fn get(&mut self, job: &Uuid) -> Option<JobKind> {
        if let Some(kind) = self.newer.get(job) {
            return Some(kind.clone());
        }
        let kind = self.older.remove(job)?;
        self.remember(*job, kind.clone());
        Some(kind)
    }

    fn remember(&mut self, job: Uuid, kind: JobKind) {
        if self.newer.len() >= self.capacity / 2 {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(job, kind);
    }
}

fn kind_of(row: &JobEventRow) -> JobKind {
    JobKind {
        job_type: row.job_type.clone(),
        queue: row.queue.clone(),
    }
}

fn fill(row: &mut JobEventRow, kind: &JobKind) {
    row.job_type.clone_from(&kind.job_type);
    row.queue.clone_from(&kind.queue);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_domain::sample;
    use ordo_domain::spec::{QueueName, TenantId};

    #[test]
    fn rows_carry_the_fields_of_their_events() {
        let job = Uuid::now_v7().to_string();
        let history = sample::lifecycle(
            &job,
            &TenantId::parse("acme").unwrap(),
            &QueueName::parse("reports").unwrap(),
            chrono::Utc::now(),
            true,
        );
        let rows: Vec<_> = history
            .iter()
            .map(|e| event_row(e, &e.event().unwrap()).unwrap())
            .collect();
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.event_type.as_str(),
                    r.attempt,
                    r.worker_id.as_str(),
                    r.error.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("JobSubmitted", 0, "", ""),
                ("JobStarted", 1, "sample-worker", ""),
                ("JobFailed", 1, "", "sample failure"),
                ("JobRetryScheduled", 2, "", ""),
                ("JobQueued", 0, "", ""),
                ("JobStarted", 2, "sample-worker", ""),
                ("JobCompleted", 2, "", ""),
            ]
        );
        assert_eq!(rows[0].queue, "reports");
        assert!(!rows[0].job_type.is_empty());
        assert!(rows[1..].iter().all(|r| r.job_type.is_empty()));
        assert_eq!(rows[0].data, history[0].data.to_string());
        assert_eq!(rows[3].sequence, 4);
    }

    #[test]
    fn the_cache_keeps_recent_jobs_within_its_capacity() {
        let kind = |n: usize| JobKind {
            job_type: format!("t{n}"),
            queue: "q".into(),
        };
        let mut kinds = JobKinds::new(4);
        let jobs: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        kinds.remember(jobs[0], kind(0));
        kinds.remember(jobs[1], kind(1));
        kinds.remember(jobs[2], kind(2));
        // jobs[0] is in the older generation: used again, it is promoted and kept.
        assert_eq!(kinds.get(&jobs[0]), Some(kind(0)));
        kinds.remember(jobs[3], kind(3));
        kinds.remember(jobs[4], kind(4));
        assert!(kinds.newer.len() + kinds.older.len() <= 4);
        assert_eq!(kinds.get(&jobs[4]), Some(kind(4)));
        assert_eq!(
            kinds.get(&jobs[1]),
            None,
            "the least recently used went first"
        );
    }
}

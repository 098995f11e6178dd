//! The end of a chaos run, read from the event store (the `events` table, the source of
//! truth): has every job settled, is each in the state its commands imply, did any attempt
//! start twice, was anything lost.

use super::load::{CancelOutcome, Intent, Kind, Ledger};
use anyhow::Context;
use cqrs_es::Aggregate;
use ordo_domain::{Job, JobEvent, JobStatus};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The event types that leave a job in a final state (COMPLETED, DEAD_LETTER, CANCELLED).
const FINAL_EVENTS: &str = "('JobCompleted', 'JobDeadLettered', 'JobCancelled')";

/// Jobs whose last event does not leave them final, right now.
pub async fn unsettled(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT DISTINCT ON (aggregate_id) event_type FROM events \
         WHERE aggregate_type = 'job' ORDER BY aggregate_id, sequence DESC) last \
         WHERE event_type NOT IN {FINAL_EVENTS}"
    ))
    .fetch_one(pool)
    .await
}

/// Waits until every job of the store is final, up to `timeout` (PostgreSQL errors are
/// waited out too). Answers how long it took, or `None` if jobs were still unsettled.
pub async fn wait_settled(pool: &PgPool, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        match unsettled(pool).await {
            Ok(0) => return Some(started.elapsed()),
            Ok(n) if reported.elapsed() >= Duration::from_secs(5) => {
                reported = Instant::now();
                println!(
                    "  waiting for {n} jobs to settle ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "counting unsettled jobs failed"),
        }
        if started.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One job as its events tell it.
#[derive(Default)]
struct History {
    job: Job,
    /// The last sequence read; a hole (an event missing before another) is a lost event.
    sequence: i64,
    hole: bool,
    undecodable: Option<String>,
    starts: u32,
    /// Starts of an attempt that already started and was released in between (a released
    /// attempt runs again under its number, by design).
    reruns: u32,
    /// Starts of an attempt that already started with no release in between: a bug.
    duplicates: u32,
    /// Attempts of the current cycle that counted as failed (failures and expired leases).
    failed_attempts: u32,
    expired_leases: u32,
    non_retryable_failure: bool,
    completed_attempt: Option<u32>,
    /// Per attempt of the current cycle: whether it was released since its last start.
    attempts: HashMap<u32, bool>,
    /// The kind the load gave the job (its `chaos` label).
    kind: Option<String>,
}

impl History {
    fn add(&mut self, sequence: i64, payload: Value) {
        if sequence != self.sequence + 1 {
            self.hole = true;
        }
        self.sequence = sequence;
        let event: JobEvent = match serde_json::from_value(payload) {
            Ok(event) => event,
            Err(e) => {
                self.undecodable = Some(format!("event {sequence}: {e}"));
                return;
            }
        };
        match &event {
            JobEvent::JobSubmitted { spec, .. } => {
                self.kind = (spec.labels.iter())
                    .find(|(key, _)| *key == "chaos")
                    .map(|(_, kind)| kind.clone());
            }
            JobEvent::JobStarted { attempt, .. } => {
                self.starts += 1;
                match self.attempts.insert(*attempt, false) {
                    None => {}
                    Some(true) => self.reruns += 1,
                    Some(false) => self.duplicates += 1,
                }
            }
            JobEvent::JobReleased { attempt, .. } => {
                self.attempts.insert(*attempt, true);
            }
            JobEvent::JobFailed { retryable, .. } => {
                self.failed_attempts += 1;
                self.non_retryable_failure |= !retryable;
            }
            JobEvent::JobLeaseExpired { .. } => {
                self.failed_attempts += 1;
                self.expired_leases += 1;
            }
            JobEvent::JobCompleted { attempt, .. } => self.completed_attempt = Some(*attempt),
            JobEvent::JobRequeued { .. } => {
                self.attempts.clear();
                self.failed_attempts = 0;
                self.non_retryable_failure = false;
            }
            _ => {}
        }
        self.job.apply(event);
    }

    fn max_attempts(&self) -> u32 {
        self.job.spec().map_or(1, |spec| spec.retry.max_attempts)
    }

    /// Whether the job is in a state its commands (its kind, and a cancel) imply, given what
    /// happened to it (the faults can cost attempts: an expired lease counts as a failure).
    fn verdict(&self, cancel: Option<&CancelOutcome>) -> Result<(), String> {
        let Some(status) = self.job.status() else {
            return Err("no JobSubmitted".into());
        };
        let kind = self.kind.as_deref().unwrap_or("?");
        let cancelled_on_request = matches!(cancel, Some(CancelOutcome::Done));
        match status {
            JobStatus::Cancelled if cancel.is_some() => Ok(()),
            JobStatus::Cancelled => Err("CANCELLED, but no cancel was sent".into()),
            _ if cancelled_on_request => Err(format!("{status}, but its cancel was acknowledged")),
            JobStatus::Completed => {
                let handler_succeeds = match kind {
                    "noop" | "slow" | "cancel-delayed" | "cancel-running" => true,
                    // `fail {"times": 1}` fails attempt 1 and succeeds from attempt 2 on.
                    "retry" => self.completed_attempt.is_some_and(|a| a > 1),
                    _ => false,
                };
                if handler_succeeds {
                    Ok(())
                } else {
                    Err(format!(
                        "COMPLETED (attempt {:?}), but a {kind} job's handler fails that attempt",
                        self.completed_attempt
                    ))
                }
            }
            JobStatus::DeadLetter => {
                if self.non_retryable_failure || self.failed_attempts >= self.max_attempts() {
                    Ok(())
                } else {
                    Err(format!(
                        "DEAD_LETTER after {} of {} attempts failed, none permanently",
                        self.failed_attempts,
                        self.max_attempts()
                    ))
                }
            }
            other => Err(format!("not settled: {other}")),
        }
    }
}

/// What the event store says about the run.
#[derive(Debug, Default)]
pub struct Findings {
    pub jobs: usize,
    pub events: usize,
    pub by_status: BTreeMap<String, usize>,
    pub by_kind: BTreeMap<String, usize>,
    pub starts: u64,
    pub reruns_after_release: u64,
    pub duplicate_starts: u64,
    pub expired_leases: u64,
    /// Jobs not in the state their commands imply, with why (all of them counted, the first
    /// ones kept).
    pub wrong_state: usize,
    pub wrong_state_examples: Vec<String>,
    /// Acknowledged submits whose job has no events.
    pub lost_jobs: Vec<String>,
    /// Jobs with a hole in their sequence, or an event this build cannot read.
    pub damaged_jobs: Vec<String>,
    /// Jobs of the store no acknowledged submit names (a submit whose answer was lost).
    pub unacknowledged_in_store: usize,
    pub submits: usize,
    pub submits_acknowledged: usize,
    pub submits_given_up: Vec<String>,
    pub cancels: usize,
    pub cancels_done: usize,
    pub cancels_refused: usize,
    pub cancels_unanswered: Vec<String>,
}

const EXAMPLES: usize = 10;

/// Reads every job event and checks it against the ledger of the load.
pub async fn examine(pool: &PgPool, ledger: &Ledger) -> anyhow::Result<Findings> {
    let rows: Vec<(String, i64, Value)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, payload FROM events WHERE aggregate_type = 'job' \
         ORDER BY aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .context("read the event store")?;
    let mut findings = Findings {
        events: rows.len(),
        ..Findings::default()
    };
    let mut histories: BTreeMap<String, History> = BTreeMap::new();
    for (job_id, sequence, payload) in rows {
        histories.entry(job_id).or_default().add(sequence, payload);
    }

    let intents: Vec<Intent> = ledger.intents.lock().expect("not poisoned").clone();
    let mut cancels: HashMap<&str, &CancelOutcome> = HashMap::new();
    findings.submits = intents.len();
    for intent in &intents {
        match (&intent.job_id, &intent.error) {
            (Some(job_id), _) => {
                findings.submits_acknowledged += 1;
                if !histories.contains_key(job_id) {
                    findings.lost_jobs.push(job_id.clone());
                }
                if let Some(cancel) = &intent.cancel {
                    cancels.insert(job_id, cancel);
                }
            }
            (None, error) => findings.submits_given_up.push(format!(
                "submit {} ({}): {}",
                intent.n,
                intent.kind.label(),
                error.as_deref().unwrap_or("still in flight at the end")
            )),
        }
        if let Some(cancel) = &intent.cancel {
            findings.cancels += 1;
            match cancel {
                CancelOutcome::Done => findings.cancels_done += 1,
                CancelOutcome::Refused(_) => findings.cancels_refused += 1,
                CancelOutcome::Unknown(error) => findings
                    .cancels_unanswered
                    .push(format!("submit {}: {error}", intent.n)),
            }
        }
    }
    let acknowledged: std::collections::HashSet<&str> =
        intents.iter().filter_map(|i| i.job_id.as_deref()).collect();

    findings.jobs = histories.len();
    for (job_id, history) in &histories {
        let status = history.job.status().map_or("NONE", JobStatus::as_str);
        *findings.by_status.entry(status.to_owned()).or_default() += 1;
        let kind = history.kind.clone().unwrap_or_else(|| "?".into());
        *findings.by_kind.entry(kind).or_default() += 1;
        findings.starts += u64::from(history.starts);
        findings.reruns_after_release += u64::from(history.reruns);
        findings.duplicate_starts += u64::from(history.duplicates);
        findings.expired_leases += u64::from(history.expired_leases);
        if !acknowledged.contains(job_id.as_str()) {
            findings.unacknowledged_in_store += 1;
        }
        if history.hole || history.undecodable.is_some() {
            let why = history
                .undecodable
                .clone()
                .unwrap_or("a hole in its sequence".into());
            findings.damaged_jobs.push(format!("{job_id}: {why}"));
        }
        if let Err(why) = history.verdict(cancels.get(job_id.as_str()).copied()) {
            findings.wrong_state += 1;
            if findings.wrong_state_examples.len() < EXAMPLES {
                let kind = history.kind.as_deref().unwrap_or("?");
                findings
                    .wrong_state_examples
                    .push(format!("{job_id} ({kind}): {why}"));
            }
        }
    }
    Ok(findings)
}

/// Kinds the load can submit, for the report's order.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    [
        Kind::Noop,
        Kind::Slow,
        Kind::Retry,
        Kind::Exhaust,
        Kind::Permanent,
        Kind::CancelDelayed,
        Kind::CancelRunning,
    ]
    .into_iter()
    .map(Kind::label)
}

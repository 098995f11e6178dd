//! The claim loop of `ordo serve worker`: claims jobs over the worker protocol, runs up to
//! `concurrency` of them at once through [`Handlers::run`], keeps their leases alive and
//! reports how they ended.
//!
//! - **Claims** ask for as many jobs as there are free slots (one call, long-polling up to
//!   `claim_wait`), so a busy worker claims in batches and an idle one waits in the server.
//! - **Heartbeats** every lease/3 extend the lease. Their answer can stop the attempt: the job
//!   was cancelled (the handler's token fires, nothing is reported) or the server refuses the
//!   heartbeat because the attempt is no longer this worker's (its lease ran out and the
//!   reaper moved on; nothing is reported either, the other attempt owns the job now).
//! - **Log lines** a handler writes to its [`JobLog`] go to the API in batches while the
//!   attempt runs; the rest is flushed before the report.
//! - **Reports** (complete, fail, release) ride on the next claim when it is about to go, and
//!   go on their own otherwise, many per call ([`crate::reports`]); they are sent again with
//!   backoff while the API is unavailable, a bounded number of times; after that the lease
//!   runs out and the reaper retries the job.
//! - **Shutdown** (the `shutdown` token): no more claims (a waiting one is given up at once);
//!   running attempts get
//!   `shutdown_grace` to finish, then their tokens fire and what is still running is released
//!   (the attempt does not count), so another worker takes it at once instead of waiting for
//!   the lease to run out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ordo_protocol::worker::{
    AttemptReport, ClaimRequest, ClaimResponse, ClaimedJob, HeartbeatRequest, LogLine, LogRequest,
    MAX_CLAIM_JOBS,
};
use ordo_protocol::Backoff;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{self, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ApiClient, ClientError};
use crate::handler::{JobContext, JobFailure};
use crate::log::JobLog;
use crate::metrics::WorkerMetrics;
use crate::outcome::AttemptOutcome;
use crate::registry::Handlers;
use crate::reports::{self, Batch, Reports};

/// Log lines per call, and how long the first waiting line waits for company.
const LOG_BATCH: usize = 1_000;
const LOG_LINGER: Duration = Duration::from_millis(200);
const LOG_TRIES: u32 = 3;
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in the start events and the job views.
    pub worker_id: String,
    /// In order of preference.
    pub queues: Vec<String>,
    /// Attempts run at once.
    pub concurrency: usize,
    pub lease: Duration,
    /// How long a claim waits in the server for a job when none is ready.
    pub claim_wait: Duration,
    /// How long running attempts may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

/// Claims in the server at once. A claim holds the slots it asks for until it is answered; a
/// second one lets slots freed meanwhile (and the reports of their attempts) go out without
/// waiting for the first, so a busy worker is not bound to one claim's round trip.
const CLAIMS_IN_FLIGHT: usize = 2;

/// Runs the claim loop until `shutdown`, then drains (see the module docs).
pub async fn run(
    config: WorkerConfig,
    client: ApiClient,
    handlers: Arc<Handlers>,
    metrics: Option<WorkerMetrics>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Fires for every running attempt once the grace after shutdown is over.
    let stop_jobs = CancellationToken::new();
    let mut running = JoinSet::new();
    let reports = Arc::new(Reports::default());
    let flusher = tokio::spawn(reports::flush(reports.clone(), client.clone()));
    // Claims in the server, each answering with the slots it holds; and the reports each
    // carries, settled with its answer.
    let mut claims = JoinSet::new();
    let mut carried: HashMap<task::Id, Batch> = HashMap::new();
    let mut failures = 0;
    // After a failed claim, no new one until then.
    let mut resume_at: Option<Instant> = None;
    tracing::info!(worker_id = %config.worker_id, queues = ?config.queues, concurrency = config.concurrency, "worker started");
    loop {
        let can_claim = claims.len() < CLAIMS_IN_FLIGHT && resume_at.is_none();
        // Reports ride on the claim a freed slot starts, unless none can start now.
        reports.set_direct(!can_claim);
        tokio::select! {
            Some(answer) = claims.join_next_with_id() => {
                let (claimed, held, batch) = match answer {
                    Ok((id, (claimed, held))) => (claimed, Some(held), carried.remove(&id)),
                    Err(error) => {
                        let batch = carried.remove(&error.id());
                        let error = ClientError::Unavailable(format!("the claim task failed: {error}"));
                        (Err(error), None, batch)
                    }
                };
                match settle_claim(&reports, batch.unwrap_or_default(), claimed) {
                    Ok(jobs) => {
                        failures = 0;
                        let attempt = |job_cancel| Attempt {
                            client: client.clone(),
                            handlers: handlers.clone(),
                            metrics: metrics.clone(),
                            lease: config.lease,
                            cancel: job_cancel,
                            worker_id: config.worker_id.clone(),
                        };
                        start(jobs, held, &mut running, &reports, || attempt(stop_jobs.child_token()));
                    }
                    Err(error) => {
                        failures += 1;
                        let pause = RETRY.delay(failures);
                        tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "claim failed");
                        resume_at = Some(Instant::now() + pause);
                    }
                }
            }
            permit = slots.clone().acquire_owned(), if can_claim => {
                let mut held = permit.expect("the semaphore is never closed");
                let more = slots.available_permits().min(MAX_CLAIM_JOBS as usize - 1);
                if let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32) {
                    held.merge(extra);
                }
                let batch = reports.take();
                let request = ClaimRequest {
                    worker_id: config.worker_id.clone(),
                    queues: config.queues.clone(),
                    max_jobs: held.num_permits() as u32,
                    wait_ms: config.claim_wait.as_millis() as u64,
                    lease_ms: config.lease.as_millis() as u64,
                    reports: batch.reports.clone(),
                };
                let client = client.clone();
                let claim = claims.spawn(async move { (client.claim(&request).await, held) });
                carried.insert(claim.id(), batch);
            }
            () = sleep_until(resume_at), if resume_at.is_some() => resume_at = None,
            () = shutdown.cancelled() => break,
        }
        while running.try_join_next().is_some() {}
    }
    // Shutdown gives up waiting claims at once (closing their connections): the server stops
    // waiting when a connection closes, so no job is claimed for a worker that is leaving, and
    // a supervisor's short grace is not spent on a long-poll. Jobs of a claim answered at that
    // very moment are given back (released) without running.
    reports.set_direct(true);
    claims.abort_all();
    while let Some(answer) = claims.join_next_with_id().await {
        let (id, claimed) = match answer {
            Ok((id, (claimed, _held))) => (id, claimed),
            Err(error) => (
                error.id(),
                Err(ClientError::Unavailable("the worker is stopping".into())),
            ),
        };
        let batch = carried.remove(&id).unwrap_or_default();
        for job in settle_claim(&reports, batch, claimed).unwrap_or_default() {
            reports.push(AttemptReport::Released {
                job_id: job.job_id,
                attempt: job.attempt,
                reason: "the worker shut down before the attempt started".into(),
            });
        }
    }
    drain(running, config.shutdown_grace, stop_jobs).await;
    reports.close();
    if let Err(error) = flusher.await {
        tracing::error!(%error, "the report flusher failed");
    }
    tracing::info!(worker_id = %config.worker_id, "worker stopped");
}

/// Settles the reports a claim carried with its answer; the claimed jobs, or why the claim
/// failed (its reports are settled either way).
fn settle_claim(
    reports: &Reports,
    batch: Batch,
    claimed: Result<ClaimResponse, ClientError>,
) -> Result<Vec<ClaimedJob>, ClientError> {
    match claimed {
        Ok(answer) => {
            reports.settle(batch, Ok(answer.reports));
            match answer.claim_problem {
                None => Ok(answer.jobs),
                Some(problem) => Err(ClientError::Unavailable(format!("claim: {problem}"))),
            }
        }
        Err(error) => {
            reports.settle(batch, Err(ClientError::Unavailable(error.to_string())));
            Err(error)
        }
    }
}

/// Runs each claimed job on one of the slots its claim held; the slots left over are free
/// again.
fn start(
    jobs: Vec<ClaimedJob>,
    mut held: Option<OwnedSemaphorePermit>,
    running: &mut JoinSet<()>,
    reports: &Arc<Reports>,
    mut attempt: impl FnMut() -> Attempt,
) {
    for job in jobs {
        let Some(permit) = held.as_mut().and_then(|held| held.split(1)) else {
            // The server answered more jobs than the claim asked for: give them back.
            tracing::error!(job_id = %job.job_id, "claimed beyond the slots asked for; released");
            reports.push(AttemptReport::Released {
                job_id: job.job_id,
                attempt: job.attempt,
                reason: "claimed beyond the worker's free slots".into(),
            });
            continue;
        };
        let attempt = attempt();
        let reports = reports.clone();
        running.spawn(async move {
            // The report first, then the slot: the claim the slot starts carries it.
            if let Some(report) = attempt.run(job).await {
                reports.push(report);
            }
            drop(permit);
        });
    }
}

/// Until `at`, or never.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn drain(mut running: JoinSet<()>, grace: Duration, stop_jobs: CancellationToken) {
    tracing::info!(
        in_flight = running.len(),
        grace_ms = grace.as_millis() as u64,
        "stopped claiming; waiting for running jobs"
    );
    let finished = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            in_flight = running.len(),
            "grace period over; stopping and releasing the rest"
        );
        stop_jobs.cancel();
        while running.join_next().await.is_some() {}
    }
}

/// Why an attempt stopped before its handler finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupted {
    /// The job was cancelled; the server already knows.
    Cancelled,
    /// The server refused a heartbeat: the attempt is no longer this worker's.
    LeaseLost,
}

/// One claimed attempt and what it needs.
struct Attempt {
    client: ApiClient,
    handlers: Arc<Handlers>,
    metrics: Option<WorkerMetrics>,
    lease: Duration,
    cancel: CancellationToken,
    worker_id: String,
}

impl Attempt {
    /// Runs the attempt; answers its report, none when the server already knows how it ended.
    async fn run(self, job: ClaimedJob) -> Option<AttemptReport> {
        let context = JobContext::new(
            job.job_id,
            job.job_type.clone(),
            job.payload,
            Duration::from_secs(job.timeout_secs),
        )
        .with_attempt(job.attempt, Some(job.max_attempts))
        .with_cancel(self.cancel.clone());
        let (log, lines) = JobLog::channel();
        let context = context.with_log(log);
        let finished = CancellationToken::new();
        let heartbeats = tokio::spawn(keep_alive(
            self.client.clone(),
            job.job_id,
            job.attempt,
            self.lease,
            self.cancel.clone(),
            finished.clone(),
        ));
        let run = async {
            let outcome = self.handlers.run(context, self.metrics.as_ref()).await;
            finished.cancel();
            outcome
        };
        let shipper = LogShipper {
            client: &self.client,
            job_id: job.job_id,
            attempt: job.attempt,
            worker_id: &self.worker_id,
        };
        // The last lines go out before the report, while the attempt is still the running one.
        let (outcome, ()) = tokio::join!(run, shipper.run(lines, &finished));
        let interrupted = heartbeats.await.ok().flatten();
        let (job_id, attempt) = (job.job_id, job.attempt);
        match (outcome, interrupted) {
            (_, Some(Interrupted::LeaseLost)) => None,
            (AttemptOutcome::Completed(result), _) => Some(AttemptReport::Completed {
                job_id,
                attempt,
                result,
            }),
            (AttemptOutcome::Cancelled, Some(Interrupted::Cancelled)) => None,
            (AttemptOutcome::Failed(JobFailure { error, retryable }), _) => {
                Some(AttemptReport::Failed {
                    job_id,
                    attempt,
                    error,
                    retryable,
                })
            }
            // Stopped by the worker's shutdown: hand the attempt back; it does not count.
            (AttemptOutcome::Cancelled, None) => Some(AttemptReport::Released {
                job_id,
                attempt,
                reason: "the worker shut down before the attempt finished".into(),
            }),
        }
    }
}

/// Sends an attempt's log lines in batches: what arrived within [`LOG_LINGER`] of the first
/// waiting line, at most [`LOG_BATCH`] per call.
struct LogShipper<'a> {
    client: &'a ApiClient,
    job_id: uuid::Uuid,
    attempt: u32,
    worker_id: &'a str,
}

impl LogShipper<'_> {
    /// Until `finished`, then flushes what is left.
    async fn run(&self, mut lines: mpsc::Receiver<LogLine>, finished: &CancellationToken) {
        let mut batch = Vec::new();
        loop {
            let open = tokio::select! {
                line = lines.recv() => line.map(|line| batch.push(line)).is_some(),
                () = finished.cancelled() => false,
            };
            if open {
                let linger = tokio::time::sleep(LOG_LINGER);
                tokio::pin!(linger);
                while batch.len() < LOG_BATCH {
                    tokio::select! {
                        line = lines.recv() => match line {
                            Some(line) => batch.push(line),
                            None => break,
                        },
                        () = &mut linger => break,
                        () = finished.cancelled() => break,
                    }
                }
            } else {
                while let Ok(line) = lines.try_recv() {
                    batch.push(line);
                }
            }
            for chunk in batch.chunks(LOG_BATCH) {
                self.send(chunk.to_vec()).await;
            }
            batch.clear();
            if !open || (finished.is_cancelled() && lines.is_empty()) {
                return;
            }
        }
    }

    /// One batch, retried a few times while the API is unavailable; then it is dropped, since
    /// lines must not hold up the job's report.
    async fn send(&self, lines: Vec<LogLine>) {
        let request = LogRequest {
            attempt: self.attempt,
            worker_id: Some(self.worker_id.to_owned()),
            lines,
        };
        let sent = deliver(LOG_TRIES, self.job_id, "log lines", || {
            self.client.logs(self.job_id, &request)
        })
        .await;
        match sent {
            Ok(()) => {}
            Err(error @ ClientError::Refused { .. }) => {
                tracing::debug!(job_id = %self.job_id, %error, "log lines refused");
            }
            Err(error) => {
                tracing::warn!(job_id = %self.job_id, %error, lines = request.lines.len(), "log lines dropped");
            }
        }
    }
}

/// Makes `call` until it succeeds, is refused, or has found the API unavailable `tries`
/// times, backing off in between; the last answer otherwise.
async fn deliver<F, Fut>(
    tries: u32,
    job_id: uuid::Uuid,
    what: &str,
    mut call: F,
) -> Result<(), ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ClientError>>,
{
    let mut failures = 0;
    loop {
        match call().await {
            Err(error @ ClientError::Unavailable(_)) if failures + 1 < tries => {
                failures += 1;
                let pause = RETRY.delay(failures);
                tracing::warn!(%job_id, %error, retry_in_ms = pause.as_millis() as u64, "{what} not sent; retrying");
                tokio::time::sleep(pause).await;
            }
            answer => return answer,
        }
    }
}

/// Heartbeats every lease/3 until `finished`; returns why the attempt had to stop, if the
/// server said so. A heartbeat that fails for lack of an answer is logged and tried again on
/// the next beat: two in a row may fail before the lease is at risk.
async fn keep_alive(
    client: ApiClient,
    job_id: uuid::Uuid,
    attempt: u32,
    lease: Duration,
    cancel: CancellationToken,
    finished: CancellationToken,
) -> Option<Interrupted> {
    let request = HeartbeatRequest {
        attempt,
        lease_ms: lease.as_millis() as u64,
    };
    loop {
        tokio::select! {
            () = finished.cancelled() => return None,
            () = tokio::time::sleep(lease / 3) => {}
        }
        match client.heartbeat(job_id, &request).await {
            Ok(answer) if answer.cancelled => {
                tracing::info!(%job_id, attempt, "job cancelled; stopping it");
                cancel.cancel();
                return Some(Interrupted::Cancelled);
            }
            Ok(_) => {}
            Err(error @ ClientError::Refused { .. }) => {
                tracing::warn!(%job_id, attempt, %error, "heartbeat refused; stopping the attempt");
                cancel.cancel();
                return Some(Interrupted::LeaseLost);
            }
            Err(error) => tracing::warn!(%job_id, attempt, %error, "heartbeat failed"),
        }
    }
}

//! Reports (complete, fail, release) on their way to the API. An attempt that ends leaves its
//! report here and then frees its slot; whoever calls the API next takes every waiting report:
//! - the claim loop, which the freed slot wakes at once, sends them on its claim
//!   (complete-and-claim-next: one round trip for the reports and the next jobs);
//! - the flusher ([`flush`]) while the claim loop cannot: its claim is in the server (a
//!   long-poll may wait seconds), it is backing off, or the worker is stopping. It sends what
//!   waits in one `POST /api/v1/workers/reports`; what arrives meanwhile goes in its next call.
//!
//! So a busy worker spends one round trip per batch of jobs, and no report waits for a timer.
//! A report the API could not take (unavailable) is sent again with backoff, at most
//! [`REPORT_TRIES`] times; after that its lease runs out and the reaper retries the job.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordo_protocol::worker::{AttemptReport, ReportResult};
use ordo_protocol::Backoff;
use tokio::sync::Notify;

use crate::client::{ApiClient, ClientError};

/// Tries of a report before leaving the job to its lease.
const REPORT_TRIES: u32 = 6;
/// Reports per call, and about how many bytes of results and reasons they may carry (the
/// API takes 4 MiB bodies on these calls; one result may be 256 KiB).
const MAX_PER_CALL: usize = 100;
const MAX_BYTES_PER_CALL: usize = 1024 * 1024;
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The reports waiting to be sent.
#[derive(Default)]
pub struct Reports {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// New reports, for the next claim or (while `direct`) the flusher.
    waiting: VecDeque<Pending>,
    /// Reports a call could not deliver: the flusher sends them again after a backoff.
    retries: VecDeque<Pending>,
    /// The claim loop is not about to call: the flusher sends new reports as they come.
    direct: bool,
    /// No claim will come again: the flusher sends the rest and stops.
    closed: bool,
}

struct Pending {
    report: AttemptReport,
    /// Calls that found the API unavailable.
    failures: u32,
    bytes: usize,
}

impl Pending {
    fn new(report: AttemptReport, failures: u32) -> Self {
        let bytes = report_bytes(&report);
        Self {
            report,
            failures,
            bytes,
        }
    }
}

/// Reports taken for one call, to be settled with its answer.
#[derive(Default)]
pub struct Batch {
    pub reports: Vec<AttemptReport>,
    failures: Vec<u32>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// Up to [`MAX_PER_CALL`] reports of `queue`, about [`MAX_BYTES_PER_CALL`].
    fn take_from(queue: &mut VecDeque<Pending>) -> Self {
        let mut batch = Self::default();
        let mut bytes = 0;
        while let Some(next) = queue.front() {
            let full = batch.reports.len() == MAX_PER_CALL
                || (!batch.is_empty() && bytes + next.bytes > MAX_BYTES_PER_CALL);
            if full {
                break;
            }
            let next = queue.pop_front().expect("front was Some");
            bytes += next.bytes;
            batch.reports.push(next.report);
            batch.failures.push(next.failures);
        }
        batch
    }
}

impl Reports {
    pub fn push(&self, report: AttemptReport) {
        let mut state = self.lock();
        state.waiting.push_back(Pending::new(report, 0));
        if state.direct {
            self.wake.notify_one();
        }
    }

    /// New reports for the claim about to be sent.
    pub fn take(&self) -> Batch {
        Batch::take_from(&mut self.lock().waiting)
    }

    /// Whether the flusher sends new reports as they come (the claim loop is not about to).
    pub fn set_direct(&self, direct: bool) {
        let mut state = self.lock();
        state.direct = direct;
        if direct && !state.waiting.is_empty() {
            self.wake.notify_one();
        }
    }

    /// No more claims: the flusher sends what is left and stops.
    pub fn close(&self) {
        let mut state = self.lock();
        state.direct = true;
        state.closed = true;
        self.wake.notify_one();
    }

    /// Settles a batch with the API's answer: refusals are logged, and reports the API could
    /// not take go to the flusher's retries while they have tries left.
    pub fn settle(&self, batch: Batch, answer: Result<Vec<ReportResult>, ClientError>) {
        let sent = batch.reports.into_iter().zip(batch.failures);
        let undelivered: Vec<_> = match answer {
            Ok(results) if results.len() == sent.len() => sent
                .zip(results)
                .filter_map(|((report, failures), result)| {
                    let detail = result
                        .problem
                        .as_ref()
                        .and_then(|p| p.get("detail")?.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    match result.status {
                        200..=299 => None,
                        500.. => Some((report, failures, format!("{}: {detail}", result.status))),
                        status => {
                            // E.g. the lease ran out and the attempt was expired meanwhile.
                            tracing::warn!(job_id = %report.job_id(), status, %detail, "report refused; the job has moved on");
                            None
                        }
                    }
                })
                .collect(),
            Ok(results) => {
                let error = format!("{} results for {} reports", results.len(), sent.len());
                sent.map(|(report, failures)| (report, failures, error.clone()))
                    .collect()
            }
            Err(error) => sent
                .map(|(report, failures)| (report, failures, error.to_string()))
                .collect(),
        };
        if undelivered.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (report, failures, error) in undelivered {
            let failures = failures + 1;
            if failures >= REPORT_TRIES {
                tracing::error!(job_id = %report.job_id(), %error, "report not delivered; the lease will run out and the reaper retries the job");
            } else {
                tracing::warn!(job_id = %report.job_id(), %error, failures, "report not delivered; sending it again");
                state.retries.push_back(Pending::new(report, failures));
            }
        }
        self.wake.notify_one();
    }

    /// What the flusher sends next: retries first, new reports while `direct`; `None` once
    /// closed and nothing is left.
    fn next_for_flusher(&self) -> Option<Batch> {
        let mut state = self.lock();
        let batch = if !state.retries.is_empty() {
            Batch::take_from(&mut state.retries)
        } else if state.direct {
            Batch::take_from(&mut state.waiting)
        } else {
            Batch::default()
        };
        (!batch.is_empty() || !state.closed).then_some(batch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change under the lock is one push or pop: a panic elsewhere cannot leave the
        // queues half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends reports while the claim loop cannot (see the module docs) and those a call could
/// not deliver, until [`Reports::close`] and everything is sent.
pub async fn flush(reports: Arc<Reports>, client: ApiClient) {
    while let Some(batch) = reports.next_for_flusher() {
        if batch.is_empty() {
            reports.wake.notified().await;
            continue;
        }
        let failures = batch.failures.iter().copied().max().unwrap_or(0);
        if failures > 0 {
            tokio::time::sleep(RETRY.delay(failures)).await;
        }
        let answer = client.reports(&batch.reports).await;
        reports.settle(batch, answer);
    }
}

/// About what a report adds to a call's body.
fn report_bytes(report: &AttemptReport) -> usize {
    const ITEM: usize = 100;
    ITEM + match report {
        AttemptReport::Completed { result, .. } => {
            serde_json::to_vec(result).map_or(0, |v| v.len())
        }
        AttemptReport::Failed { error, .. } => error.len(),
        AttemptReport::Released { reason, .. } => reason.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_protocol::jobs::BatchJobResult;
    use serde_json::json;
    use uuid::Uuid;

    fn completed(n: u32) -> AttemptReport {
        AttemptReport::Completed {
            job_id: Uuid::nil(),
            attempt: n,
            result: json!(null),
        }
    }

    fn attempts(batch: &Batch) -> Vec<u32> {
        batch
            .reports
            .iter()
            .map(|r| match r {
                AttemptReport::Completed { attempt, .. } => *attempt,
                _ => unreachable!(),
            })
            .collect()
    }

    fn result(status: u16) -> BatchJobResult {
        BatchJobResult {
            status,
            job_id: None,
            job_status: None,
            sequence: None,
            problem: Some(json!({"detail": "why"})),
        }
    }

    #[test]
    fn new_reports_wait_for_the_claim_unless_the_flusher_is_to_send_them() {
        let reports = Reports::default();
        reports.push(completed(1));
        assert!(reports.next_for_flusher().unwrap().is_empty());
        assert_eq!(attempts(&reports.take()), [1]);

        reports.push(completed(2));
        reports.set_direct(true);
        assert_eq!(attempts(&reports.next_for_flusher().unwrap()), [2]);
        assert!(reports.take().is_empty());
    }

    #[test]
    fn a_call_takes_at_most_its_share_in_order() {
        let reports = Reports::default();
        for n in 0..(MAX_PER_CALL as u32 + 5) {
            reports.push(completed(n));
        }
        let first = reports.take();
        assert_eq!(first.reports.len(), MAX_PER_CALL);
        assert_eq!(attempts(&first)[..2], [0, 1]);
        assert_eq!(reports.take().reports.len(), 5);

        let big = AttemptReport::Completed {
            job_id: Uuid::nil(),
            attempt: 9,
            result: json!("x".repeat(MAX_BYTES_PER_CALL)),
        };
        reports.push(big.clone());
        reports.push(big);
        assert_eq!(reports.take().reports.len(), 1, "one large report per call");
        assert_eq!(reports.take().reports.len(), 1);
    }

    #[test]
    fn undelivered_reports_are_retried_a_bounded_number_of_times_and_refusals_are_not() {
        let reports = Reports::default();
        for n in 1..=3 {
            reports.push(completed(n));
        }
        let batch = reports.take();
        reports.settle(batch, Ok(vec![result(200), result(409), result(503)]));
        let retry = reports.next_for_flusher().unwrap();
        assert_eq!(attempts(&retry), [3], "only the 503 is sent again");
        assert_eq!(retry.failures, [1]);

        let mut batch = retry;
        for _ in 1..REPORT_TRIES {
            reports.settle(batch, Err(ClientError::Unavailable("down".into())));
            batch = reports.next_for_flusher().unwrap();
        }
        assert!(batch.is_empty(), "given up after {REPORT_TRIES} tries");

        reports.push(completed(4));
        let batch = reports.take();
        reports.settle(batch, Ok(Vec::new()));
        assert_eq!(
            attempts(&reports.next_for_flusher().unwrap()),
            [4],
            "an answer that does not match the reports leaves them undelivered"
        );
    }

    #[test]
    fn the_flusher_stops_once_closed_and_empty() {
        let reports = Reports::default();
        reports.push(completed(1));
        reports.close();
        assert_eq!(attempts(&reports.next_for_flusher().unwrap()), [1]);
        assert!(reports.next_for_flusher().is_none());
    }
}

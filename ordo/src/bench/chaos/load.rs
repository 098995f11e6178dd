//! The steady load of a chaos run: submits over HTTP at a fixed rate, a mix of kinds
//! ([`Kind`]) whose final states the checks know, and cancels of some. Every submit carries
//! an `Idempotency-Key`, so a submit whose answer was lost (the API killed, PostgreSQL away)
//! is retried without risk of a second job, until it is acknowledged or its deadline passes.
//! Every intent and what came of it goes into the [`Ledger`] the checks read.

use super::stack::QUEUE;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a submit or a cancel is retried before it is given up.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Bound of one HTTP call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two tries of a request that failed for a passing reason.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What a job is meant to do, and so which final states its commands imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `noop`: completes.
    Noop,
    /// `sleep` 2 s: completes; long enough to be running when its worker is killed, so its
    /// lease runs out and the reaper turns it into a retry.
    Slow,
    /// `fail` `{"times": 1}`, 5 attempts: the first attempt fails, a retry completes.
    Retry,
    /// `fail` `{"probability": 1}`, 2 attempts: dead-lettered once both failed.
    Exhaust,
    /// `fail` with a non-retryable error: dead-lettered after its first attempt.
    Permanent,
    /// `noop` due in an hour, cancelled right after the submit: cancelled.
    CancelDelayed,
    /// `sleep` 1.5 s, cancelled 0.5 s after the submit (queued or running): cancelled, unless
    /// it completed first.
    CancelRunning,
}

/// The mix, per 20 submits.
const MIX: [(Kind, usize); 7] = [
    (Kind::Noop, 10),
    (Kind::Slow, 1),
    (Kind::Retry, 3),
    (Kind::Exhaust, 2),
    (Kind::Permanent, 1),
    (Kind::CancelDelayed, 1),
    (Kind::CancelRunning, 2),
];

impl Kind {
    /// The kind of the n-th submit: the mix, interleaved.
    fn of(n: usize) -> Self {
        let total: usize = MIX.iter().map(|(_, weight)| weight).sum();
        // A stride coprime to 20 spreads each kind over the window instead of runs.
        let mut slot = (n * 7) % total;
        for (kind, weight) in MIX {
            if slot < weight {
                return kind;
            }
            slot -= weight;
        }
        Kind::Noop
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Slow => "slow",
            Self::Retry => "retry",
            Self::Exhaust => "exhaust",
            Self::Permanent => "permanent",
            Self::CancelDelayed => "cancel-delayed",
            Self::CancelRunning => "cancel-running",
        }
    }

    /// The submit's body.
    fn body(self) -> Value {
        let backoff = json!({"initial_delay_ms": 200, "multiplier": 2.0, "max_delay_ms": 2000});
        let mut body = match self {
            Self::Noop => json!({"type": "noop"}),
            Self::Slow => json!({"type": "sleep", "payload": {"ms": 2000}}),
            Self::Retry => json!({"type": "fail", "payload": {"times": 1}, "max_attempts": 5}),
            Self::Exhaust => {
                json!({"type": "fail", "payload": {"probability": 1.0}, "max_attempts": 2})
            }
            Self::Permanent => json!({
                "type": "fail",
                "payload": {"times": 100, "retryable": false},
                "max_attempts": 3,
            }),
            Self::CancelDelayed => json!({
                "type": "noop",
                "run_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            }),
            Self::CancelRunning => json!({"type": "sleep", "payload": {"ms": 1500}}),
        };
        body["queue"] = json!(QUEUE);
        body["backoff"] = backoff;
        body["labels"] = json!({"chaos": self.label()});
        body
    }

    /// How long after the acknowledged submit the job is cancelled, if it is.
    fn cancel_after(self) -> Option<Duration> {
        match self {
            Self::CancelDelayed => Some(Duration::from_millis(200)),
            Self::CancelRunning => Some(Duration::from_millis(500)),
            _ => None,
        }
    }
}

/// How a cancel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// 200: the job is CANCELLED.
    Done,
    /// 409: the job was already in a state that cannot be cancelled (named).
    Refused(String),
    /// No answer within the deadline; the job may or may not be cancelled.
    Unknown(String),
}

/// One submit the load meant to make, and what came of it.
#[derive(Debug, Clone)]
pub struct Intent {
    pub n: usize,
    pub kind: Kind,
    /// The job id of the acknowledged submit; `None` if it was never acknowledged.
    pub job_id: Option<String>,
    /// Why the submit was given up.
    pub error: Option<String>,
    pub cancel: Option<CancelOutcome>,
}

#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP calls that failed for a passing reason and were tried again.
    pub retried_calls: AtomicU64,
}

/// Every intent of the run, by submit number.
#[derive(Default)]
pub struct Ledger {
    pub intents: Mutex<Vec<Intent>>,
    pub counters: Counters,
}

pub struct Load {
    pub ledger: Arc<Ledger>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts submitting `rate` jobs a second to `api_url` until [`Load::stop`].
    pub fn start(api_url: &str, rate: u32, run: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()?;
        let ledger = Arc::new(Ledger::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(pace(
            Api {
                client,
                url: api_url.to_owned(),
                run: run.to_owned(),
                ledger: ledger.clone(),
            },
            rate,
            stop.clone(),
        ));
        Ok(Self { ledger, stop, task })
    }

    /// Stops submitting and waits for the submits and cancels in flight (each bounded by
    /// its deadline).
    pub async fn stop(self) -> Arc<Ledger> {
        self.stop.cancel();
        let _ = self.task.await;
        self.ledger
    }
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
    /// Makes the idempotency keys of this run its own.
    run: String,
    ledger: Arc<Ledger>,
}

/// One submit every 1/rate s, each in its own task, so a slow or failing call never delays
/// the next: the load stays steady through a fault.
async fn pace(api: Api, rate: u32, stop: CancellationToken) {
    let period = Duration::from_secs(1) / rate;
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(started + period * n as u32) => {}
        }
        let kind = Kind::of(n);
        api.ledger
            .intents
            .lock()
            .expect("not poisoned")
            .push(Intent {
                n,
                kind,
                job_id: None,
                error: None,
                cancel: None,
            });
        tasks.spawn(api.clone().intent(n, kind));
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// A call's answer, or why there is none.
enum Answer {
    Status(reqwest::StatusCode, Value),
    /// Transport error, timeout or a 5xx: worth trying again.
    Passing(String),
}

impl Api {
    async fn intent(self, n: usize, kind: Kind) {
        let submitted = self.submit(n, kind).await;
        let job_id = match submitted {
            Ok(id) => id,
            Err(error) => {
                self.record(n, |intent| intent.error = Some(error));
                return;
            }
        };
        self.record(n, |intent| intent.job_id = Some(job_id.clone()));
        if let Some(after) = kind.cancel_after() {
            tokio::time::sleep(after).await;
            let outcome = self.cancel(&job_id).await;
            self.record(n, |intent| intent.cancel = Some(outcome));
        }
    }

    fn record(&self, n: usize, change: impl FnOnce(&mut Intent)) {
        change(&mut self.ledger.intents.lock().expect("not poisoned")[n]);
    }

    async fn submit(&self, n: usize, kind: Kind) -> Result<String, String> {
        let body = kind.body();
        let key = format!("{}-{n}", self.run);
        let url = format!("{}/api/v1/jobs", self.url);
        let answer = self
            .retrying(|| {
                self.client
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await;
        match answer {
            Answer::Status(status, body) if status.is_success() => body["job_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("submit answered {status} without a job id: {body}")),
            Answer::Status(status, body) => Err(format!("submit answered {status}: {body}")),
            Answer::Passing(error) => Err(error),
        }
    }

    async fn cancel(&self, job_id: &str) -> CancelOutcome {
        let url = format!("{}/api/v1/jobs/{job_id}/cancel", self.url);
        let body = json!({"reason": "chaos"});
        match self.retrying(|| self.client.post(&url).json(&body)).await {
            Answer::Status(status, _) if status.is_success() => CancelOutcome::Done,
            Answer::Status(reqwest::StatusCode::CONFLICT, body) => CancelOutcome::Refused(
                body["current_status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
            ),
            Answer::Status(status, body) => {
                CancelOutcome::Unknown(format!("cancel answered {status}: {body}"))
            }
            Answer::Passing(error) => CancelOutcome::Unknown(error),
        }
    }

    /// Sends the request `build` makes until it gets an answer that is not passing (a 5xx,
    /// a 409 of a concurrent change, a transport error), or [`REQUEST_DEADLINE`] passed.
    async fn retrying(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Answer {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        loop {
            let answer = match build().send().await {
                Err(e) => Answer::Passing(format!("{e}")),
                Ok(response) => {
                    let status = response.status();
                    let body = response.json::<Value>().await.unwrap_or(Value::Null);
                    // A concurrent change (no current_status) is worth another try; an
                    // invalid transition is an answer.
                    let concurrent = status == reqwest::StatusCode::CONFLICT
                        && body.get("current_status").is_none();
                    if status.is_server_error() || concurrent {
                        Answer::Passing(format!("{status}: {body}"))
                    } else {
                        Answer::Status(status, body)
                    }
                }
            };
            match answer {
                Answer::Passing(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "request failed, trying again");
                    self.ledger
                        .counters
                        .retried_calls
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                answer => return answer,
            }
        }
    }
}

//! Handlers by job type, and the one place a job is run: [`Handlers::run`] looks the handler
//! up, enforces the per-job timeout, turns cancellation into [`Outcome::Cancelled`] and a
//! handler's panic into a permanent failure, and records the metrics. The claim loop only
//! has to report the outcome.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use crate::builtin::{Fail, Http, Noop, Sleep};
use crate::handler::{JobContext, JobFailure, JobHandler};
use crate::metrics::WorkerMetrics;

/// How long a handler may take to stop by itself once its job is cancelled, before the
/// runner drops it.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler's result, to report with `complete`.
    Completed(Value),
    /// To report with `fail`; `retryable` says whether the job may get another attempt.
    Failed(JobFailure),
    /// The job was cancelled or the worker is shutting down: nothing to report as the job's
    /// result (the server already knows about a cancel; after a shutdown the lease runs out
    /// and the attempt is retried).
    Cancelled,
}

impl Outcome {
    /// The `outcome` label of `ordo_worker_job_duration_seconds`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The handlers a worker runs, by job type.
#[derive(Clone)]
pub struct Handlers {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    cancel_grace: Duration,
}

impl Default for Handlers {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("types", &self.types())
            .field("cancel_grace", &self.cancel_grace)
            .finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self {
            handlers: HashMap::new(),
            cancel_grace: DEFAULT_CANCEL_GRACE,
        }
    }

    /// The built-ins: `noop`, `sleep`, `fail` and `http` (see [`crate::builtin`]).
    pub fn builtin() -> Self {
        Self::new()
            .with("noop", Noop)
            .with("sleep", Sleep)
            .with("fail", Fail)
            .with("http", Http::new())
    }

    /// Registers `handler` for jobs of type `job_type`, replacing any earlier one. Takes a
    /// handler, an `Arc<dyn JobHandler>` or a `Box<dyn JobHandler>`.
    pub fn register(&mut self, job_type: impl Into<String>, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(job_type.into(), Arc::new(handler));
        self
    }

    /// [`Self::register`], by value.
    pub fn with(mut self, job_type: impl Into<String>, handler: impl JobHandler) -> Self {
        self.register(job_type, handler);
        self
    }

    /// How long a cancelled handler may take to return by itself (default
    /// [`DEFAULT_CANCEL_GRACE`]).
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    pub fn get(&self, job_type: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(job_type).cloned()
    }

    pub fn contains(&self, job_type: &str) -> bool {
        self.handlers.contains_key(job_type)
    }

    /// The registered types, sorted.
    pub fn types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }

    /// Runs one attempt of `job` with the handler of its type.
    ///
    /// - an unknown type is a permanent failure (no other worker of this build would do
    ///   better, and retrying would only use up attempts);
    /// - past `job.timeout` the handler is dropped and the attempt fails, retryably;
    /// - once `job.cancel` fires the handler has the cancel grace to return by itself (a
    ///   result it still returns counts; an error does not), then the outcome is
    ///   [`Outcome::Cancelled`];
    /// - a panic in the handler is a permanent failure carrying the panic message.
    ///
    /// The handler sees a child of `job.cancel` that is also cancelled on timeout, so work it
    /// spawned can stop with it.
    pub async fn run(&self, job: JobContext, metrics: Option<&WorkerMetrics>) -> Outcome {
        let handler = self.get(&job.job_type);
        // Handler types bound the `type` label; anything else is recorded as `unknown`.
        let type_label = if handler.is_some() {
            job.job_type.clone()
        } else {
            WorkerMetrics::UNKNOWN_TYPE.into()
        };
        let _in_flight = metrics.map(|m| m.started(&type_label));
        let started = Instant::now();
        let span = tracing::info_span!(
            "job",
            job_id = %job.job_id,
            r#type = %job.job_type,
            attempt = job.attempt,
        );
        let outcome = match handler {
            Some(handler) => self.supervise(handler, job).instrument(span.clone()).await,
            None => Outcome::Failed(JobFailure::permanent(format!(
                "no handler for job type {:?}; this worker handles {}",
                job.job_type,
                self.types().join(", ")
            ))),
        };
        let elapsed = started.elapsed();
        if let Some(m) = metrics {
            m.finished(&type_label, &outcome, elapsed);
        }
        span.in_scope(|| match &outcome {
            Outcome::Completed(_) => {
                tracing::debug!(elapsed_ms = elapsed.as_millis() as u64, "job completed")
            }
            Outcome::Failed(f) => tracing::info!(
                elapsed_ms = elapsed.as_millis() as u64,
                retryable = f.retryable,
                error = %f.error,
                "job failed"
            ),
            Outcome::Cancelled => {
                tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job cancelled")
            }
        });
        outcome
    }

    async fn supervise(&self, handler: Arc<dyn JobHandler>, mut job: JobContext) -> Outcome {
        let outer = job.cancel.clone();
        job.cancel = outer.child_token();
        // Cancels the handler's token however this returns (timeout, or this future dropped).
        let _stop = job.cancel.clone().drop_guard();
        let timeout = job.timeout;
        let run = AssertUnwindSafe(handler.run(&job)).catch_unwind();
        tokio::pin!(run);
        let result = tokio::select! {
            biased;
            result = &mut run => result,
            () = tokio::time::sleep(timeout) => {
                return Outcome::Failed(JobFailure::retryable(format!(
                    "timed out after {} s",
                    timeout.as_secs_f64()
                )));
            }
            () = outer.cancelled() => {
                return match tokio::time::timeout(self.cancel_grace, &mut run).await {
                    Ok(Ok(Ok(value))) => Outcome::Completed(value),
                    Ok(Ok(Err(_))) => Outcome::Cancelled,
                    Ok(Err(panic)) => {
                        tracing::warn!(panic = panic_message(&*panic), "handler panicked while cancelled");
                        Outcome::Cancelled
                    }
                    Err(_) => {
                        tracing::warn!(
                            grace_ms = self.cancel_grace.as_millis() as u64,
                            "handler ignored cancellation; dropped"
                        );
                        Outcome::Cancelled
                    }
                };
            }
        };
        match result {
            Ok(Ok(value)) => Outcome::Completed(value),
            // It stopped because it was told to.
            Ok(Err(_)) if outer.is_cancelled() => Outcome::Cancelled,
            Ok(Err(failure)) => Outcome::Failed(failure),
            Err(panic) => Outcome::Failed(JobFailure::permanent(format!(
                "handler panicked: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::*;

    fn job(job_type: &str, payload: Value, timeout_ms: u64) -> JobContext {
        JobContext::new(
            Uuid::now_v7(),
            job_type,
            payload,
            Duration::from_millis(timeout_ms),
        )
    }

    struct Panics;

    #[async_trait]
    impl JobHandler for Panics {
        async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
            panic!("payload was {}", job.payload);
        }
    }

    /// Ignores its token and sleeps: only the runner can stop it.
    struct Stubborn;

    #[async_trait]
    impl JobHandler for Stubborn {
        async fn run(&self, _job: &JobContext) -> Result<Value, JobFailure> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(json!("done"))
        }
    }

    /// Finishes its work when cancelled.
    struct Finisher;

    #[async_trait]
    impl JobHandler for Finisher {
        async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
            job.cancel.cancelled().await;
            Ok(json!("finished anyway"))
        }
    }

    /// Reports its token's state when the runner gives up on it.
    struct Watches(tokio::sync::mpsc::UnboundedSender<CancellationToken>);

    #[async_trait]
    impl JobHandler for Watches {
        async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
            self.0.send(job.cancel.clone()).unwrap();
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn builtins_are_registered_and_run() {
        let handlers = Handlers::builtin();
        assert_eq!(handlers.types(), ["fail", "http", "noop", "sleep"]);
        assert_eq!(
            handlers.run(job("noop", Value::Null, 1000), None).await,
            Outcome::Completed(json!({"ok": true}))
        );
        assert_eq!(
            handlers
                .run(job("sleep", json!({"ms": 1}), 1000), None)
                .await,
            Outcome::Completed(json!({"slept_ms": 1}))
        );
        let outcome = handlers
            .run(job("fail", json!({"times": 1}), 1000), None)
            .await;
        assert!(matches!(
            outcome,
            Outcome::Failed(JobFailure {
                retryable: true,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn an_unknown_type_is_a_permanent_failure_naming_the_known_ones() {
        let handlers = Handlers::new().with("noop", Noop).with("sleep", Sleep);
        assert_eq!(
            handlers.run(job("nope", Value::Null, 1000), None).await,
            Outcome::Failed(JobFailure::permanent(
                r#"no handler for job type "nope"; this worker handles noop, sleep"#
            ))
        );
    }

    #[tokio::test]
    async fn boxed_and_shared_handlers_register_too() {
        let boxed: Box<dyn JobHandler> = Box::new(Noop);
        let shared: Arc<dyn JobHandler> = Arc::new(Sleep);
        let mut handlers = Handlers::new();
        handlers
            .register("boxed", boxed)
            .register("shared", shared.clone());
        assert!(handlers.contains("boxed") && handlers.contains("shared"));
        assert_eq!(
            handlers
                .run(job("shared", json!({"ms": 0}), 1000), None)
                .await,
            Outcome::Completed(json!({"slept_ms": 0}))
        );
    }

    #[tokio::test]
    async fn a_timeout_is_a_retryable_failure_and_cancels_the_handlers_token() {
        let handlers = Handlers::builtin();
        let started = Instant::now();
        assert_eq!(
            handlers
                .run(job("sleep", json!({"ms": 60_000}), 50), None)
                .await,
            Outcome::Failed(JobFailure::retryable("timed out after 0.05 s"))
        );
        assert!(started.elapsed() < Duration::from_secs(1));

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let handlers = Handlers::new().with("watch", Watches(tx));
        let job = job("watch", Value::Null, 100);
        let callers = job.cancel.clone();
        let outcome = handlers.run(job, None).await;
        assert_eq!(
            outcome,
            Outcome::Failed(JobFailure::retryable("timed out after 0.1 s"))
        );
        assert!(
            rx.recv().await.unwrap().is_cancelled(),
            "the handler's token"
        );
        assert!(
            !callers.is_cancelled(),
            "a timeout does not cancel the caller's token"
        );
    }

    #[tokio::test]
    async fn a_panic_is_a_permanent_failure_with_its_message() {
        let handlers = Handlers::new().with("panics", Panics);
        assert_eq!(
            handlers.run(job("panics", json!(7), 1000), None).await,
            Outcome::Failed(JobFailure::permanent("handler panicked: payload was 7"))
        );
    }

    #[tokio::test]
    async fn cancellation_is_its_own_outcome_and_prompt_for_cooperative_handlers() {
        let handlers = Handlers::builtin();
        let job = job("sleep", json!({"ms": 60_000}), 60_000);
        let cancel = job.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        assert_eq!(handlers.run(job, None).await, Outcome::Cancelled);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );

        let job = job_cancelled("sleep", json!({"ms": 60_000}));
        assert_eq!(
            handlers.run(job, None).await,
            Outcome::Cancelled,
            "cancelled before start"
        );
    }

    fn job_cancelled(job_type: &str, payload: Value) -> JobContext {
        let job = job(job_type, payload, 60_000);
        job.cancel.cancel();
        job
    }

    #[tokio::test]
    async fn a_result_returned_within_the_grace_counts_and_a_stubborn_handler_is_dropped() {
        let handlers = Handlers::new()
            .with("finisher", Finisher)
            .with("stubborn", Stubborn)
            .with_cancel_grace(Duration::from_millis(50));
        assert_eq!(
            handlers
                .run(job_cancelled("finisher", Value::Null), None)
                .await,
            Outcome::Completed(json!("finished anyway"))
        );
        let started = Instant::now();
        assert_eq!(
            handlers
                .run(job_cancelled("stubborn", Value::Null), None)
                .await,
            Outcome::Cancelled
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(50) && elapsed < Duration::from_secs(1),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn metrics_are_recorded_by_type_and_outcome() {
        let registry = prometheus::Registry::new();
        let metrics = WorkerMetrics::register(&registry).unwrap();
        let handlers = Handlers::builtin();
        let m = Some(&metrics);
        handlers.run(job("noop", Value::Null, 1000), m).await;
        handlers
            .run(job("fail", json!({"times": 1}), 1000), m)
            .await;
        handlers
            .run(
                job("fail", json!({"times": 1, "retryable": false}), 1000),
                m,
            )
            .await;
        handlers
            .run(job("user-chosen-type", Value::Null, 1000), m)
            .await;
        handlers
            .run(job_cancelled("sleep", json!({"ms": 60_000})), m)
            .await;

        // A run whose future is dropped midway leaves the in-flight gauge.
        let dropped = handlers.run(job("sleep", json!({"ms": 60_000}), 60_000), m);
        assert!(tokio::time::timeout(Duration::from_millis(10), dropped)
            .await
            .is_err());

        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for line in [
            r#"ordo_worker_jobs_started_total{type="noop"} 1"#,
            r#"ordo_worker_jobs_started_total{type="fail"} 2"#,
            r#"ordo_worker_jobs_started_total{type="sleep"} 2"#,
            r#"ordo_worker_jobs_started_total{type="unknown"} 1"#,
            r#"ordo_worker_jobs_completed_total{type="noop"} 1"#,
            r#"ordo_worker_jobs_failed_total{retryable="true",type="fail"} 1"#,
            r#"ordo_worker_jobs_failed_total{retryable="false",type="fail"} 1"#,
            r#"ordo_worker_jobs_failed_total{retryable="false",type="unknown"} 1"#,
            r#"ordo_worker_job_duration_seconds_count{outcome="completed",type="noop"} 1"#,
            r#"ordo_worker_job_duration_seconds_count{outcome="failed",type="fail"} 2"#,
            r#"ordo_worker_job_duration_seconds_count{outcome="cancelled",type="sleep"} 1"#,
            "ordo_worker_jobs_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("user-chosen-type"));
    }
}

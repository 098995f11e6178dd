//! Runs one attempt to its [`AttemptOutcome`], and records its metrics and log lines:
//!
//! - past `job.timeout` the handler is dropped and the attempt fails, retryably;
//! - once `job.cancel` fires the handler has the cancel grace (default
//!   [`DEFAULT_CANCEL_GRACE`]) to return by itself (a result it still returns counts; an error
//!   does not), then the outcome is [`AttemptOutcome::Cancelled`];
//! - a panic in the handler is a permanent failure carrying the panic message.
//!
//! The handler sees a child of `job.cancel` that is also cancelled on timeout, so work it
//! spawned can stop with it. Finding the handler is the registry's job.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::Instrument;

use crate::handler::{JobContext, JobFailure, JobHandler};
use crate::metrics::WorkerMetrics;
use crate::outcome::AttemptOutcome;

/// How long a handler may take to stop by itself once its job is cancelled, before the
/// runner drops it.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Runs one attempt of `job` with `handler`, the handler of its type, or the permanent
/// failure to report when its type has none.
pub(crate) async fn run_attempt(
    handler: Result<Arc<dyn JobHandler>, JobFailure>,
    job: JobContext,
    cancel_grace: Duration,
    metrics: Option<&WorkerMetrics>,
) -> AttemptOutcome {
    // Handler types bound the `type` label; anything else is recorded as `unknown`.
    let type_label = if handler.is_ok() {
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
        Ok(handler) => {
            supervise(handler, job, cancel_grace)
                .instrument(span.clone())
                .await
        }
        Err(failure) => AttemptOutcome::Failed(failure),
    };
    let elapsed = started.elapsed();
    if let Some(m) = metrics {
        m.finished(&type_label, &outcome, elapsed);
    }
    span.in_scope(|| match &outcome {
        AttemptOutcome::Completed(_) => {
            tracing::debug!(elapsed_ms = elapsed.as_millis() as u64, "job completed")
        }
        AttemptOutcome::Failed(f) => tracing::info!(
            elapsed_ms = elapsed.as_millis() as u64,
            retryable = f.retryable,
            error = %f.error,
            "job failed"
        ),
        AttemptOutcome::Cancelled => {
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job cancelled")
        }
    });
    outcome
}

async fn supervise(
    handler: Arc<dyn JobHandler>,
    mut job: JobContext,
    cancel_grace: Duration,
) -> AttemptOutcome {
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
            return AttemptOutcome::Failed(JobFailure::retryable(format!(
                "timed out after {} s",
                timeout.as_secs_f64()
            )));
        }
        () = outer.cancelled() => {
            return match tokio::time::timeout(cancel_grace, &mut run).await {
                Ok(Ok(Ok(value))) => AttemptOutcome::Completed(value),
                Ok(Ok(Err(_))) => AttemptOutcome::Cancelled,
                Ok(Err(panic)) => {
                    tracing::warn!(panic = panic_message(&*panic), "handler panicked while cancelled");
                    AttemptOutcome::Cancelled
                }
                Err(_) => {
                    tracing::warn!(
                        grace_ms = cancel_grace.as_millis() as u64,
                        "handler ignored cancellation; dropped"
                    );
                    AttemptOutcome::Cancelled
                }
            };
        }
    };
    match result {
        Ok(Ok(value)) => AttemptOutcome::Completed(value),
        // It stopped because it was told to.
        Ok(Err(_)) if outer.is_cancelled() => AttemptOutcome::Cancelled,
        Ok(Err(failure)) => AttemptOutcome::Failed(failure),
        Err(panic) => AttemptOutcome::Failed(JobFailure::permanent(format!(
            "handler panicked: {}",
            panic_message(&*panic)
        ))),
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
    use serde_json::{json, Value};
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::*;
    use crate::builtin::Sleep;

    fn job(payload: Value, timeout_ms: u64) -> JobContext {
        JobContext::new(
            Uuid::now_v7(),
            "test",
            payload,
            Duration::from_millis(timeout_ms),
        )
    }

    fn job_cancelled(payload: Value) -> JobContext {
        let job = job(payload, 60_000);
        job.cancel.cancel();
        job
    }

    async fn run(
        handler: impl JobHandler,
        job: JobContext,
        cancel_grace: Duration,
    ) -> AttemptOutcome {
        run_attempt(Ok(Arc::new(handler)), job, cancel_grace, None).await
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
    async fn a_timeout_is_a_retryable_failure_and_cancels_the_handlers_token() {
        let started = Instant::now();
        assert_eq!(
            run(Sleep, job(json!({"ms": 60_000}), 50), DEFAULT_CANCEL_GRACE).await,
            AttemptOutcome::Failed(JobFailure::retryable("timed out after 0.05 s"))
        );
        assert!(started.elapsed() < Duration::from_secs(1));

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let job = job(Value::Null, 100);
        let callers = job.cancel.clone();
        let outcome = run(Watches(tx), job, DEFAULT_CANCEL_GRACE).await;
        assert_eq!(
            outcome,
            AttemptOutcome::Failed(JobFailure::retryable("timed out after 0.1 s"))
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
        assert_eq!(
            run(Panics, job(json!(7), 1000), DEFAULT_CANCEL_GRACE).await,
            AttemptOutcome::Failed(JobFailure::permanent("handler panicked: payload was 7"))
        );
    }

    #[tokio::test]
    async fn cancellation_is_its_own_outcome_and_prompt_for_cooperative_handlers() {
        let job = job(json!({"ms": 60_000}), 60_000);
        let cancel = job.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        assert_eq!(
            run(Sleep, job, DEFAULT_CANCEL_GRACE).await,
            AttemptOutcome::Cancelled
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );

        let job = job_cancelled(json!({"ms": 60_000}));
        assert_eq!(
            run(Sleep, job, DEFAULT_CANCEL_GRACE).await,
            AttemptOutcome::Cancelled,
            "cancelled before start"
        );
    }

    #[tokio::test]
    async fn a_result_returned_within_the_grace_counts_and_a_stubborn_handler_is_dropped() {
        let grace = Duration::from_millis(50);
        assert_eq!(
            run(Finisher, job_cancelled(Value::Null), grace).await,
            AttemptOutcome::Completed(json!("finished anyway"))
        );
        let started = Instant::now();
        assert_eq!(
            run(Stubborn, job_cancelled(Value::Null), grace).await,
            AttemptOutcome::Cancelled
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(50) && elapsed < Duration::from_secs(1),
            "{elapsed:?}"
        );
    }
}

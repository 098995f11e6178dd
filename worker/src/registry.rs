//! Handlers by job type: [`Handlers`] maps each type to its [`JobHandler`], starting from the
//! built-ins or from nothing, and [`Handlers::run`] hands an attempt to the handler of its
//! type, which the [`crate::supervisor`] then runs to its outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::builtin::{Fail, Http, Noop, Sleep};
use crate::handler::{JobContext, JobFailure, JobHandler};
use crate::metrics::WorkerMetrics;
use crate::outcome::AttemptOutcome;
use crate::supervisor::{self, DEFAULT_CANCEL_GRACE};

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

    /// Runs one attempt of `job` with the handler of its type, as [`crate::supervisor`] says
    /// (timeout, cancellation, panics, metrics). An unknown type is a permanent failure (no
    /// other worker of this build would do better, and retrying would only use up attempts).
    pub async fn run(&self, job: JobContext, metrics: Option<&WorkerMetrics>) -> AttemptOutcome {
        let handler = self.get(&job.job_type).ok_or_else(|| {
            JobFailure::permanent(format!(
                "no handler for job type {:?}; this worker handles {}",
                job.job_type,
                self.types().join(", ")
            ))
        });
        supervisor::run_attempt(handler, job, self.cancel_grace, metrics).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
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

    fn job_cancelled(job_type: &str, payload: Value) -> JobContext {
        let job = job(job_type, payload, 60_000);
        job.cancel.cancel();
        job
    }

    #[tokio::test]
    async fn builtins_are_registered_and_run() {
        let handlers = Handlers::builtin();
        assert_eq!(handlers.types(), ["fail", "http", "noop", "sleep"]);
        assert_eq!(
            handlers.run(job("noop", Value::Null, 1000), None).await,
            AttemptOutcome::Completed(json!({"ok": true}))
        );
        assert_eq!(
            handlers
                .run(job("sleep", json!({"ms": 1}), 1000), None)
                .await,
            AttemptOutcome::Completed(json!({"slept_ms": 1}))
        );
        let outcome = handlers
            .run(job("fail", json!({"times": 1}), 1000), None)
            .await;
        assert!(matches!(
            outcome,
            AttemptOutcome::Failed(JobFailure {
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
            AttemptOutcome::Failed(JobFailure::permanent(
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
            AttemptOutcome::Completed(json!({"slept_ms": 0}))
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

//! The contract between the worker runtime and the code that does a job's work.
//!
//! A handler gets a [`JobContext`] and returns the job's result or a [`JobFailure`]. The
//! trait is object-safe (via `async-trait`) so handlers of different types live in one
//! registry as `Arc<dyn JobHandler>`; `Arc<H>` and `Box<H>` of a handler are handlers too, so
//! `register` takes a plain handler, an `Arc<dyn JobHandler>` or a `Box<dyn JobHandler>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::log::JobLog;

/// Does the work of jobs of one type.
///
/// Handlers should stop cooperatively when `job.cancel` is cancelled (the job was cancelled,
/// it timed out, or the worker shuts down): select on `job.cancel.cancelled()` around
/// anything that waits. A handler that does not is dropped after a grace period.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure>;
}

#[async_trait]
impl<H: JobHandler + ?Sized> JobHandler for Arc<H> {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
        (**self).run(job).await
    }
}

#[async_trait]
impl<H: JobHandler + ?Sized> JobHandler for Box<H> {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
        (**self).run(job).await
    }
}

/// Everything a handler knows about the attempt it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobContext {
    pub job_id: Uuid,
    /// The job's `type`: what selected the handler.
    pub job_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The job's retry budget, when the claim says.
    pub max_attempts: Option<u32>,
    pub payload: Value,
    /// How long the attempt may take; the runner enforces it, handlers that make calls of
    /// their own (e.g. `http`) apply it to them too.
    pub timeout: Duration,
    /// Cancelled when the job is cancelled, times out, or the worker shuts down.
    pub cancel: CancellationToken,
    /// The job's own log lines (searchable with the job), as opposed to the worker's `tracing`.
    pub log: JobLog,
}

impl JobContext {
    /// The first attempt of a job, with no known retry budget and a token of its own.
    pub fn new(
        job_id: Uuid,
        job_type: impl Into<String>,
        payload: Value,
        timeout: Duration,
    ) -> Self {
        Self {
            job_id,
            job_type: job_type.into(),
            attempt: 1,
            max_attempts: None,
            payload,
            timeout,
            cancel: CancellationToken::new(),
            log: JobLog::discard(),
        }
    }

    pub fn with_attempt(mut self, attempt: u32, max_attempts: Option<u32>) -> Self {
        self.attempt = attempt;
        self.max_attempts = max_attempts;
        self
    }

    pub fn with_log(mut self, log: JobLog) -> Self {
        self.log = log;
        self
    }

    /// Uses `cancel` (typically a child of the worker's shutdown token) as the job's token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// Why an attempt failed, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub error: String,
    /// `false`: the job goes to the dead letters without using up its remaining attempts.
    pub retryable: bool,
}

impl JobFailure {
    /// A failure another attempt may not have (network errors, 5xx, timeouts).
    pub fn retryable(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            retryable: true,
        }
    }

    /// A failure every attempt would have (bad payload, 4xx).
    pub fn permanent(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            retryable: false,
        }
    }

    /// What a handler returns when it stopped because `job.cancel` fired; the runner reports
    /// such an attempt as cancelled, not failed.
    pub fn cancelled() -> Self {
        Self::retryable("cancelled")
    }
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable {
            "retryable"
        } else {
            "permanent"
        };
        write!(f, "{} ({kind})", self.error)
    }
}

impl std::error::Error for JobFailure {}

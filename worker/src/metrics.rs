//! Prometheus instruments of a worker, recorded for each attempt as it runs and ends.
//!
//! Job types are chosen by users, so they are not used as label values as given: the
//! `type` label is a registered handler's type (the registry bounds the set) or `unknown`.

use std::time::Duration;

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::outcome::AttemptOutcome;

#[derive(Clone)]
pub struct WorkerMetrics {
    started: IntCounterVec,
    completed: IntCounterVec,
    failed: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl WorkerMetrics {
    /// The `type` label of jobs of a type no handler is registered for.
    pub const UNKNOWN_TYPE: &'static str = "unknown";

    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let started = IntCounterVec::new(
            Opts::new(
                "ordo_worker_jobs_started_total",
                "Attempts a worker started, by job type.",
            ),
            &["type"],
        )?;
        let completed = IntCounterVec::new(
            Opts::new(
                "ordo_worker_jobs_completed_total",
                "Attempts a worker completed successfully, by job type.",
            ),
            &["type"],
        )?;
        let failed = IntCounterVec::new(
            Opts::new(
                "ordo_worker_jobs_failed_total",
                "Attempts that failed (including timeouts and panics), by job type and whether \
                 the failure is retryable.",
            ),
            &["type", "retryable"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ordo_worker_job_duration_seconds",
                "Run time of an attempt, by job type and outcome (completed, failed, cancelled).",
            )
            // 5 ms .. ~44 min.
            .buckets(exponential_buckets(0.005, 2.0, 20)?),
            &["type", "outcome"],
        )?;
        let in_flight = IntGauge::new(
            "ordo_worker_jobs_in_flight",
            "Attempts a worker is running now.",
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(completed.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            started,
            completed,
            failed,
            duration,
            in_flight,
        })
    }

    /// Counts a started attempt; it is in flight until the returned guard is dropped (so an
    /// attempt whose future is dropped midway leaves the gauge too).
    pub(crate) fn started(&self, job_type: &str) -> InFlight {
        self.started.with_label_values(&[job_type]).inc();
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub(crate) fn finished(&self, job_type: &str, outcome: &AttemptOutcome, elapsed: Duration) {
        match outcome {
            AttemptOutcome::Completed(_) => self.completed.with_label_values(&[job_type]).inc(),
            AttemptOutcome::Failed(f) => self
                .failed
                .with_label_values(&[job_type, if f.retryable { "true" } else { "false" }])
                .inc(),
            AttemptOutcome::Cancelled => {}
        }
        self.duration
            .with_label_values(&[job_type, outcome.label()])
            .observe(elapsed.as_secs_f64());
    }
}

pub(crate) struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

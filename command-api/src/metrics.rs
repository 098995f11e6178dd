//! Prometheus instruments of the command API (the HTTP ones are shared, see
//! [`ordo_common::http::HttpMetrics`]). Names follow `ordo_<noun>_<verb>_total` and
//! `ordo_<name>_seconds`; every label has a bounded set of values (routes are the matched
//! route templates, commands and outcomes are fixed enums).

use crate::bus::CommandError;
use ordo_common::http::{render_metrics, HttpMetrics};
use prometheus::{IntCounterVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
    commands: IntCounterVec,
    logs_ingested: IntCounterVec,
    job_cache: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        Self::in_registry(Registry::new())
    }

    /// Registers the instruments in `registry`, which `/metrics` then renders whole: a process
    /// running several roles exposes all of their metrics on its one endpoint.
    pub fn in_registry(registry: Registry) -> Self {
        let http = HttpMetrics::register(&registry).expect("metric names are unique");
        let commands = IntCounterVec::new(
            Opts::new(
                "ordo_commands_handled_total",
                "Job commands by command and outcome (ok, rejected, not_found, conflict, error)",
            ),
            &["command", "outcome"],
        )
        .expect("valid metric");
        let logs_ingested = IntCounterVec::new(
            Opts::new(
                "ordo_logs_ingested_total",
                "Log lines acknowledged by Kafka, by source (job)",
            ),
            &["source"],
        )
        .expect("valid metric");
        let job_cache = IntCounterVec::new(
            Opts::new(
                "ordo_job_cache_lookups_total",
                "Job states looked up in the command side's cache before a command, by outcome \
                 (hit; miss: loaded from the event store; stale: refused or conflicting, reloaded)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for metric in [&commands, &logs_ingested, &job_cache] {
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
        }
        Self {
            registry,
            http,
            commands,
            logs_ingested,
            job_cache,
        }
    }

    /// The HTTP request instruments, for [`ordo_common::http::finish`]: a process that serves
    /// other routes beside these (`ordo dev`) passes this one set to cover them all.
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    pub fn record_command<T>(&self, command: &str, result: &Result<T, CommandError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.commands.with_label_values(&[command, outcome]).inc();
    }

    pub fn record_logs_ingested(&self, source: &str, lines: usize) {
        self.logs_ingested
            .with_label_values(&[source])
            .inc_by(lines as u64);
    }

    pub fn record_job_cache(&self, outcome: &str) {
        self.job_cache.with_label_values(&[outcome]).inc();
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        render_metrics(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

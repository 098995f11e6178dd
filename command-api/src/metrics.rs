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
        registry
            .register(Box::new(commands.clone()))
            .expect("metric names are unique");
        Self {
            registry,
            http,
            commands,
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

//! Prometheus instruments of the command API. Names follow `ordo_<noun>_<verb>_total` and
//! `ordo_<name>_seconds`; every label has a bounded set of values (routes are the matched
//! route templates, commands and outcomes are fixed enums).

use crate::bus::{CommandError, CommandOutcome};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    commands: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        Self::in_registry(Registry::new())
    }

    /// Registers the instruments in `registry`, which `/metrics` then renders whole: a process
    /// running several roles exposes all of their metrics on its one endpoint.
    pub fn in_registry(registry: Registry) -> Self {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ordo_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ordo_http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        let commands = IntCounterVec::new(
            Opts::new(
                "ordo_commands_handled_total",
                "Job commands by command and outcome (ok, rejected, not_found, conflict, error)",
            ),
            &["command", "outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(commands.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            commands,
        }
    }

    pub fn record_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    pub fn record_command(&self, command: &str, result: &Result<CommandOutcome, CommandError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.commands.with_label_values(&[command, outcome]).inc();
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

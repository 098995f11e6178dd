//! Prometheus instruments of the command bus, registered by whoever runs a bus: the API
//! process, the reaper, a benchmark. The HTTP ones are shared ([`ordo_common::http::HttpMetrics`])
//! and the log ones are shared with the log-aggregator role ([`ordo_common::logs::LogMetrics`]). Names follow
//! `ordo_<noun>_<verb>_total`; every label has a bounded set of values (commands and outcomes
//! are fixed enums).

use prometheus::{IntCounterVec, Opts, Registry};

/// `ordo_commands_handled_total{command,outcome}`, `ordo_job_cache_lookups_total{outcome}` and
/// `ordo_write_through_events_total{outcome}`. Cheap to clone: clones count into the same
/// series.
#[derive(Clone)]
pub struct CommandMetrics {
    commands: IntCounterVec,
    job_cache: IntCounterVec,
    /// Committed events written through to the read model, by outcome (see
    /// [`crate::write_through`]).
    pub write_through: IntCounterVec,
}

impl CommandMetrics {
    /// Registers the instruments in `registry`; once per registry (a second registration of
    /// the same names is an error).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let commands = IntCounterVec::new(
            Opts::new(
                "ordo_commands_handled_total",
                "Job commands by command and outcome (ok, rejected, not_found, conflict, error)",
            ),
            &["command", "outcome"],
        )?;
        let job_cache = IntCounterVec::new(
            Opts::new(
                "ordo_job_cache_lookups_total",
                "Job states looked up in the command side's cache before a command, by outcome \
                 (hit; miss: loaded from the event store; stale: refused or conflicting, reloaded)",
            ),
            &["outcome"],
        )?;
        let write_through = IntCounterVec::new(
            Opts::new(
                "ordo_write_through_events_total",
                "Committed events the command side wrote to the read model itself, by outcome \
                 (applied; duplicate: the projector was first; gap, failed and skipped: left to the projector)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(job_cache.clone()))?;
        registry.register(Box::new(write_through.clone()))?;
        Ok(Self {
            commands,
            job_cache,
            write_through,
        })
    }

    /// Instruments no endpoint exposes, for tests and benchmarks that only need a bus.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a new registry holds no metric yet")
    }

    pub fn record_command(&self, command: &str, outcome: &str) {
        self.commands.with_label_values(&[command, outcome]).inc();
    }

    pub fn record_job_cache(&self, outcome: &str) {
        self.job_cache.with_label_values(&[outcome]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_common::http::render_metrics;

    #[test]
    fn counts_land_in_the_registry_they_were_registered_in() {
        let registry = Registry::new();
        let metrics = CommandMetrics::register(&registry).unwrap();
        metrics.clone().record_command("submit", "ok");
        metrics.record_command("submit", "ok");
        metrics.record_job_cache("miss");
        let text = render_metrics(&registry);
        assert!(
            text.contains(r#"ordo_commands_handled_total{command="submit",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ordo_job_cache_lookups_total{outcome="miss"} 1"#),
            "{text}"
        );
        assert!(
            CommandMetrics::register(&registry).is_err(),
            "once per registry"
        );
    }

    #[test]
    fn unregistered_metrics_count_without_an_endpoint() {
        let metrics = CommandMetrics::unregistered();
        metrics.record_command("cancel", "rejected");
        assert_eq!(
            metrics
                .commands
                .with_label_values(&["cancel", "rejected"])
                .get(),
            1
        );
    }
}

//! Prometheus instruments of the relay, registered into the registry of the process that runs
//! it (its own in `ordo serve relay`, the shared one in `ordo dev`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct RelayMetrics {
    pub records_relayed: IntCounter,
    /// Commit in PostgreSQL → acknowledged by Kafka, per transaction.
    pub lag_seconds: Histogram,
    pub retained_wal_bytes: IntGauge,
    pub rows_deleted: IntCounter,
    errors: IntCounterVec,
}

/// What failed, as the `kind` label of `ordo_outbox_relay_errors_total`.
#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    Postgres,
    Kafka,
    /// A row the relay could not decode or map; the session restarts and retries it.
    Decode,
    Cleanup,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Kafka => "kafka",
            Self::Decode => "decode",
            Self::Cleanup => "cleanup",
        }
    }
}

impl RelayMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            records_relayed: IntCounter::new(
                "ordo_outbox_records_relayed_total",
                "Outbox records acknowledged by Kafka",
            )?,
            lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ordo_outbox_relay_lag_seconds",
                    "Time from a transaction's commit in PostgreSQL to Kafka acknowledging all its records",
                )
                // Fine below 100 ms, where the relay's target lies.
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )?,
            retained_wal_bytes: IntGauge::new(
                "ordo_outbox_slot_retained_wal_bytes",
                "WAL bytes the relay's replication slot keeps from being recycled",
            )?,
            rows_deleted: IntCounter::new(
                "ordo_outbox_rows_deleted_total",
                "Published outbox rows deleted after Kafka acknowledged them",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "ordo_outbox_relay_errors_total",
                    "Relay errors by kind (postgres, kafka, decode, cleanup)",
                ),
                &["kind"],
            )?,
        };
        registry.register(Box::new(metrics.records_relayed.clone()))?;
        registry.register(Box::new(metrics.lag_seconds.clone()))?;
        registry.register(Box::new(metrics.retained_wal_bytes.clone()))?;
        registry.register(Box::new(metrics.rows_deleted.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        Ok(metrics)
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.label()]).inc();
    }
}

//! Prometheus instruments of the projectors, labelled by projector name (a small, fixed set).

use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// What happened to one consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Applied,
    /// Already in the read model (a redelivery or a duplicate).
    Duplicate,
    /// An earlier event of the job is missing; the record waits.
    Gap,
    /// Met a gap that the sink repaired (it rebuilt the job from the event store); the
    /// partition went on.
    Repaired,
    /// Unparseable or unknown; sent to the parking topic.
    Parked,
    /// Met a gap while the whole read model is rebuilt from the event store, which covers
    /// it; the partition went on.
    Superseded,
}

impl RecordOutcome {
    /// In declaration order: `record` indexes the counters by discriminant.
    const ALL: [Self; 6] = [
        Self::Applied,
        Self::Duplicate,
        Self::Gap,
        Self::Repaired,
        Self::Parked,
        Self::Superseded,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Gap => "gap",
            Self::Repaired => "repaired",
            Self::Parked => "parked",
            Self::Superseded => "superseded",
        }
    }
}

/// The metric families of the projectors, registered once per registry; each projector of
/// the process takes its own labelled instruments ([`ProjectorMetricFamilies::projector`]).
#[derive(Clone)]
pub struct ProjectorMetricFamilies {
    records: IntCounterVec,
    lag: HistogramVec,
    consumer_lag: IntGaugeVec,
    errors: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    assigned_partitions: IntGaugeVec,
    stalled: IntGaugeVec,
    recreations: IntCounterVec,
    lost_records: IntCounterVec,
    write_duration: HistogramVec,
    batch_rows: HistogramVec,
    rows_written: IntCounterVec,
}

impl ProjectorMetricFamilies {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let records = IntCounterVec::new(
            Opts::new(
                "ordo_projector_records_total",
                "Kafka records handled by a projector, by outcome.",
            ),
            &["projector", "outcome"],
        )?;
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "ordo_projection_lag_seconds",
                "Seconds from a record's time (an event's occurred_at, a log record's \
                 received_at) to its write into the read model.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16)?),
            &["projector"],
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "ordo_kafka_consumer_lag_records",
                "Records between a partition's end and the projector's committed offset.",
            ),
            &["projector", "partition"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ordo_projector_errors_total",
                "Failed calls of a projector, by the system that failed and how.",
            ),
            &["projector", "kind"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "ordo_projector_breaker_state",
                "State of the circuit breaker around a projector's sink: 0 closed, 1 half-open, 2 open.",
            ),
            &["projector"],
        )?;
        let breaker_transitions = IntCounterVec::new(
            Opts::new(
                "ordo_projector_breaker_transitions_total",
                "Changes of the circuit breaker around a projector's sink, by the state entered.",
            ),
            &["projector", "state"],
        )?;
        let assigned_partitions = IntGaugeVec::new(
            Opts::new(
                "ordo_projector_assigned_partitions",
                "Partitions assigned to this projector's consumer (0 for long: its group may be stuck).",
            ),
            &["projector"],
        )?;
        let stalled = IntGaugeVec::new(
            Opts::new(
                "ordo_projector_stalled",
                "1 while the projector's group has records to read but its offsets do not move \
                 (its readiness fails meanwhile).",
            ),
            &["projector"],
        )?;
        let recreations = IntCounterVec::new(
            Opts::new(
                "ordo_projector_consumer_recreations_total",
                "Consumers recreated (a new group member) because the projector stalled.",
            ),
            &["projector"],
        )?;
        let lost_records = IntCounterVec::new(
            Opts::new(
                "ordo_projector_lost_records_total",
                "Times the broker's log went back below what a projector had read (records lost: \
                 an in-memory broker restarted, a topic recreated); each one rebuilds the read model.",
            ),
            &["projector"],
        )?;
        let write_duration = HistogramVec::new(
            HistogramOpts::new(
                "ordo_projector_write_duration_seconds",
                "Seconds a successful write of a batch into a projector's sink took (a Redis \
                 pipeline, a ClickHouse insert with its bookkeeping).",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16)?),
            &["projector"],
        )?;
        let batch_rows = HistogramVec::new(
            HistogramOpts::new(
                "ordo_projector_batch_rows",
                "Rows per batch a projector wrote (events, or log lines for clickhouse-logs).",
            )
            .buckets(exponential_buckets(1.0, 4.0, 10)?),
            &["projector"],
        )?;
        let rows_written = IntCounterVec::new(
            Opts::new(
                "ordo_projector_rows_written_total",
                "Rows a projector wrote into its sink (duplicates it skipped not counted).",
            ),
            &["projector"],
        )?;
        for collector in [
            Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(lag.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(errors.clone()),
            Box::new(breaker_state.clone()),
            Box::new(breaker_transitions.clone()),
            Box::new(assigned_partitions.clone()),
            Box::new(stalled.clone()),
            Box::new(recreations.clone()),
            Box::new(lost_records.clone()),
            Box::new(write_duration.clone()),
            Box::new(batch_rows.clone()),
            Box::new(rows_written.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            records,
            lag,
            consumer_lag,
            errors,
            breaker_state,
            breaker_transitions,
            assigned_partitions,
            stalled,
            recreations,
            lost_records,
            write_duration,
            batch_rows,
            rows_written,
        })
    }

    /// The instruments of projector `projector`.
    pub fn projector(&self, projector: &str) -> ProjectorMetrics {
        ProjectorMetrics {
            records: RecordOutcome::ALL
                .map(|o| self.records.with_label_values(&[projector, o.label()])),
            lag: self.lag.with_label_values(&[projector]),
            consumer_lag: self.consumer_lag.clone(),
            errors: self.errors.clone(),
            breaker_state: self.breaker_state.with_label_values(&[projector]),
            breaker_transitions: self.breaker_transitions.clone(),
            assigned_partitions: self.assigned_partitions.with_label_values(&[projector]),
            stalled: self.stalled.with_label_values(&[projector]),
            recreations: self.recreations.with_label_values(&[projector]),
            lost_records: self.lost_records.with_label_values(&[projector]),
            write_duration: self.write_duration.with_label_values(&[projector]),
            batch_rows: self.batch_rows.with_label_values(&[projector]),
            rows_written: self.rows_written.with_label_values(&[projector]),
            projector: projector.to_owned(),
        }
    }
}

/// The instruments of one projector.
#[derive(Clone)]
pub struct ProjectorMetrics {
    records: [IntCounter; 6],
    /// `ordo_projection_lag_seconds`: from the record's time to its write.
    pub lag: Histogram,
    consumer_lag: IntGaugeVec,
    errors: IntCounterVec,
    breaker_state: IntGauge,
    breaker_transitions: IntCounterVec,
    assigned_partitions: IntGauge,
    stalled: IntGauge,
    recreations: IntCounter,
    lost_records: IntCounter,
    write_duration: Histogram,
    batch_rows: Histogram,
    rows_written: IntCounter,
    projector: String,
}

impl ProjectorMetrics {
    /// The families and this projector's instruments, for a registry with one projector.
    pub fn register(registry: &Registry, projector: &str) -> prometheus::Result<Self> {
        Ok(ProjectorMetricFamilies::register(registry)?.projector(projector))
    }

    /// A batch of `rows` rows was written in `seconds`.
    pub fn written(&self, seconds: f64, rows: usize) {
        self.write_duration.observe(seconds);
        self.batch_rows.observe(rows as f64);
    }

    /// `rows` rows of a written batch were new to the read model.
    pub fn rows_written(&self, rows: u64) {
        self.rows_written.inc_by(rows);
    }

    pub fn record(&self, outcome: RecordOutcome, count: u64) {
        self.records[outcome as usize].inc_by(count);
    }

    /// Records counted with `outcome` so far (benchmarks and tests wait on it).
    pub fn count(&self, outcome: RecordOutcome) -> u64 {
        self.records[outcome as usize].get()
    }

    /// `kind` is `kafka`, `parking`, or the sink's kind of failure (`redis`,
    /// `clickhouse_timeout`, …).
    pub fn error(&self, kind: &str) {
        self.errors
            .with_label_values(&[&self.projector, kind])
            .inc();
    }

    pub fn set_consumer_lag(&self, partition: i32, records: i64) {
        self.consumer_lag
            .with_label_values(&[&self.projector, &partition.to_string()])
            .set(records);
    }

    pub fn set_assigned_partitions(&self, partitions: usize) {
        self.assigned_partitions.set(partitions as i64);
    }

    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.set(i64::from(stalled));
    }

    pub fn consumer_recreated(&self) {
        self.recreations.inc();
    }

    /// Consumers recreated so far (tests wait on it).
    pub fn recreations(&self) -> u64 {
        self.recreations.get()
    }

    pub fn records_lost(&self) {
        self.lost_records.inc();
    }

    /// Times the broker was seen losing records so far (tests wait on it).
    pub fn lost_records(&self) -> u64 {
        self.lost_records.get()
    }

    /// Drops the gauge of a partition this process no longer consumes.
    pub fn forget_partition(&self, partition: i32) {
        let _ = self
            .consumer_lag
            .remove_label_values(&[&self.projector, &partition.to_string()]);
    }

    /// Records that the breaker entered `state`.
    pub fn breaker(&self, state: BreakerState) {
        self.breaker_state.set(state as i64);
        self.breaker_transitions
            .with_label_values(&[&self.projector, state.label()])
            .inc();
    }

    /// Times the breaker entered `state` so far (tests wait on it).
    pub fn breaker_count(&self, state: BreakerState) -> u64 {
        self.breaker_transitions
            .with_label_values(&[&self.projector, state.label()])
            .get()
    }
}

/// The state of the circuit breaker around a sink; the value is the state gauge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

/// The instruments of the logs sink (`clickhouse-logs`), one per process.
#[derive(Clone)]
pub struct LogSinkMetrics {
    /// `ordo_log_ingestion_delay_seconds{tenant}`: now minus the newest line stored.
    ingestion_delay: GaugeVec,
}

impl LogSinkMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ingestion_delay = GaugeVec::new(
            Opts::new(
                "ordo_log_ingestion_delay_seconds",
                "Seconds between the time of a tenant's newest stored log line (its ts) and \
                 its storage, set after each insert of the logs sink.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(ingestion_delay.clone()))?;
        Ok(Self { ingestion_delay })
    }

    pub fn ingestion_delay(&self, tenant: &str, delay: chrono::TimeDelta) {
        // A writer's clock ahead of ours makes no negative delay.
        let seconds = delay.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        self.ingestion_delay
            .with_label_values(&[tenant])
            .set(seconds);
    }
}

/// The instruments of the read model's healing (`crate::rebuild`).
#[derive(Clone)]
pub struct RebuildMetrics {
    /// `ordo_read_model_rebuilds_total{outcome}`: `rebuilt`, `marked` (a first start with an
    /// empty store), `failed`.
    pub rebuilds: IntCounterVec,
    /// `ordo_read_model_rebuild_duration_seconds`: marker found missing → rebuilt model live.
    pub duration: prometheus::Histogram,
    /// `ordo_read_model_complete`: 1 while the live namespace carries its marker.
    pub complete: IntGauge,
}

impl RebuildMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rebuilds = IntCounterVec::new(
            Opts::new(
                "ordo_read_model_rebuilds_total",
                "Rebuilds of a lost read model from the event store, by outcome (rebuilt, marked: a first start with an empty store, failed).",
            ),
            &["outcome"],
        )?;
        let duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ordo_read_model_rebuild_duration_seconds",
                "Seconds from a lost read model found to its rebuild live.",
            )
            .buckets(exponential_buckets(0.25, 2.0, 12)?),
        )?;
        let complete = IntGauge::new(
            "ordo_read_model_complete",
            "1 while the live namespace of the read model carries its completeness marker; 0 while it is lost or being rebuilt (claims answer 503).",
        )?;
        registry.register(Box::new(rebuilds.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(complete.clone()))?;
        Ok(Self {
            rebuilds,
            duration,
            complete,
        })
    }
}

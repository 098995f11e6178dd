//! Prometheus instruments of the projectors, labelled by projector name (a small, fixed set).

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
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

/// The instruments of one projector.
#[derive(Clone)]
pub struct ProjectorMetrics {
    records: [IntCounter; 6],
    /// `ordo_projection_lag_seconds`: from the event's `occurred_at` to its write.
    pub lag: prometheus::Histogram,
    consumer_lag: IntGaugeVec,
    errors: IntCounterVec,
    breaker_state: IntGauge,
    breaker_transitions: IntCounterVec,
    assigned_partitions: IntGauge,
    stalled: IntGauge,
    recreations: IntCounter,
    lost_records: IntCounter,
    projector: String,
}

impl ProjectorMetrics {
    pub fn register(registry: &Registry, projector: &str) -> prometheus::Result<Self> {
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
                "Seconds from an event's occurred_at to its write into the read model.",
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
                "Failed calls of a projector, by the system that failed.",
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
        registry.register(Box::new(lost_records.clone()))?;
        registry.register(Box::new(assigned_partitions.clone()))?;
        registry.register(Box::new(stalled.clone()))?;
        registry.register(Box::new(recreations.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(breaker_transitions.clone()))?;
        Ok(Self {
            records: RecordOutcome::ALL.map(|o| records.with_label_values(&[projector, o.label()])),
            lag: lag.with_label_values(&[projector]),
            consumer_lag,
            errors,
            breaker_state: breaker_state.with_label_values(&[projector]),
            breaker_transitions,
            assigned_partitions: assigned_partitions.with_label_values(&[projector]),
            stalled: stalled.with_label_values(&[projector]),
            recreations: recreations.with_label_values(&[projector]),
            lost_records: lost_records.with_label_values(&[projector]),
            projector: projector.to_owned(),
        })
    }

    pub fn record(&self, outcome: RecordOutcome, count: u64) {
        self.records[outcome as usize].inc_by(count);
    }

    /// Records counted with `outcome` so far (benchmarks and tests wait on it).
    pub fn count(&self, outcome: RecordOutcome) -> u64 {
        self.records[outcome as usize].get()
    }

    /// `kind` is `kafka`, `parking`, or the system behind the sink (`redis`).
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

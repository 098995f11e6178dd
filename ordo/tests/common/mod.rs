//! Shared helpers of the system tests: scratch databases, outbox rows, a Kafka reader, the
//! relay run in-process or as a real `ordo` process, the read side ([`read_model`]), and
//! the platform and its workers as processes ([`platform`]).
//! Every test uses its own database, slot, topic and key prefix, so runs never see each
//! other's records.
#![allow(dead_code)] // each test binary uses a different subset

pub mod broker;
pub mod platform;
pub mod read_model;

use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo_outbox_relay::{RelayConfig, RelayMetrics};
pub use ordo_testkit::stack::{kafka_brokers, unique};
pub use ordo_testkit::TestDb;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A command bus on `db` with the system clock and jitter.
pub fn bus(db: &TestDb) -> ordo_command_api::JobCommandBus {
    ordo_command_api::JobCommandBus::new(
        db.pool.clone(),
        ordo_domain::JobServices::system(),
        ordo_command_api::CommandMetrics::unregistered(),
    )
}

/// One outbox row as the core writes it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: Uuid,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub sequence: i64,
}

impl OutboxRow {
    pub fn new(aggregate_id: &str, sequence: i64, payload: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            aggregate_id: aggregate_id.to_owned(),
            event_type: "JobSubmitted".to_owned(),
            payload,
            sequence,
        }
    }
}

/// Inserts `rows` in one transaction.
pub async fn insert_outbox(pool: &PgPool, rows: &[OutboxRow]) {
    try_insert_outbox(pool, rows)
        .await
        .expect("insert outbox rows");
}

/// [`insert_outbox`] that returns the error instead of panicking.
pub async fn try_insert_outbox(pool: &PgPool, rows: &[OutboxRow]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.aggregate_id.as_str()).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| &r.payload).collect();
    let sequences: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
    sqlx::query(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, tenant) \
         SELECT id, 'job', key, type, payload, seq, 'default' \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[]) \
         AS r(id, key, type, payload, seq)",
    )
    .bind(&ids)
    .bind(&keys)
    .bind(&types)
    .bind(&payloads)
    .bind(&sequences)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Envelope-shaped rows for `count` events, `per_job` events per job key.
pub fn sample_rows(count: usize, per_job: usize) -> Vec<OutboxRow> {
    let mut rows = Vec::with_capacity(count);
    let mut job = Uuid::now_v7().to_string();
    for i in 0..count {
        if i % per_job == 0 {
            job = Uuid::now_v7().to_string();
        }
        let sequence = (i % per_job + 1) as i64;
        rows.push(OutboxRow::new(
            &job,
            sequence,
            serde_json::json!({"job_id": job, "sequence": sequence, "n": i}),
        ));
    }
    rows
}

/// The topic template of a test: its own prefix before Debezium's default route.
pub fn topic_template(prefix: &str) -> String {
    format!("{prefix}.outbox.event.${{routedByValue}}")
}

/// A relay running inside the test process.
pub struct InProcessRelay {
    pub metrics: RelayMetrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessRelay {
    pub async fn start(db: &TestDb, slot: &str, topic_template: &str) -> Self {
        let config = RelayConfig {
            slot: slot.to_owned(),
            topic_template: topic_template.to_owned(),
            ..RelayConfig::new(&db.url, &kafka_brokers())
        };
        let metrics = RelayMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ordo_outbox_relay::run(
            config,
            db.pool.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        wait_slot_streaming(&db.pool, slot, Duration::from_secs(60)).await;
        Self {
            metrics,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("relay task");
    }
}

/// Waits until a walsender streams from `slot` ([`ordo_outbox_relay::slot::is_streaming`]),
/// tolerating query errors (a restarting server); returns how long it took.
pub async fn wait_slot_streaming(pool: &PgPool, slot: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let streaming = ordo_outbox_relay::slot::is_streaming(pool, slot).await;
        if let Ok(true) = streaming {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "no walsender streams slot {slot} after {timeout:?} (last answer {streaming:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ordo serve relay` as a child process, killed when dropped.
pub struct RelayProcess {
    process: OrdoProcess,
}

impl RelayProcess {
    pub fn spawn(database_url: &str, brokers: &str, slot: &str, topic_template: &str) -> Self {
        let spec = ProcessSpec::new(
            env!("CARGO_BIN_EXE_ordo"),
            &["--log-format", "text", "serve", "relay"],
        )
        .envs([
            ("ORDO_DATABASE_URL", database_url),
            ("ORDO_KAFKA_BROKERS", brokers),
            ("ORDO_RELAY_SLOT", slot),
            ("ORDO_RELAY_TOPIC_TEMPLATE", topic_template),
            ("ORDO_METRICS_ADDR", "127.0.0.1:0"),
            ("ORDO_RELAY_MESSAGE_TIMEOUT_SECS", "5"),
            ("RUST_LOG", "warn,ordo_outbox_relay=info"),
        ]);
        let process = OrdoProcess::spawn(spec).expect("spawn ordo serve relay");
        Self { process }
    }

    /// The process id of the relay.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Panics if the relay process exited: a fault test expects it to recover by itself.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.exited() {
            panic!("the relay process exited ({status}) instead of recovering");
        }
    }

    /// SIGKILL: no drain, no clean-up, no final acknowledgement.
    pub fn kill_hard(mut self) {
        self.process.kill_hard();
    }
}

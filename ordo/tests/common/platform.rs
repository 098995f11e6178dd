//! The platform as real processes: `ordo dev` on a scratch database, topic and key prefix,
//! and `ordo serve worker` processes claiming from it, plus the HTTP and event-store reads
//! the tests check them with.

use super::read_model::TestPrefix;
use super::{kafka_brokers, topic_template, unique, TestDb};
use ordo::instances::free_port;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo_clickhouse_store::ClickHouseConfig;
use ordo_testkit::http::TestClient;
use ordo_testkit::TestClickHouse;
use serde_json::Value;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// How long a process may take to answer its first health check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn port() -> u16 {
    free_port().expect("a free loopback port")
}

/// `ordo dev`: both APIs on one port, relay, projector and reaper; with its own worker
/// unless the test runs worker processes (`--no-worker`).
pub struct DevProcess {
    _process: OrdoProcess,
    pub url: String,
    /// The ClickHouse database its sinks write (migrated by `ordo dev`), dropped after.
    pub clickhouse: ClickHouseConfig,
    _clickhouse: TestClickHouse,
    /// Where the job log lines of this run go.
    pub logs_topic: String,
    /// The job topic the relay writes and the projector reads.
    pub jobs_topic: String,
}

impl DevProcess {
    pub async fn start(db: &TestDb, prefix: &TestPrefix, env: &[(&str, &str)]) -> Self {
        let port = port();
        let run = unique("ordo-test-dev-");
        let template = topic_template(&run);
        let logs_topic = format!("{run}.logs");
        let jobs_topic = template.replace("${routedByValue}", "job");
        let database = TestClickHouse::new();
        let spec = ProcessSpec::new(env!("CARGO_BIN_EXE_ordo"), &["--log-format", "text", "dev"])
            .env("ORDO_LOGS_TOPIC", &logs_topic)
            .env("ORDO_DATABASE_URL", &db.url)
            .env("ORDO_KAFKA_BROKERS", kafka_brokers())
            .env("ORDO_REDIS_PREFIX", &prefix.prefix)
            .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ORDO_RELAY_SLOT", unique("ordo_test_"))
            .env("ORDO_RELAY_TOPIC_TEMPLATE", &template)
            .env("ORDO_PROJECTOR_TOPIC", &jobs_topic)
            .env("ORDO_PROJECTOR_GROUP", unique("ordo-test-dev-"))
            .env("ORDO_CLICKHOUSE_URL", &database.url)
            .env("ORDO_CLICKHOUSE_DATABASE", &database.database)
            .env("ORDO_PROJECTOR_SESSION_TIMEOUT_MS", "2000")
            .env("ORDO_METRICS_ADDR", format!("127.0.0.1:{}", self::port()))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        let mut process = OrdoProcess::spawn(spec).expect("spawn ordo dev");
        let url = format!("http://127.0.0.1:{port}");
        process
            .wait_ok(&format!("{url}/readyz"), READY_TIMEOUT)
            .await
            .expect("ordo dev ready");
        Self {
            _process: process,
            url,
            clickhouse: ClickHouseConfig {
                database: database.database.clone(),
                ..ClickHouseConfig::new(&database.url)
            },
            _clickhouse: database,
            logs_topic,
            jobs_topic,
        }
    }

    /// The value of one sample of its `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric(&format!("{}/metrics", self.url), sample).await
    }

    /// The HTTP API of the process, for the default tenant.
    pub fn api(&self) -> TestClient {
        TestClient::new(&self.url)
    }
}

/// A role of the platform as its own process: `ordo serve worker` (the built-in handlers),
/// `ordo serve reaper` or `ordo serve projector`.
pub struct RoleProcess {
    process: OrdoProcess,
    pub id: String,
    pub metrics_url: String,
}

impl RoleProcess {
    /// Claims from `queues` (comma-separated) of `dev`; `env` adds or overrides settings.
    pub async fn start(dev: &DevProcess, queues: &str, env: &[(&str, &str)]) -> Self {
        let id = unique("worker-");
        let settings = [
            ("ORDO_API_URL", dev.url.as_str()),
            ("ORDO_WORKER_ID", id.as_str()),
            ("ORDO_WORKER_QUEUES", queues),
            ("ORDO_WORKER_CLAIM_WAIT_MS", "1000"),
        ];
        Self::spawn(id.clone(), "worker", &settings, env).await
    }

    /// A lease reaper beside the one `ordo dev` runs, on the same database and key prefix.
    pub async fn start_reaper(db: &TestDb, prefix: &TestPrefix) -> Self {
        let settings = [
            ("ORDO_DATABASE_URL", db.url.as_str()),
            ("ORDO_REDIS_PREFIX", prefix.prefix.as_str()),
        ];
        Self::spawn(unique("reaper-"), "reaper", &settings, &[]).await
    }

    /// `ordo serve projector` of `topic` into `prefix` (repairing and rebuilding it from the
    /// event store of `db`), as a member of consumer group `group`; `env` adds or overrides
    /// settings.
    pub async fn start_projector(
        db: &TestDb,
        prefix: &TestPrefix,
        topic: &str,
        group: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let settings = [
            ("ORDO_DATABASE_URL", db.url.as_str()),
            ("ORDO_REDIS_PREFIX", prefix.prefix.as_str()),
            ("ORDO_PROJECTOR_TOPIC", topic),
            ("ORDO_PROJECTOR_GROUP", group),
            ("ORDO_KAFKA_TOPIC_PARTITIONS", "1"),
        ];
        Self::spawn(unique("projector-"), "projector", &settings, env).await
    }

    async fn spawn(
        id: String,
        role: &str,
        settings: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        let metrics = format!("127.0.0.1:{}", port());
        let spec = ProcessSpec::new(
            env!("CARGO_BIN_EXE_ordo"),
            &["--log-format", "text", "serve", role],
        )
        .env("ORDO_METRICS_ADDR", &metrics)
        .env("RUST_LOG", "warn")
        .envs(settings.iter().copied())
        .envs(env.iter().copied());
        let mut process =
            OrdoProcess::spawn(spec).unwrap_or_else(|e| panic!("spawn ordo serve {role}: {e:#}"));
        let metrics_url = format!("http://{metrics}/metrics");
        process
            .wait_ok(&metrics_url, READY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("ordo serve {role} not ready: {e:#}"));
        Self {
            process,
            id,
            metrics_url,
        }
    }

    /// SIGKILL: no drain, no report; its leases simply run out.
    pub fn kill_hard(&mut self) {
        self.process.kill_hard();
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.process
            .terminate(timeout)
            .unwrap_or_else(|e| panic!("the role did not stop: {e:#}"))
    }

    /// The value of one sample of the role's `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric(&self.metrics_url, sample).await
    }
}

/// The value of one sample of the Prometheus text at `url` (0 when absent).
async fn metric(url: &str, sample: &str) -> f64 {
    let text = reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One event of the store: its type and its data (the payload inside the type's name).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub job_id: String,
    pub event_type: String,
    pub data: Value,
}

/// Every event of the store in append order, optionally of one job.
pub async fn events(pool: &PgPool, job_id: Option<&str>) -> Vec<StoredEvent> {
    let rows: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, payload FROM events \
         WHERE $1::text IS NULL OR aggregate_id = $1 ORDER BY position",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
    .expect("read the event store");
    rows.into_iter()
        .map(|(job_id, event_type, payload)| StoredEvent {
            data: payload[&event_type].clone(),
            job_id,
            event_type,
        })
        .collect()
}

/// Waits until the store holds `count` events of `event_type`.
pub async fn wait_for_events(pool: &PgPool, event_type: &str, count: i64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let (seen,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(pool)
            .await
            .expect("count events");
        if seen >= count {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{seen} of {count} {event_type} events within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

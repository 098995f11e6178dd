//! The ClickHouse logs sink as users run it, `ordo serve projector --name clickhouse-logs`,
//! under faults: killed (-9) again and again while it stores a backlog and new lines keep
//! coming, it stores every line exactly once; with its ClickHouse stopped for half a minute
//! while lines are ingested over HTTP (`ordo serve ingest`, answering 202 throughout), it
//! waits behind its circuit breaker and stores everything once ClickHouse is back.

mod common;

use chrono::{Duration as TimeDelta, Utc};
use common::{kafka_brokers, unique};
use ordo::instances::clickhouse::PrivateClickHouse;
use ordo::instances::free_port;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo_clickhouse_store::ClickHouseConfig;
use ordo_common::kafka;
use ordo_protocol::logs::{Level, LogBatch, LogEntry};
use ordo_testkit::TestClickHouse;
use rdkafka::producer::FutureRecord;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rows stored more than once: the same line of the same record.
const TWICE: &str = "SELECT count() FROM (SELECT kafka_partition, kafka_offset, message FROM logs \
                     GROUP BY ALL HAVING count() > 1)";

/// A scratch directory for the processes' logs (and a private ClickHouse's data), removed
/// with the value unless the test failed.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("ordo-test-sinks-"));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn migrated(url: &str) -> (ClickHouseConfig, TestClickHouse) {
    let database = TestClickHouse::on(url);
    let config = ClickHouseConfig {
        database: database.database.clone(),
        timeout: Duration::from_secs(30),
        ..ClickHouseConfig::new(url)
    };
    ordo_clickhouse_store::migrate(&config)
        .await
        .expect("ClickHouse answers (run `make services`)");
    (config, database)
}

/// One query's single number; `None` while ClickHouse does not answer.
async fn number(config: &ClickHouseConfig, sql: &str) -> Option<u64> {
    config.client().query(sql).fetch_one().await.ok()
}

async fn wait_for_lines(config: &ClickHouseConfig, expected: u64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let stored = number(config, "SELECT count() FROM logs").await;
        if stored == Some(expected) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{stored:?} lines stored, not {expected}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `ordo serve projector --name clickhouse-logs` on `topic` into `config`'s database, its
/// metrics on `metrics_port`.
fn logs_sink(
    config: &ClickHouseConfig,
    topic: &str,
    log: &std::path::Path,
    metrics_port: u16,
) -> OrdoProcess {
    let spec = ProcessSpec::new(
        env!("CARGO_BIN_EXE_ordo"),
        &[
            "--log-format",
            "text",
            "serve",
            "projector",
            "--name",
            "clickhouse-logs",
        ],
    )
    .env("ORDO_KAFKA_BROKERS", kafka_brokers())
    .env("ORDO_LOGS_TOPIC", topic)
    .env("ORDO_KAFKA_TOPIC_PARTITIONS", "2")
    .env("ORDO_PROJECTOR_GROUP", format!("{topic}.sink"))
    .env("ORDO_PROJECTOR_SESSION_TIMEOUT_MS", "2000")
    .env("ORDO_PROJECTOR_MAX_BATCH", "10000")
    .env("ORDO_PROJECTOR_MAX_WAIT_MS", "300")
    .env("ORDO_CLICKHOUSE_URL", &config.url)
    .env("ORDO_CLICKHOUSE_DATABASE", &config.database)
    .env("ORDO_CLICKHOUSE_TIMEOUT_MS", "5000")
    .env("ORDO_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
    .env("RUST_LOG", "warn,ordo_projectors=info")
    .log(log);
    OrdoProcess::spawn(spec).expect("spawn ordo serve projector")
}

/// Record `n`: `lines` lines of one of two tenants and three services, spread over today
/// and the two days before (three parts per insert), each message naming record and line.
fn log_record(n: usize, lines: usize) -> (String, Vec<u8>) {
    let now = Utc::now();
    let batch = LogBatch {
        v: 2,
        tenant: ["acme", "globex"][n % 2].into(),
        service: format!("svc{}", n % 3),
        source: "native".into(),
        job_id: None,
        attempt: None,
        worker_id: None,
        received_at: now,
        lines: (0..lines)
            .map(|line| {
                let ts = now - TimeDelta::days((line % 3) as i64);
                LogEntry::new(ts, Level::Info, format!("record {n} line {line}"))
            })
            .collect(),
    };
    (batch.key(), serde_json::to_vec(&batch).unwrap())
}

async fn produce(
    producer: &kafka::Producer,
    topic: &str,
    records: std::ops::Range<usize>,
    lines: usize,
) {
    for n in records {
        let (key, value) = log_record(n, lines);
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
    }
}

/// Whether an insert into the test database's `logs` runs on the server right now.
async fn inserting(config: &ClickHouseConfig) -> bool {
    number(
        config,
        "SELECT count() FROM system.processes WHERE query_kind = 'Insert' \
         AND current_database = currentDatabase() AND positionCaseInsensitive(query, 'logs') > 0",
    )
    .await
    .is_some_and(|n| n > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_again_and_again_the_logs_sink_stores_every_line_once() {
    const LINES: usize = 250;
    const BACKLOG: usize = 200;
    const LATER: usize = 60;
    let scratch = Scratch::new();
    let (clickhouse, _database) = migrated(&ordo_testkit::stack::clickhouse_url()).await;
    let topic = unique("ordo-test-sink-logs-");
    kafka::ensure_topic(&kafka_brokers(), &topic, 2)
        .await
        .unwrap();
    let producer = kafka::producer(&kafka_brokers(), Duration::from_secs(30)).unwrap();
    produce(&producer, &topic, 0..BACKLOG, LINES).await;
    // More lines keep coming while the sink is killed and started again.
    let streaming = {
        let (producer, topic) = (producer.clone(), topic.clone());
        tokio::spawn(async move {
            for n in BACKLOG..BACKLOG + LATER {
                produce(&producer, &topic, n..n + 1, LINES).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    let log = scratch.0.join("sink.log");
    let mut sink = logs_sink(&clickhouse, &topic, &log, free_port().unwrap());
    let mut kills_during_inserts = 0;
    for _ in 0..4 {
        // Kill it as soon as an insert of it runs on the server (or after 20 s of none).
        let started = Instant::now();
        while !inserting(&clickhouse).await && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kills_during_inserts += u32::from(inserting(&clickhouse).await);
        sink.kill_hard();
        sink.respawn().expect("restart the sink");
    }
    streaming.await.unwrap();
    let total = ((BACKLOG + LATER) * LINES) as u64;
    wait_for_lines(&clickhouse, total, Duration::from_secs(180)).await;
    // Nothing more lands afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sink.terminate(Duration::from_secs(20)).unwrap();

    assert_eq!(
        number(&clickhouse, "SELECT count() FROM logs").await,
        Some(total)
    );
    assert_eq!(
        number(&clickhouse, TWICE).await,
        Some(0),
        "no line stored twice"
    );
    assert_eq!(
        number(&clickhouse, "SELECT uniqExact(message) FROM logs").await,
        Some(total),
        "every line there"
    );
    let sink_log = std::fs::read_to_string(&log).unwrap_or_default();
    let removals = sink_log.matches("removing the rows of a batch").count();
    eprintln!(
        "{kills_during_inserts} of 4 kills hit an insert in progress; {removals} batches \
         were found not stored whole and stored again"
    );
    assert!(
        kills_during_inserts > 0,
        "no kill hit an insert: the test proved nothing"
    );
}

/// `ordo serve ingest` on its own port, to the test's topic.
fn ingest(topic: &str, port: u16, log: &std::path::Path) -> OrdoProcess {
    let spec = ProcessSpec::new(
        env!("CARGO_BIN_EXE_ordo"),
        &["--log-format", "text", "serve", "ingest"],
    )
    .env("ORDO_KAFKA_BROKERS", kafka_brokers())
    .env("ORDO_LOGS_TOPIC", topic)
    .env("ORDO_KAFKA_TOPIC_PARTITIONS", "2")
    .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"))
    .env("ORDO_REDIS_PREFIX", unique("ordo-test-sinks-"))
    .env("RUST_LOG", "warn")
    .log(log);
    OrdoProcess::spawn(spec).expect("spawn ordo serve ingest")
}

/// The value of sample `name` with these `labels` (`key="value"`, any order) of the
/// Prometheus text at `url`; 0 when absent or unreachable.
async fn metric(url: &str, name: &str, labels: &[&str]) -> f64 {
    let Ok(answer) = reqwest::get(url).await else {
        return 0.0;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or(0.0)
}

const SINK: &str = "projector=\"clickhouse-logs\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_stopped_lines_wait_in_kafka_and_all_land_once_it_is_back() {
    const LINES: usize = 50;
    let scratch = Scratch::new();
    let mut private = tokio::task::block_in_place(|| {
        PrivateClickHouse::start_in(&scratch.0.join("clickhouse"), free_port().unwrap())
    })
    .expect("a private ClickHouse");
    let (clickhouse, _database) = migrated(&private.url()).await;
    let topic = unique("ordo-test-sink-outage-");
    let port = free_port().unwrap();
    let mut ingest = ingest(&topic, port, &scratch.0.join("ingest.log"));
    let url = format!("http://127.0.0.1:{port}");
    ingest
        .wait_ok(&format!("{url}/readyz"), Duration::from_secs(60))
        .await
        .expect("ingest ready");
    let metrics_port = free_port().unwrap();
    let mut sink = logs_sink(
        &clickhouse,
        &topic,
        &scratch.0.join("sink.log"),
        metrics_port,
    );
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    sink.wait_ok(&metrics, Duration::from_secs(60))
        .await
        .unwrap();

    // 40 s of requests of 50 lines, 5 a second; ClickHouse is away from the 5th to the 35th.
    let sender = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let (mut accepted, mut statuses) = (0u64, Vec::new());
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(40) {
            let body: String = (0..LINES)
                .map(|line| {
                    format!(
                        "{{\"service\":\"svc{}\",\"message\":\"request {n} line {line}\"}}\n",
                        n % 2
                    )
                })
                .collect();
            let answer = client
                .post(format!("{url}/api/v1/logs"))
                .header("content-type", "application/x-ndjson")
                .header("x-ordo-tenant", "acme")
                .timeout(Duration::from_secs(10))
                .body(body)
                .send()
                .await;
            let status = answer.map(|a| a.status().as_u16()).unwrap_or(0);
            if status == 202 {
                accepted += LINES as u64;
            }
            statuses.push(status);
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (accepted, statuses)
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| private.stop());
    let stopped = Instant::now();
    let mut breaker_opened = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        let state = metric(&metrics, "ordo_projector_breaker_state", &[SINK]).await;
        breaker_opened |= state == 2.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::task::block_in_place(|| private.restart()).expect("ClickHouse back");
    let (accepted, statuses) = sender.await.unwrap();

    assert!(
        statuses.iter().all(|s| *s == 202),
        "ingestion answered 202 throughout: {statuses:?}"
    );
    wait_for_lines(&clickhouse, accepted, Duration::from_secs(120)).await;
    assert!(
        breaker_opened,
        "the breaker opened while ClickHouse was away"
    );
    let unavailable = metric(
        &metrics,
        "ordo_projector_errors_total",
        &[SINK, "kind=\"clickhouse_unavailable\""],
    )
    .await;
    assert!(unavailable > 0.0, "failed writes counted by kind");
    assert_eq!(
        metric(&metrics, "ordo_projector_breaker_state", &[SINK]).await,
        0.0,
        "closed again"
    );
    assert_eq!(number(&clickhouse, TWICE).await, Some(0));
    let sink_log = std::fs::read_to_string(scratch.0.join("sink.log")).unwrap_or_default();
    assert!(sink_log.contains("sink circuit breaker"), "the log says so");
    sink.terminate(Duration::from_secs(20)).unwrap();
    ingest.terminate(Duration::from_secs(20)).unwrap();
    eprintln!(
        "{accepted} lines accepted in {} requests, all stored once after a 30 s outage",
        statuses.len()
    );
}

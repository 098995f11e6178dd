//! The ClickHouse sinks and the history replay against the real broker, PostgreSQL and
//! ClickHouse (a database per test, `ORDO_CLICKHOUSE_URL`): log lines stored once with their
//! Kafka position, across partitions, days and a restart; a batch cut short by a crash
//! removed and stored again; job events with their job's type and queue, redelivered
//! harmlessly; `job_events` rebuilt from the event store and verified against it.

use chrono::{DateTime, Duration as TimeDelta, DurationRound, Utc};
use ordo_clickhouse_store::{
    ClickHouseConfig, DifferenceKind, JobEventRow, JobEventsTable, LogRow, LogsTable,
    PartitionState,
};
use ordo_command_api::{CommandMetrics, JobCommandBus};
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use ordo_domain::spec::{QueueName, TenantId, WorkerId};
use ordo_domain::{sample, CommandMetadata, JobCommand, JobServices};
use ordo_projectors::replay::history;
use ordo_projectors::replay::{ReplayOptions, Silent};
use ordo_projectors::sinks::clickhouse::history::ClickHouseHistory;
use ordo_projectors::sinks::clickhouse::job_rows::event_row;
use ordo_projectors::sinks::clickhouse::logs::ClickHouseLogs;
use ordo_projectors::{LogSinkMetrics, ProjectorConfig, ProjectorMetrics, Sink};
use ordo_protocol::logs::{Level, LogBatch, LogEntry};
use ordo_protocol::Backoff;
use ordo_testkit::stack::{kafka_brokers, unique};
use ordo_testkit::{TestClickHouse, TestDb};
use rdkafka::producer::FutureRecord;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// A migrated ClickHouse database of the test's own.
async fn clickhouse() -> (ClickHouseConfig, TestClickHouse) {
    let database = TestClickHouse::new();
    let config = ClickHouseConfig {
        database: database.database.clone(),
        timeout: Duration::from_secs(30),
        ..ClickHouseConfig::new(&database.url)
    };
    ordo_clickhouse_store::migrate(&config)
        .await
        .expect("ClickHouse of the local stack answers (run `make services`)");
    (config, database)
}

async fn count(config: &ClickHouseConfig, sql: &str) -> u64 {
    config.client().query(sql).fetch_one().await.unwrap()
}

async fn wait_for_count(config: &ClickHouseConfig, sql: &str, expected: u64) {
    let started = Instant::now();
    loop {
        let now = count(config, sql).await;
        if now == expected {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{sql}: {now}, not {expected} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A projector of `sink` running in the test process.
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start<S: Sink + 'static>(config: ProjectorConfig, sink: S) -> Self {
        let metrics =
            ProjectorMetrics::register(&prometheus::Registry::new(), &config.name).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ordo_projectors::run(
            config,
            sink,
            metrics,
            RoleHealth::unobserved("projector"),
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("projector task").expect("projector");
    }
}

fn config(name: &str, topic: &str, group: &str, partitions: i32) -> ProjectorConfig {
    ProjectorConfig {
        topic: topic.to_owned(),
        group: group.to_owned(),
        parking_topic: format!("{topic}.parked"),
        topic_partitions: partitions,
        max_batch: 400,
        max_wait: Duration::from_millis(200),
        session_timeout: Duration::from_secs(2),
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(200)),
        ..ProjectorConfig::new(name, &kafka_brokers(), "")
    }
}

fn logs_sink(config: &ClickHouseConfig, topic: &str) -> ClickHouseLogs {
    let metrics = LogSinkMetrics::register(&prometheus::Registry::new()).unwrap();
    ClickHouseLogs::new(config, topic, metrics)
}

/// Record `n`: 30 lines of tenant acme or globex, spread over today and the two days before
/// (three parts per insert), each message naming its record and line.
fn log_record(n: usize, now: DateTime<Utc>) -> LogBatch {
    LogBatch {
        v: 2,
        tenant: ["acme", "globex"][n % 2].into(),
        service: format!("svc{}", n % 3),
        source: "native".into(),
        job_id: None,
        attempt: None,
        worker_id: None,
        received_at: now,
        lines: (0..30)
            .map(|line| {
                let ts = now - TimeDelta::days((line % 3) as i64);
                LogEntry::new(ts, Level::Info, format!("record {n} line {line}"))
            })
            .collect(),
    }
}

/// Produces `values` (key, value) to `topic`, each to `partition(index)`.
async fn produce(
    topic: &str,
    partitions: i32,
    values: &[(String, Vec<u8>)],
    partition: impl Fn(usize) -> i32,
) {
    kafka::ensure_topic(&kafka_brokers(), topic, partitions)
        .await
        .expect("create topic");
    let producer = kafka::producer(&kafka_brokers(), Duration::from_secs(30)).expect("producer");
    for (index, (key, value)) in values.iter().enumerate() {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition(index))
                    .key(key)
                    .payload(value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
    }
}

fn log_records(range: std::ops::Range<usize>, now: DateTime<Utc>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|n| {
            let batch = log_record(n, now);
            (batch.key(), serde_json::to_vec(&batch).unwrap())
        })
        .collect()
}

const EXACTLY_ONCE: &str = "SELECT count() FROM (SELECT kafka_partition, kafka_offset, message \
                            FROM logs GROUP BY ALL HAVING count() > 1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_stored_once_with_their_kafka_position_across_a_restart() {
    let (ch, _db) = clickhouse().await;
    let topic = unique("ordo-test-logs-");
    let group = unique("ordo-test-logs-");
    let now = Utc::now();
    produce(&topic, 2, &log_records(0..40, now), |i| (i % 2) as i32).await;

    let projector = Running::start(
        config("clickhouse-logs", &topic, &group, 2),
        logs_sink(&ch, &topic),
    );
    wait_for_count(&ch, "SELECT count() FROM logs", 40 * 30).await;
    projector.stop().await;
    assert_eq!(count(&ch, EXACTLY_ONCE).await, 0);
    let positions = count(
        &ch,
        "SELECT uniqExact(kafka_partition, kafka_offset) FROM logs",
    )
    .await;
    assert_eq!(positions, 40);
    let states = LogsTable::new(&ch)
        .partition_states("clickhouse-logs", &topic, &[0, 1])
        .await
        .unwrap();
    for partition in [0, 1] {
        assert_eq!(states[&partition].next_offset, Some(20), "{states:?}");
    }

    // A new instance resumes where the table says, and stores the new records only.
    produce(&topic, 2, &log_records(40..50, now), |i| (i % 2) as i32).await;
    let projector = Running::start(
        config("clickhouse-logs", &topic, &group, 2),
        logs_sink(&ch, &topic),
    );
    wait_for_count(&ch, "SELECT count() FROM logs", 50 * 30).await;
    projector.stop().await;
    assert_eq!(count(&ch, EXACTLY_ONCE).await, 0);
    assert_eq!(
        count(&ch, "SELECT uniqExact(message) FROM logs").await,
        50 * 30
    );
}

/// The row of line `line` of record `n` at offset `n` of partition 0, as the sink makes it.
fn stored_line(n: usize, line: usize, now: DateTime<Utc>) -> LogRow {
    let batch = log_record(n, now);
    let entry = &batch.lines[line];
    LogRow {
        tenant: batch.tenant.clone(),
        ts: entry.ts,
        service: batch.service.clone(),
        env: String::new(),
        host: String::new(),
        component: String::new(),
        level: "info".into(),
        severity_number: 9,
        message: entry.message.clone(),
        attributes: Default::default(),
        job_id: None,
        attempt: 0,
        worker_id: String::new(),
        trace_id: String::new(),
        span_id: String::new(),
        received_at: now.duration_trunc(TimeDelta::microseconds(1)).unwrap(),
        kafka_partition: 0,
        kafka_offset: n as i64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_a_crash_is_removed_and_stored_again_once() {
    let (ch, _db) = clickhouse().await;
    let topic = unique("ordo-test-logs-");
    let now = Utc::now();
    produce(&topic, 1, &log_records(0..8, now), |_| 0).await;
    // What a sink killed mid-insert leaves: records 0-3 stored and confirmed, then an insert
    // of records 4-5 of which only today's part landed.
    let table = LogsTable::new(&ch);
    let whole: Vec<LogRow> = (0..4)
        .flat_map(|n| (0..30).map(move |line| stored_line(n, line, now)))
        .collect();
    table.insert(&whole, "crashed-run-1").await.unwrap();
    let state = PartitionState {
        next_offset: Some(4),
        floor: -1,
    };
    table
        .set_partition_states("clickhouse-logs", &topic, &BTreeMap::from([(0, state)]))
        .await
        .unwrap();
    let partial: Vec<LogRow> = (4..6)
        .flat_map(|n| {
            (0..30)
                .step_by(3)
                .map(move |line| stored_line(n, line, now))
        })
        .collect();
    table.insert(&partial, "crashed-run-2").await.unwrap();

    let projector = Running::start(
        config("clickhouse-logs", &topic, &unique("ordo-test-logs-"), 1),
        logs_sink(&ch, &topic),
    );
    wait_for_count(&ch, "SELECT count() FROM logs", 8 * 30).await;
    // Nothing more comes: the count stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    projector.stop().await;
    assert_eq!(count(&ch, "SELECT count() FROM logs").await, 8 * 30);
    assert_eq!(count(&ch, EXACTLY_ONCE).await, 0);
    assert_eq!(
        count(&ch, "SELECT uniqExact(message) FROM logs").await,
        8 * 30
    );
}

fn histories(jobs: usize) -> Vec<Vec<ordo_domain::EventEnvelope>> {
    let tenant = TenantId::parse("acme").unwrap();
    let queue = QueueName::parse("reports").unwrap();
    (0..jobs)
        .map(|n| {
            let job = Uuid::now_v7().to_string();
            sample::lifecycle(&job, &tenant, &queue, Utc::now(), n % 2 == 0)
        })
        .collect()
}

fn event_records<'a>(
    events: impl IntoIterator<Item = &'a ordo_domain::EventEnvelope>,
) -> Vec<(String, Vec<u8>)> {
    events
        .into_iter()
        .map(|e| (e.job_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_events_carry_their_jobs_type_and_queue_and_redeliveries_change_nothing() {
    let (ch, _db) = clickhouse().await;
    let topic = unique("ordo-test-history-");
    let group = unique("ordo-test-history-");
    let histories = histories(20);
    let total: usize = histories.iter().map(Vec::len).sum();
    // First the jobs' first two events; the rest, and everything again, to a new instance:
    // it learns the types and queues from the table, not from what it saw.
    produce(
        &topic,
        3,
        &event_records(histories.iter().flat_map(|h| &h[..2])),
        |_| 0,
    )
    .await;
    let projector = Running::start(
        config("clickhouse-history", &topic, &group, 3),
        ClickHouseHistory::new(&ch),
    );
    wait_for_count(&ch, "SELECT count() FROM job_events", 40).await;
    projector.stop().await;
    let rest = event_records(histories.iter().flat_map(|h| &h[2..]));
    let again = event_records(histories.iter().flatten());
    produce(&topic, 3, &[rest, again].concat(), |_| 0).await;
    let projector = Running::start(
        config("clickhouse-history", &topic, &group, 3),
        ClickHouseHistory::new(&ch),
    );
    wait_for_count(&ch, "SELECT count() FROM job_events FINAL", total as u64).await;
    projector.stop().await;

    let mut rows: Vec<JobEventRow> = ch
        .client()
        .query("SELECT ?fields FROM job_events FINAL")
        .fetch_all()
        .await
        .unwrap();
    let mut expected: Vec<JobEventRow> = histories
        .iter()
        .flatten()
        .map(|e| {
            let mut row = event_row(e, &e.event().unwrap()).unwrap();
            row.job_type = "sample.noop".into();
            row.queue = "reports".into();
            row
        })
        .collect();
    rows.sort_by_key(|r| (r.job_id, r.sequence));
    expected.sort_by_key(|r| (r.job_id, r.sequence));
    assert_eq!(rows, expected);
}

/// A scratch event store with `count` jobs moved along, written by the real command bus.
async fn event_store(count: usize) -> (TestDb, JobCommandBus, Vec<(Uuid, TenantId)>) {
    let db = TestDb::new().await;
    let bus = JobCommandBus::new(
        db.pool.clone(),
        JobServices::system(),
        CommandMetrics::unregistered(),
    );
    let mut jobs = Vec::new();
    for n in 0..count {
        let tenant = TenantId::parse(["acme", "globex"][n % 2]).unwrap();
        let queue = QueueName::parse(["mail", "reports"][n % 2]).unwrap();
        let metadata = CommandMetadata {
            tenant: tenant.to_string(),
            actor: "test".into(),
            correlation_id: Uuid::new_v4().to_string(),
            occurred_at: Utc::now(),
        };
        let job = bus
            .submit(sample::spec(&tenant, &queue), None, metadata.clone())
            .await
            .expect("submit")
            .job_id;
        if n % 3 != 0 {
            let start = JobCommand::Start {
                worker_id: WorkerId::parse("w-1").unwrap(),
                attempt: 1,
                lease_expires_at: Utc::now() + TimeDelta::minutes(5),
            };
            bus.execute(job, &tenant, start, metadata.clone())
                .await
                .expect("start");
            let fail = JobCommand::Fail {
                attempt: 1,
                error: format!("boom {n}"),
                retryable: n % 2 == 0,
            };
            bus.execute(job, &tenant, fail, metadata)
                .await
                .expect("fail");
        }
        jobs.push((job, tenant));
    }
    (db, bus, jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_rebuilt_from_the_event_store_and_verified_against_it() {
    let (ch, _database) = clickhouse().await;
    let (db, bus, jobs) = event_store(12).await;
    let options = ReplayOptions {
        settle: Duration::from_millis(100),
        page_size: 7,
        batch_size: 5,
        ..ReplayOptions::default()
    };
    let summary = history::rebuild(&db.pool, &ch, &options, &Silent)
        .await
        .unwrap();
    let stored: usize = {
        let mut events = 0;
        for (job, tenant) in &jobs {
            events += bus.history(*job, tenant).await.unwrap().len();
        }
        events
    };
    assert_eq!(summary.events, stored as u64);
    assert_eq!(summary.written, stored as u64);
    assert_eq!(summary.unknown_kinds, 0);
    assert!(summary.undecodable.is_empty());
    assert_eq!(
        count(&ch, "SELECT count() FROM job_events FINAL").await,
        stored as u64
    );
    assert_eq!(
        count(
            &ch,
            "SELECT countIf(job_type = '' OR queue = '') FROM job_events"
        )
        .await,
        0,
        "every row carries its job's type and queue"
    );
    let clean = history::verify(&db.pool, &ch, &options, 100, &Silent)
        .await
        .unwrap();
    assert_eq!(clean.total, 0, "{:?}", clean.differences);

    // Damage: a row lost, a row changed, a row nobody wrote.
    let live = JobEventsTable::live(&ch);
    let client = ch.client();
    let (lost_job, _) = jobs[1];
    client
        .query("ALTER TABLE job_events DELETE WHERE job_id = ? AND sequence = 1")
        .bind(lost_job)
        .with_setting("mutations_sync", "2")
        .execute()
        .await
        .unwrap();
    let mut changed: JobEventRow = client
        .query("SELECT ?fields FROM job_events FINAL WHERE job_id = ? AND sequence = 3")
        .bind(jobs[2].0)
        .fetch_one()
        .await
        .unwrap();
    changed.error = "rewritten".into();
    let mut stray = changed.clone();
    stray.sequence = 99;
    live.insert(&[changed.clone(), stray.clone()])
        .await
        .unwrap();
    let damaged = history::verify(&db.pool, &ch, &options, 100, &Silent)
        .await
        .unwrap();
    assert_eq!(damaged.total, 3, "{:?}", damaged.differences);
    let kinds: Vec<_> = damaged
        .differences
        .iter()
        .map(|d| (d.job_id.clone(), d.sequence, d.kind.clone()))
        .collect();
    assert!(kinds.contains(&(lost_job.to_string(), 1, DifferenceKind::Missing)));
    assert!(kinds.contains(&(
        changed.job_id.to_string(),
        3,
        DifferenceKind::Changed {
            columns: vec!["error"]
        }
    )));
    assert!(kinds.contains(&(stray.job_id.to_string(), 99, DifferenceKind::Unexpected)));

    // A rebuild replaces the damaged table whole.
    history::rebuild(&db.pool, &ch, &options, &Silent)
        .await
        .unwrap();
    let healed = history::verify(&db.pool, &ch, &options, 100, &Silent)
        .await
        .unwrap();
    assert_eq!(healed.total, 0, "{:?}", healed.differences);
    let tables: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'job_events%'")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(tables, ["job_events"], "scratch and old tables are dropped");
}

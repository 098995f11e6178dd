//! The migrations and the two tables on the local stack's ClickHouse: applied once, checked
//! after, retention by whole days, the indexes that make log search fast, deduplicated job
//! history, and the row types reading back what they wrote.

mod common;

use chrono::{DateTime, Duration as TimeDelta, DurationRound, Utc};
use common::TestDatabase;
use ordo_clickhouse_store::{
    severity_number, ClickHouseConfig, JobEventRow, LogRow, Migration, Migrator, StoreError,
};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

async fn migrated() -> TestDatabase {
    let db = TestDatabase::new();
    Migrator::embedded().run(&db.config).await.expect("migrate");
    db
}

async fn tables(config: &ClickHouseConfig) -> Vec<String> {
    config
        .client()
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_once() {
    let db = TestDatabase::new();
    let report = Migrator::embedded().run(&db.config).await.unwrap();
    assert_eq!(
        report.applied,
        [
            "0001_logs",
            "0002_job_events",
            "0003_sink_offsets",
            "0004_services"
        ]
    );
    assert_eq!(report.retention_changed, None);
    assert_eq!(
        tables(&db.config).await,
        [
            "active_services",
            "job_events",
            "logs",
            "schema_migrations",
            "service_hourly",
            "service_hourly_mv",
            "services",
            "services_mv",
            "sink_offsets"
        ]
    );
    let recorded = Migrator::embedded().applied(&db.config).await.unwrap();
    let embedded = Migrator::embedded();
    assert_eq!(recorded.len(), embedded.migrations().len());
    for (record, migration) in recorded.iter().zip(embedded.migrations()) {
        assert_eq!(
            (record.version, &record.name, &record.checksum),
            (migration.version, &migration.name, &migration.checksum)
        );
    }

    let again = Migrator::embedded().run(&db.config).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(
        Migrator::embedded().applied(&db.config).await.unwrap(),
        recorded
    );
}

#[tokio::test]
async fn an_applied_migration_that_changed_is_refused() {
    let db = migrated().await;
    let mut changed: Vec<Migration> = Migrator::embedded().migrations().to_vec();
    changed[0] =
        Migration::new("0001_logs.sql", &format!("{}\n-- an edit", changed[0].sql)).unwrap();
    let error = Migrator::new(changed).run(&db.config).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::ChangedMigration { file, .. } if file == "0001_logs.sql"),
        "{error}"
    );
    assert!(error.to_string().contains("add a new migration"), "{error}");

    let older_build = Migrator::new(Migrator::embedded().migrations()[..1].to_vec());
    let error = older_build.run(&db.config).await.unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownMigration { version: 2, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_new_log_retention_is_applied_to_the_existing_table() {
    let mut db = migrated().await;
    db.config.log_retention_days = 3;
    let report = Migrator::embedded().run(&db.config).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.retention_changed, Some((14, 3)));
    let create: String = db
        .config
        .client()
        .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'logs'")
        .fetch_one()
        .await
        .unwrap();
    assert!(create.contains("toIntervalDay(3)"), "{create}");
    let hourly: String = db
        .config
        .client()
        .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'service_hourly'")
        .fetch_one()
        .await
        .unwrap();
    assert!(
        hourly.contains("toIntervalDay(3)"),
        "the registry's hours follow: {hourly}"
    );
    let report = Migrator::embedded().run(&db.config).await.unwrap();
    assert_eq!(report.retention_changed, None);
}

fn log_row(ts: DateTime<Utc>, message: &str, job_id: Option<Uuid>) -> LogRow {
    let level = if message.contains("timeout") {
        "error"
    } else {
        "info"
    };
    LogRow {
        tenant: "acme".into(),
        ts,
        service: if job_id.is_some() { "job" } else { "api" }.into(),
        env: "test".into(),
        host: "node-1".into(),
        component: "runner".into(),
        level: level.into(),
        severity_number: severity_number(level).unwrap(),
        message: message.into(),
        attributes: BTreeMap::from([
            ("http.status".into(), "500".into()),
            ("user".into(), "ada".into()),
        ]),
        job_id,
        attempt: u32::from(job_id.is_some()),
        worker_id: if job_id.is_some() { "w-1" } else { "" }.into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        received_at: ts.duration_trunc(TimeDelta::microseconds(1)).unwrap(),
        kafka_partition: 0,
        kafka_offset: -1,
    }
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().expect("within 1677-2262")
}

async fn insert_logs(config: &ClickHouseConfig, rows: &[LogRow]) -> clickhouse::error::Result<()> {
    let mut insert = config.client().insert::<LogRow>("logs").await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

#[tokio::test]
async fn retention_drops_an_expired_day_whole() {
    let db = migrated().await;
    let now = Utc::now();
    let old = now - TimeDelta::days(30);
    let rows: Vec<_> = (0..100)
        .map(|i| log_row(if i % 2 == 0 { old } else { now }, "line", None))
        .collect();
    insert_logs(&db.config, &rows).await.unwrap();
    let client = db.config.client();
    let mut left = u64::MAX;
    for _ in 0..50 {
        // TTL merges run in the background; OPTIMIZE ... FINAL asks for them now.
        client
            .query("OPTIMIZE TABLE logs FINAL")
            .execute()
            .await
            .unwrap();
        left = client
            .query("SELECT count() FROM logs WHERE ts < fromUnixTimestamp64Nano(?)")
            .bind(nanos(now - TimeDelta::days(14)))
            .fetch_one()
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the day 30 days back is past the 14-day retention");
    let kept: u64 = client
        .query("SELECT count() FROM logs")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kept, 50, "today's lines are kept");
    // The expired day's part is replaced by an empty one (removed later), not rewritten.
    let old_rows: u64 = client
        .query("SELECT sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = 'logs' AND active AND partition = ?")
        .bind(old.date_naive().to_string())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old_rows, 0);
}

#[tokio::test]
async fn log_search_uses_the_text_and_job_indexes() {
    let db = migrated().await;
    let start = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(2);
    let (job_a, job_b) = (Uuid::now_v7(), Uuid::now_v7());
    // 60,000 lines (8 granules): service lines throughout, job A's in a burst at the start,
    // job B's at the end; 40 mention a timeout, in mixed case.
    let rows: Vec<LogRow> = (0..60_000i64)
        .map(|i| {
            let ts = start + TimeDelta::milliseconds(i * 100);
            let job = match i {
                0..1_000 => Some(job_a),
                59_000.. => Some(job_b),
                _ => None,
            };
            let message = if i % 1_500 == 7 {
                format!("request {i}: upstream Timeout after 30s")
            } else {
                format!("request {i} served in {} ms", i % 97)
            };
            let mut row = log_row(ts, &message, job);
            if message.contains("Timeout") {
                row.level = "error".into();
                row.severity_number = severity_number("error").unwrap();
            }
            row
        })
        .collect();
    for chunk in rows.chunks(20_000) {
        insert_logs(&db.config, chunk).await.unwrap();
    }
    let client = db.config.client();
    client
        .query("OPTIMIZE TABLE logs FINAL")
        .execute()
        .await
        .unwrap();

    let search = "SELECT ?fields FROM logs WHERE tenant = 'acme' \
                  AND ts >= fromUnixTimestamp64Nano(?) AND ts < fromUnixTimestamp64Nano(?) \
                  AND hasToken(lower(message), ?) ORDER BY ts";
    let found: Vec<LogRow> = client
        .query(search)
        .bind(nanos(start))
        .bind(nanos(start + TimeDelta::hours(3)))
        .bind("timeout")
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<_> = rows
        .iter()
        .filter(|r| r.message.contains("Timeout"))
        .cloned()
        .collect();
    assert_eq!(expected.len(), 40);
    assert_eq!(found, expected, "rows read back as written");
    let both: u64 = client
        .query("SELECT count() FROM logs WHERE hasAllTokens(lower(message), 'upstream timeout')")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(both, 40);
    let plan = explain(
        &client,
        "SELECT ts FROM logs WHERE hasToken(lower(message), 'timeout')",
    )
    .await;
    assert!(plan.contains("Name: idx_message"), "{plan}");

    let job_lines: Vec<LogRow> = client
        .query("SELECT ?fields FROM logs WHERE tenant = 'acme' AND job_id = ? ORDER BY ts")
        .bind(job_b)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(job_lines.len(), 1_000);
    assert!(job_lines
        .iter()
        .all(|r| r.job_id == Some(job_b) && r.service == "job"));
    let plan = explain(
        &client,
        &format!("SELECT ts FROM logs WHERE tenant = 'acme' AND job_id = '{job_b}'"),
    )
    .await;
    let (selected, total) = skip_index_granules(&plan, "idx_job_id");
    assert!(selected < total, "the job_id index skips granules: {plan}");

    let by_attribute: u64 = client
        .query("SELECT count() FROM logs WHERE attributes['user'] = 'ada' AND attributes['http.status'] = '500'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(by_attribute, 60_000);
}

async fn explain(client: &clickhouse::Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN indexes = 1 {sql}"))
        .fetch_all::<String>()
        .await
        .unwrap()
        .join("\n")
}

/// `Granules: selected/total` of a skip index in an EXPLAIN indexes = 1 plan.
fn skip_index_granules(plan: &str, index: &str) -> (u64, u64) {
    let after = &plan[plan.find(&format!("Name: {index}")).expect("index in plan")..];
    let granules = after
        .lines()
        .find(|l| l.trim().starts_with("Granules:"))
        .unwrap();
    let (selected, total) = granules.trim()["Granules:".len()..]
        .trim()
        .split_once('/')
        .unwrap();
    (selected.parse().unwrap(), total.parse().unwrap())
}

#[tokio::test]
async fn the_table_refuses_levels_outside_the_contract() {
    let db = migrated().await;
    let now = Utc::now();
    let mut upper = log_row(now, "x", None);
    upper.level = "INFO".into();
    let mut mismatched = log_row(now, "x", None);
    mismatched.severity_number = severity_number("error").unwrap();
    for row in [upper, mismatched] {
        let error = insert_logs(&db.config, &[row]).await.unwrap_err();
        assert!(error.to_string().contains("VIOLATED_CONSTRAINT"), "{error}");
    }
    let mut finer = log_row(now, "x", None);
    finer.severity_number = 10; // INFO2 in OpenTelemetry: still info
    insert_logs(&db.config, &[finer]).await.unwrap();
}

fn event(job_id: Uuid, sequence: u64, event_type: &str) -> JobEventRow {
    let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(sequence as i64);
    JobEventRow {
        tenant: "acme".into(),
        job_id,
        sequence,
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        event_version: 1,
        occurred_at: at,
        actor: "api".into(),
        correlation_id: "req-1".into(),
        job_type: "email.send".into(),
        queue: "mail".into(),
        attempt: u32::from(sequence > 1),
        worker_id: if sequence > 1 { "w-1" } else { "" }.into(),
        error: if event_type == "JobFailed" {
            "smtp timeout"
        } else {
            ""
        }
        .into(),
        reason: String::new(),
        data: format!("{{\"at\":\"{}\"}}", at.to_rfc3339()),
    }
}

#[tokio::test]
async fn job_history_keeps_one_copy_of_a_redelivered_event() {
    let db = migrated().await;
    let job = Uuid::now_v7();
    let history = vec![
        event(job, 1, "JobSubmitted"),
        event(job, 2, "JobStarted"),
        event(job, 3, "JobFailed"),
    ];
    let client = db.config.client();
    // At-least-once delivery: the batch arrives twice.
    for _ in 0..2 {
        let mut insert = client.insert::<JobEventRow>("job_events").await.unwrap();
        for row in &history {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    let read: Vec<JobEventRow> = client
        .query("SELECT ?fields FROM job_events FINAL WHERE tenant = ? AND job_id = ? ORDER BY sequence")
        .bind("acme")
        .bind(job)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(read, history);
}

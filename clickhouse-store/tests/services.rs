//! The service registry, filled by the materialized views on `logs`: lines of two services
//! of two tenants make the right rows, a service silent for longer than the retirement
//! period is retired, and an insert retried with its deduplication token counts once.

mod common;

use chrono::{DateTime, Duration as TimeDelta, DurationRound, Utc};
use common::TestDatabase;
use ordo_clickhouse_store::{active_services, severity_number, LogRow, LogsTable, Migrator};
use std::collections::BTreeMap;

fn line(tenant: &str, service: &str, component: &str, level: &str, at: DateTime<Utc>) -> LogRow {
    LogRow {
        tenant: tenant.into(),
        ts: at,
        service: service.into(),
        env: "prod".into(),
        host: "node-1".into(),
        component: component.into(),
        level: level.into(),
        severity_number: severity_number(level).unwrap(),
        message: format!("{service} says hi"),
        attributes: BTreeMap::new(),
        job_id: None,
        attempt: 0,
        worker_id: String::new(),
        trace_id: String::new(),
        span_id: String::new(),
        received_at: at.duration_trunc(TimeDelta::microseconds(1)).unwrap(),
        kafka_partition: 0,
        kafka_offset: 0,
    }
}

#[tokio::test]
async fn lines_of_two_services_and_two_tenants_register_each_service() {
    let db = TestDatabase::new();
    Migrator::embedded().run(&db.config).await.expect("migrate");
    let logs = LogsTable::new(&db.config);
    let now = Utc::now();
    let first = now - TimeDelta::minutes(30);
    // acme: checkout (3 lines, 1 error) and search (2 lines, 1 fatal); globex: checkout
    // (1 line); and an old service of acme, silent for 10 days.
    let rows = vec![
        line("acme", "checkout", "payments", "info", first),
        line(
            "acme",
            "checkout",
            "payments",
            "error",
            now - TimeDelta::minutes(10),
        ),
        line("acme", "checkout", "payments", "warn", now),
        line("acme", "search", "", "info", first),
        line("acme", "search", "", "fatal", now),
        line("globex", "checkout", "payments", "debug", now),
        line("acme", "legacy", "", "info", now - TimeDelta::days(10)),
    ];
    logs.insert(&rows, "first").await.unwrap();
    // The same insert retried (its first try landed): dropped, registry included.
    logs.insert(&rows, "first").await.unwrap();

    let services = active_services(&db.config, 7, None).await.unwrap();
    let seen: Vec<_> = services
        .iter()
        .map(|s| {
            (
                s.tenant.as_str(),
                s.service.as_str(),
                s.component.as_str(),
                s.lines_24h,
                s.errors_24h,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("acme", "checkout", "payments", 3, 1),
            ("acme", "search", "", 2, 1),
            ("globex", "checkout", "payments", 1, 0),
        ],
        "legacy is retired after 7 days of silence"
    );
    let checkout = &services[0];
    assert_eq!(checkout.env, "prod");
    assert_eq!(checkout.first_seen, rows[0].received_at);
    assert_eq!(checkout.last_seen, rows[2].received_at);
    // The delay is the insert's time minus received_at: 30 minutes for the first line.
    assert!(checkout.delay_ms_max_24h >= 30 * 60 * 1_000, "{checkout:?}");
    assert!(checkout.delay_ms_avg_24h > 0.0, "{checkout:?}");

    let with_legacy = active_services(&db.config, 30, Some("acme")).await.unwrap();
    let names: Vec<_> = with_legacy.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["checkout", "legacy", "search"]);
    let legacy = &with_legacy[1];
    assert_eq!(
        (legacy.lines_24h, legacy.errors_24h),
        (0, 0),
        "its lines arrived 10 days ago, outside the last 24 hours"
    );

    let stored: u64 = db
        .client()
        .query("SELECT count() FROM logs")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(stored, rows.len() as u64);
}

//! `ordo dev` as a user starts it: one process with the command API, the query API and the
//! log ingest on one port, the relay, the projectors (Redis views, ClickHouse logs and
//! history), the reaper and a worker, on a scratch database, a fresh topic, a Redis prefix
//! and a ClickHouse database of the test's own. Read-your-writes: a command's `sequence` handed
//! to the query API as `min_sequence` returns the state the command produced.

mod common;

use common::platform::DevProcess;
use common::read_model::TestPrefix;
use common::TestDb;
use ordo_protocol::logs::{Level, LogBatch};
use ordo_testkit::kafka::{read_topic, Consumed};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_commands_sequence_returns_the_state_the_command_made() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[]).await;
    let api = dev.api();

    let id = api
        .submit_job(
            &json!({"type": "report.build", "queue": "reports", "labels": {"team": "data"}}),
        )
        .await;
    // The consumer group forms within seconds; the read waits for it (up to 20 s here).
    let view = api
        .get_json(&format!("/api/v1/jobs/{id}?min_sequence=1&wait_ms=20000"))
        .await;
    assert_eq!(view["status"], "QUEUED", "{view}");
    assert_eq!(view["sequence"], 1);
    assert_eq!(view["queue"], "reports");

    let cancelled = api
        .post_ok(
            &format!("/api/v1/jobs/{id}/cancel"),
            &json!({"reason": "not needed"}),
        )
        .await;
    let sequence = cancelled["sequence"].as_u64().unwrap();
    let view = api
        .get_json(&format!("/api/v1/jobs/{id}?min_sequence={sequence}"))
        .await;
    assert_eq!(view["status"], "CANCELLED", "{view}");
    assert_eq!(view["sequence"], sequence);
    assert_eq!(view["cancel_reason"], "not needed");

    // The same port serves the query side's lists and counts.
    let stats = api.get_json("/api/v1/stats").await;
    assert_eq!(stats["by_status"]["CANCELLED"], 1, "{stats}");
    let queues = api.get_json("/api/v1/queues").await;
    assert!(queues.to_string().contains("reports"), "{queues}");

    // And the log ingest: a service's line lands on the logs topic.
    let accepted = api
        .post_ok(
            "/api/v1/logs",
            &json!({"service": "billing", "message": "invoice sent"}),
        )
        .await;
    assert_eq!(accepted, json!({"accepted": 1}));
    let key = b"default/billing".as_slice();
    let records = read_topic(&dev.logs_topic, Duration::from_secs(20), |r| {
        r.iter().any(|r| r.key.as_deref() == Some(key))
    });
    let record = records
        .iter()
        .find(|r| r.key.as_deref() == Some(key))
        .unwrap();
    let batch = LogBatch::decode(record.value.as_deref().unwrap()).unwrap();
    assert_eq!(batch.lines[0].message, "invoice sent");

    // Log search on the same path (GET beside the ingest's POST), through `ordo logs search`.
    let search = ordo_logs_search(&dev.url, &["invoice", "--since", "1h", "-o", "json"]).await;
    assert!(search.status.success(), "{search:?}");
    let refused = ordo_logs_search(&dev.url, &["invoice level:loud"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("at position 14"), "{stderr}");
    assert!(stderr.contains("\n                ^"), "{stderr}");
}

async fn ordo_logs_search(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["logs", "search", "--api-url", url])
        .args(args)
        .output()
        .await
        .expect("ordo runs")
}

/// `ordo dev` runs a worker on the `default` queue: a job submitted there completes, one
/// that fails once is retried and completes, a permanent failure dead-letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_worker_runs_jobs_retries_them_and_dead_letters() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[("ORDO_RETRY_INITIAL_DELAY_MS", "100")]).await;
    let api = dev.api();
    let wait = Duration::from_secs(30);

    let done = api
        .submit_job(&json!({"type": "sleep", "payload": {"ms": 10}}))
        .await;
    let retried = api
        .submit_job(&json!({"type": "fail", "payload": {"times": 1}}))
        .await;
    let dead = api
        .submit_job(&json!({"type": "fail", "payload": {"times": 1, "retryable": false}}))
        .await;
    let view = api.wait_for_status(&done, "COMPLETED", wait).await;
    assert_eq!(view["attempt"], 1, "{view}");
    // Its log lines reached the logs topic, sent while the attempt ran.
    let job_lines = |records: &[Consumed]| -> Vec<LogBatch> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(done.as_bytes()))
            .map(|r| LogBatch::decode(r.value.as_deref().unwrap()).unwrap())
            .collect()
    };
    let records = read_topic(&dev.logs_topic, wait, |r| {
        job_lines(r).iter().map(|b| b.lines.len()).sum::<usize>() >= 2
    });
    let batches = job_lines(&records);
    let messages: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.lines.iter().map(|l| l.message.as_str()))
        .collect();
    assert_eq!(messages, ["sleeping 10 ms", "woke up"], "{batches:?}");
    assert_eq!(batches[0].attempt, Some(1));
    assert_eq!(batches[0].lines[0].level, Level::Info);
    assert_eq!(batches[0].worker_id.as_deref(), view["worker_id"].as_str());
    // The ClickHouse sinks of the process store its lines and its history.
    let stored = |sql: &'static str| {
        let (client, done) = (dev.clickhouse.client(), done.clone());
        async move {
            client
                .query(sql)
                .bind(done)
                .fetch_one::<u64>()
                .await
                .unwrap_or(0)
        }
    };
    let started = std::time::Instant::now();
    while stored("SELECT count() FROM logs WHERE toString(job_id) = ?").await < 2
        || stored("SELECT count() FROM job_events FINAL WHERE toString(job_id) = ? AND job_type = 'sleep'")
            .await
            < 3
    {
        assert!(started.elapsed() < wait, "the job's lines and events reach ClickHouse");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = api.wait_for_status(&retried, "COMPLETED", wait).await;
    assert_eq!(view["attempt"], 2, "{view}");
    let view = api.wait_for_status(&dead, "DEAD_LETTER", wait).await;
    assert_eq!(view["attempt"], 1, "{view}");
    assert!(
        view["last_error"].as_str().unwrap().contains("fail"),
        "{view}"
    );
}

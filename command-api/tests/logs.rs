//! Job log lines over real HTTP: a scratch database, a Redis key prefix of the test's own for
//! the claim that starts the job, and a topic of the test's own on the local broker, read
//! back with a consumer as the logs projector will.

mod common;

use chrono::{DateTime, Utc};
use common::{kafka_brokers, TestApp};
use ordo_common::kafka::client_config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn topic() -> String {
    format!("ordo.logs.test-{}", Uuid::new_v4().simple())
}

async fn submit(app: &TestApp) -> String {
    app.submit_projected(&json!({"type": "report.build"})).await
}

/// Claims (and so starts) every submitted job as worker `w-1`.
async fn claim(app: &TestApp, jobs: usize) {
    let (status, body) = app
        .post_json(
            "/api/v1/workers/claim",
            &json!({"worker_id": "w-1", "queues": ["default"], "max_jobs": jobs}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), jobs, "{body}");
}

async fn post_logs(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    app.post_json(&format!("/api/v1/jobs/{id}/logs"), &body)
        .await
}

/// The first `n` records of `topic`: (key, JSON value).
async fn read(topic: &str, n: usize) -> Vec<(String, Value)> {
    let consumer: StreamConsumer = client_config(&kafka_brokers())
        .set("group.id", format!("ordo-logs-test-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let mut records = Vec::new();
    while records.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records on {topic}", records.len()))
            .expect("record");
        let key = String::from_utf8(message.key().expect("keyed").to_vec()).unwrap();
        let value = serde_json::from_slice(message.payload().expect("value")).unwrap();
        records.push((key, value));
    }
    records
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

#[tokio::test]
async fn accepted_lines_are_on_the_topic_one_v2_batch_per_request() {
    let topic = topic();
    let app = TestApp::spawn_with_logs(&topic).await;
    let id = submit(&app).await;
    claim(&app, 1).await;

    let before = Utc::now();
    let (status, body) = post_logs(
        &app,
        &id,
        json!({"attempt": 1, "worker_id": "w-1", "lines": [
            {"level": "info", "message": "rendering 3 pages", "ts": "2026-11-21T10:00:00.250Z",
             "fields": {"pages": 3, "format": {"name": "pdf"}}},
            {"level": "ERROR", "message": "page 2: font missing ü"},
        ]}),
    )
    .await;
    assert_eq!((status, &body), (202, &json!({"accepted": 2})));
    let (status, body) = post_logs(
        &app,
        &id,
        json!({"attempt": 1, "lines": [{"level": "fatal", "message": "", "fields": null}]}),
    )
    .await;
    assert_eq!((status, &body), (202, &json!({"accepted": 1})));
    let after = Utc::now();

    let mut records = read(&topic, 2).await;
    for (key, value) in &mut records {
        assert_eq!(key, &id, "keyed by job id");
        let received_at = time(&value["received_at"]);
        assert!(before <= received_at && received_at <= after, "{value}");
        let batch = value.as_object_mut().unwrap();
        batch.remove("received_at");
        for line in batch["lines"].as_array_mut().unwrap() {
            let ts = time(&line["ts"]);
            if ts != "2026-11-21T10:00:00.250Z".parse::<DateTime<Utc>>().unwrap() {
                // Without a ts the line is stamped when it arrived.
                assert!(before <= ts && ts <= after, "{line}");
            }
            line.as_object_mut().unwrap().remove("ts");
        }
    }
    let batch = |worker: Value, lines: Value| {
        json!({"v": 2, "tenant": "default", "service": "job", "source": "job", "job_id": id,
               "attempt": 1, "worker_id": worker, "lines": lines})
    };
    let values: Vec<Value> = records.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [
            batch(
                json!("w-1"),
                json!([
                    {"level": "info", "severity_number": 9, "message": "rendering 3 pages",
                     "attributes": {"pages": "3", "format.name": "pdf"}},
                    {"level": "error", "severity_number": 17, "message": "page 2: font missing ü",
                     "attributes": {}},
                ])
            ),
            batch(
                Value::Null,
                json!([{"level": "fatal", "severity_number": 21, "message": "", "attributes": {}}])
            ),
        ]
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ordo_log_lines_accepted_total{protocol=\"job\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn only_the_running_attempt_may_write_lines() {
    let topic = topic();
    let app = TestApp::spawn_with_logs(&topic).await;
    let first = submit(&app).await;
    let second = submit(&app).await;
    let line = |attempt: u32, message: &str| json!({"attempt": attempt, "lines": [{"level": "info", "message": message}]});

    let (status, body) = post_logs(&app, &first, line(1, "not started yet")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], "QUEUED");
    assert!(
        body["detail"].as_str().unwrap().contains("QUEUED"),
        "{body}"
    );

    claim(&app, 2).await;
    let (status, body) = post_logs(&app, &first, line(2, "another attempt")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], "RUNNING");
    assert!(
        body["detail"].as_str().unwrap().contains("attempt 2"),
        "{body}"
    );
    assert_eq!(post_logs(&app, &first, line(1, "first")).await.0, 202);

    let (status, body) = app
        .post_json(
            &format!("/api/v1/jobs/{first}/complete"),
            &json!({"attempt": 1, "result": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_logs(&app, &first, line(1, "after the end")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], "COMPLETED");
    assert_eq!(post_logs(&app, &second, line(1, "second")).await.0, 202);

    // One partition keeps the order of production: nothing refused is between the two.
    let messages: Vec<(String, Value)> = read(&topic, 2).await;
    assert_eq!(
        messages
            .iter()
            .map(|(key, value)| (key.as_str(), value["lines"][0]["message"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [(first.as_str(), "first"), (second.as_str(), "second")]
    );
}

#[tokio::test]
async fn unknown_jobs_and_jobs_of_other_tenants_are_not_found() {
    let app = TestApp::spawn_with_logs(&topic()).await;
    let id = submit(&app).await;
    claim(&app, 1).await;
    let body = json!({"attempt": 1, "lines": [{"level": "info", "message": "hi"}]});

    for path in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let (status, problem) = post_logs(&app, &path, body.clone()).await;
        assert_eq!(
            (status, problem["type"].as_str()),
            (404, Some("/problems/not-found")),
            "{problem}"
        );
    }
    let response = app
        .post(&format!("/api/v1/jobs/{id}/logs"))
        .header("x-ordo-tenant", "other")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn malformed_lines_are_refused_naming_the_field() {
    let app = TestApp::spawn_with_logs(&topic()).await;
    let id = submit(&app).await;
    claim(&app, 1).await;
    let info = json!({"level": "info", "message": "x"});
    let cases = [
        (json!([{"level": "loud", "message": "x"}]), "lines[0].level"),
        (json!([]), "lines"),
        (Value::Array(vec![info.clone(); 1001]), "lines"),
        (
            json!([info, {"level": "info", "message": "x".repeat(16 * 1024 + 1)}]),
            "lines[1].message",
        ),
        (
            json!([{"level": "info", "message": "a\u{0}b"}]),
            "lines[0].message",
        ),
        (
            json!([{"level": "info", "message": "x", "fields": [1]}]),
            "lines[0].fields",
        ),
        (
            json!([{"level": "info", "message": "x", "fields": {"k": "v".repeat(16 * 1024)}}]),
            "lines[0].fields",
        ),
        (
            json!([{"level": "info", "message": "x", "colour": "red"}]),
            "lines[0]",
        ),
    ];
    for (lines, field) in cases {
        let (status, problem) = post_logs(&app, &id, json!({"attempt": 1, "lines": lines})).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["type"], "/problems/validation-error");
        assert!(
            problem["field"].as_str().unwrap().starts_with(field),
            "{field}: {problem}"
        );
        assert!(problem["reason"].is_string(), "{problem}");
    }
    let (status, problem) = post_logs(
        &app,
        &id,
        json!({"attempt": 1, "worker_id": "w 1", "lines": [info]}),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("worker_id"))
    );
    let (status, problem) = post_logs(&app, &id, json!({"lines": [info]})).await;
    assert_eq!(status, 422, "attempt is required: {problem}");
}

#[tokio::test]
async fn without_a_log_sink_lines_are_unavailable() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit(&app).await;
    claim(&app, 1).await;
    let response = app
        .post(&format!("/api/v1/jobs/{id}/logs"))
        .json(&json!({"attempt": 1, "lines": [{"level": "info", "message": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ORDO_KAFKA_BROKERS"),
        "{problem}"
    );
}

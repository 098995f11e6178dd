//! Bulk submit, `POST /api/v1/jobs/batch`, over real HTTP against a real PostgreSQL: results in
//! request order, each job created or refused on its own, idempotency within and across
//! batches, the limits of the request, tenancy, and that a failing store creates nothing.

mod common;

use common::TestApp;
use ordo_command_api::ApiConfig;
use ordo_testkit::http::{problem_of, send, success};
use ordo_worker::NewJob;
use serde_json::{json, Value};
use std::time::Duration;

const BATCH: &str = "/api/v1/jobs/batch";

/// Posts `jobs` as a batch; the answer must be 200; returns its results.
async fn batch(app: &TestApp, jobs: Value) -> Vec<Value> {
    batch_as(app, "default", jobs).await
}

async fn batch_as(app: &TestApp, tenant: &str, jobs: Value) -> Vec<Value> {
    let request = app
        .post(BATCH)
        .header("X-Ordo-Tenant", tenant)
        .json(&json!({ "jobs": jobs }));
    let body = success(send(request).await, 200).await;
    body["results"].as_array().expect("results").clone()
}

fn statuses(results: &[Value]) -> Vec<u64> {
    results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

fn job_id(result: &Value) -> String {
    result["job_id"].as_str().expect("job_id").to_owned()
}

#[tokio::test]
async fn every_job_is_created_and_answered_in_order_with_one_event_and_outbox_row_each() {
    let app = TestApp::spawn().await;
    let jobs: Vec<Value> = (0..50)
        .map(|i| json!({"type": "email.send", "payload": {"n": i}, "queue": "mail"}))
        .collect();
    let results = batch(&app, json!(jobs)).await;

    assert_eq!(statuses(&results), vec![201; 50]);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["sequence"], 1, "{result}");
        assert_eq!(result["job_status"], "QUEUED", "{result}");
        let events = app.events(&job_id(result)).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event_type"], "JobSubmitted");
        // The result at position i is the job sent at position i.
        assert_eq!(
            events[0]["data"]["spec"]["payload"]["n"], i,
            "{}",
            events[0]
        );
    }
    assert_eq!(app.rows_written().await, (50, 50));
    let outbox_jobs = app
        .db
        .count("SELECT count(DISTINCT aggregateid) FROM outbox")
        .await;
    assert_eq!(outbox_jobs, 50);
}

#[tokio::test]
async fn an_invalid_job_is_refused_alone_and_the_others_are_created() {
    let app = TestApp::spawn().await;
    let results = batch(
        &app,
        json!([
            {"type": "email.send"},
            {"type": "not a type"},
            {"type": "email.send", "priority": "high"},
            {"type": "email.send", "colour": "red"},
            "not an object",
            {"type": "email.send", "idempotency_key": ""},
            {"type": "email.send", "run_at": "2999-01-01T00:00:00Z"},
        ]),
    )
    .await;

    assert_eq!(statuses(&results), vec![201, 422, 422, 422, 422, 422, 201]);
    let fields: Vec<&Value> = results.iter().map(|r| &r["problem"]["field"]).collect();
    assert_eq!(fields[1], "type");
    assert_eq!(fields[2], "priority");
    assert_eq!(fields[4], "job");
    assert_eq!(fields[5], "idempotency_key");
    for refused in &results[1..6] {
        assert_eq!(refused["problem"]["type"], "/problems/validation-error");
        assert_eq!(refused["problem"]["status"], 422);
        assert!(refused.get("job_id").is_none(), "{refused}");
    }
    assert!(results[3]["problem"]["detail"]
        .as_str()
        .unwrap()
        .contains("colour"));
    assert_eq!(results[6]["job_status"], "PENDING");
    assert_eq!(app.rows_written().await, (2, 2));
}

#[tokio::test]
async fn idempotency_keys_replay_across_batches_and_refuse_a_different_job() {
    let app = TestApp::spawn().await;
    let first = batch(
        &app,
        json!([
            {"type": "email.send", "idempotency_key": "a"},
            {"type": "email.send", "idempotency_key": "b", "payload": {"x": 1}},
        ]),
    )
    .await;
    assert_eq!(statuses(&first), vec![201, 201]);

    let again = batch(
        &app,
        json!([
            {"type": "email.send", "idempotency_key": "b", "payload": {"x": 1.0}},
            {"type": "email.send", "idempotency_key": "c"},
            {"type": "email.send", "idempotency_key": "a", "queue": "other"},
            {"type": "email.send", "idempotency_key": "a"},
        ]),
    )
    .await;
    assert_eq!(statuses(&again), vec![200, 201, 422, 200]);
    assert_eq!(job_id(&again[0]), job_id(&first[1]));
    assert_eq!(job_id(&again[3]), job_id(&first[0]));
    assert_eq!(
        again[2]["problem"]["type"],
        "/problems/idempotency-key-reused"
    );
    assert_eq!(app.rows_written().await, (3, 3));

    // The single submit sees the batch's keys too: the key is one per tenant.
    let single = app
        .post("/api/v1/jobs")
        .header("Idempotency-Key", "c")
        .json(&json!({"type": "email.send"}));
    let answer = success(send(single).await, 200).await;
    assert_eq!(answer["job_id"], again[1]["job_id"]);
}

#[tokio::test]
async fn a_key_repeated_within_one_batch_creates_one_job() {
    let app = TestApp::spawn().await;
    let results = batch(
        &app,
        json!([
            {"type": "email.send", "idempotency_key": "k"},
            {"type": "email.send"},
            {"type": "email.send", "idempotency_key": "k"},
            {"type": "sms.send", "idempotency_key": "k"},
        ]),
    )
    .await;

    assert_eq!(statuses(&results), vec![201, 201, 200, 422]);
    assert_eq!(job_id(&results[2]), job_id(&results[0]));
    assert_eq!(
        results[3]["problem"]["type"],
        "/problems/idempotency-key-reused"
    );
    assert_eq!(app.rows_written().await, (2, 2));
}

#[tokio::test]
async fn a_key_existing_from_a_single_submit_is_replayed_by_a_batch() {
    let app = TestApp::spawn().await;
    let single = app
        .post("/api/v1/jobs")
        .header("Idempotency-Key", "order-1")
        .json(&json!({"type": "email.send"}));
    let created = success(send(single).await, 201).await;

    let results = batch(
        &app,
        json!([
            {"type": "email.send"},
            {"type": "email.send", "idempotency_key": "order-1"},
        ]),
    )
    .await;
    assert_eq!(statuses(&results), vec![201, 200]);
    assert_eq!(results[1]["job_id"], created["job_id"]);
    assert_eq!(app.rows_written().await, (2, 2));
}

#[tokio::test]
async fn concurrent_batches_with_the_same_keys_create_each_job_once() {
    let app = TestApp::spawn().await;
    let jobs: Vec<Value> = (0..20)
        .map(|i| json!({"type": "email.send", "idempotency_key": format!("race-{i}")}))
        .collect();
    let jobs = json!(jobs);
    let answers = futures::future::join_all((0..4).map(|_| batch(&app, jobs.clone()))).await;

    for i in 0..20 {
        let created = answers.iter().filter(|a| a[i]["status"] == 201).count();
        let repeated = answers.iter().filter(|a| a[i]["status"] == 200).count();
        assert_eq!((created, repeated), (1, 3), "job {i}: {answers:?}");
        assert!(answers
            .iter()
            .all(|a| a[i]["job_id"] == answers[0][i]["job_id"]));
    }
    assert_eq!(app.rows_written().await, (20, 20));
}

#[tokio::test]
async fn jobs_belong_to_the_tenant_of_the_header_and_keys_are_scoped_to_it() {
    let app = TestApp::spawn().await;
    let job = json!([{"type": "email.send", "idempotency_key": "same"}]);
    let ours = batch(&app, job.clone()).await;
    let theirs = batch_as(&app, "other", job).await;

    assert_eq!(statuses(&ours), vec![201]);
    assert_eq!(statuses(&theirs), vec![201]);
    assert_ne!(ours[0]["job_id"], theirs[0]["job_id"]);
    let tenant: String = sqlx::query_scalar("SELECT tenant FROM outbox WHERE aggregateid = $1")
        .bind(job_id(&theirs[0]))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(tenant, "other");
    // The other tenant's job is not found from the default tenant.
    let history = send(app.get(&format!("/api/v1/jobs/{}/events", job_id(&theirs[0])))).await;
    assert_eq!(history.status(), 404);
}

#[tokio::test]
async fn an_empty_or_oversized_batch_is_refused_whole() {
    let app = TestApp::spawn().await;
    let empty = send(app.post(BATCH).json(&json!({"jobs": []}))).await;
    let body = problem_of(empty, 422, "validation-error").await;
    assert_eq!(body["field"], "jobs");

    let jobs: Vec<Value> = (0..1_001).map(|_| json!({"type": "email.send"})).collect();
    let over = send(app.post(BATCH).json(&json!({ "jobs": jobs }))).await;
    let body = problem_of(over, 422, "validation-error").await;
    assert!(body["detail"].as_str().unwrap().contains("1000"), "{body}");

    let missing = send(app.post(BATCH).json(&json!({"job": []}))).await;
    problem_of(missing, 422, "validation-error").await;
    assert_eq!(app.rows_written().await, (0, 0));
}

#[tokio::test]
async fn malformed_json_is_a_400_and_an_oversized_body_a_413() {
    let app = TestApp::spawn_with(ApiConfig {
        batch_body_limit_bytes: 4096,
        ..Default::default()
    })
    .await;
    let malformed = app
        .post(BATCH)
        .header("Content-Type", "application/json")
        .body(r#"{"jobs": [{"type": "email.send"}"#);
    problem_of(send(malformed).await, 400, "malformed-json").await;

    let jobs: Vec<Value> = (0..300).map(|_| json!({"type": "email.send"})).collect();
    let big = send(app.post(BATCH).json(&json!({ "jobs": jobs }))).await;
    let body = problem_of(big, 413, "payload-too-large").await;
    assert!(body["detail"].as_str().unwrap().contains("4096"), "{body}");
    assert_eq!(app.rows_written().await, (0, 0));
}

#[tokio::test]
async fn a_thousand_typical_jobs_fit_the_default_limits() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(1_000);
    let jobs: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({
                "type": "email.send",
                "queue": "mail",
                "payload": {"n": i, "data": padding},
                "labels": {"team": "growth"},
                "idempotency_key": format!("job-{i}"),
            })
        })
        .collect();
    let results = batch(&app, json!(jobs)).await;
    assert_eq!(statuses(&results), vec![201; 1_000]);
    assert_eq!(app.rows_written().await, (1_000, 1_000));
}

#[tokio::test]
async fn the_worker_sdk_submits_a_batch() {
    let app = TestApp::spawn().await;
    let client = ordo_worker::ApiClient::new(&app.url, "acme", Duration::from_secs(10)).unwrap();
    let jobs = vec![
        NewJob {
            job_type: "report.build".into(),
            payload: Some(json!({"month": 11})),
            idempotency_key: Some("report-11".into()),
            ..Default::default()
        },
        NewJob {
            job_type: "bad type".into(),
            ..Default::default()
        },
    ];
    let results = client.submit_batch(&jobs).await.unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].status, 201);
    assert!(results[0].is_success());
    assert_eq!(results[1].status, 422);
    assert_eq!(results[1].problem.as_ref().unwrap()["field"], "type");

    let again = client.submit_batch(&jobs[..1]).await.unwrap();
    assert_eq!(again[0].status, 200);
    assert_eq!(again[0].job_id, results[0].job_id);
    let tenant: String = sqlx::query_scalar("SELECT tenant FROM outbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(tenant, "acme");

    // A refused request is the client's error.
    let none = client.submit_batch(&[]).await;
    assert!(
        matches!(none, Err(ordo_worker::ClientError::Refused { status, .. }) if status == 422),
        "{none:?}"
    );
}

#[tokio::test]
async fn a_failing_store_creates_none_of_the_batch() {
    let app = TestApp::spawn().await;
    // The events rows would insert; the outbox rows of the same statement cannot.
    sqlx::query("ALTER TABLE outbox RENAME TO outbox_away")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let jobs = json!({"jobs": [{"type": "email.send"}, {"type": "email.send"}]});
    let response = send(app.post(BATCH).json(&jobs)).await;
    assert_eq!(response.status(), 500);
    sqlx::query("ALTER TABLE outbox_away RENAME TO outbox")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(app.rows_written().await, (0, 0));

    // An unreachable store is a 503 the client may retry.
    app.state.pool.close().await;
    let response = send(app.post(BATCH).json(&jobs)).await;
    problem_of(response, 503, "unavailable").await;
}

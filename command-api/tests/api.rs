//! Black-box tests of the command API over real HTTP against a real PostgreSQL: status codes,
//! `application/problem+json` errors, idempotency, tenancy, concurrency and the invariant that
//! a refused request writes neither events nor outbox rows.

mod common;

use common::TestApp;
use ordo_command_api::{router, ApiConfig, AppState};
use ordo_common::db::{self, DbConfig};
use ordo_domain::spec::WorkerId;
use ordo_domain::{JobCommand, JobServices};
use ordo_testkit::domain::{metadata, tenant};
use ordo_testkit::http::{content_type, problem, problem_of, send, success};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const JOBS: &str = "/api/v1/jobs";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn job_id_of(body: &Value) -> Uuid {
    body["job_id"]
        .as_str()
        .expect("job_id is a string")
        .parse()
        .expect("job_id is a UUID")
}

/// Submits `body` and expects a freshly created job; returns its id.
async fn create(app: &TestApp, body: &Value) -> Uuid {
    let created = success(app.submit(body).await, 201).await;
    job_id_of(&created)
}

async fn create_simple(app: &TestApp) -> Uuid {
    create(app, &json!({"type": "email.send"})).await
}

fn cancel_path(id: impl std::fmt::Display) -> String {
    format!("{JOBS}/{id}/cancel")
}

fn requeue_path(id: impl std::fmt::Display) -> String {
    format!("{JOBS}/{id}/requeue")
}

fn events_path(id: impl std::fmt::Display) -> String {
    format!("{JOBS}/{id}/events")
}

/// The job's history as served by `GET /api/v1/jobs/{id}/events`.
async fn events(app: &TestApp, id: Uuid) -> Vec<Value> {
    let body = success(send(app.get(&events_path(id))).await, 200).await;
    assert_eq!(job_id_of(&body), id);
    body["events"].as_array().expect("events array").clone()
}

/// The value of header `name` of `resp` ("" without it).
fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map_or("", |v| v.to_str().expect("visible ASCII"))
}

fn event_types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().expect("event_type"))
        .collect()
}

/// Runs `request`, expects the problem `status`/`kind`, and checks nothing was written.
async fn refused(
    app: &TestApp,
    request: reqwest::RequestBuilder,
    status: u16,
    kind: &str,
) -> Value {
    let before = app.rows_written().await;
    let body = problem_of(send(request).await, status, kind).await;
    assert_eq!(
        app.rows_written().await,
        before,
        "a refused request wrote rows: {body}"
    );
    body
}

/// Submits `body`, expects 422 naming `field`, and checks nothing was written.
async fn invalid(app: &TestApp, body: Value, field: &str) -> Value {
    let request = app.post(JOBS).json(&body);
    let problem = refused(app, request, 422, "validation-error").await;
    assert_eq!(problem["field"], field, "body {body}: {problem}");
    problem
}

/// Drives a fresh job with `max_attempts: 1` through start and a failure into DEAD_LETTER.
async fn dead_lettered_job(app: &TestApp) -> Uuid {
    let id = create(app, &json!({"type": "email.send", "max_attempts": 1})).await;
    let bus = &app.state.bus;
    let started = bus
        .execute(
            id,
            &tenant("default"),
            JobCommand::Start {
                worker_id: WorkerId::parse("w1").unwrap(),
                attempt: 1,
                lease_expires_at: chrono::Utc::now() + chrono::Duration::seconds(60),
            },
            metadata("default"),
        )
        .await
        .expect("start");
    assert_eq!(started.sequence, 2);
    let failed = bus
        .execute(
            id,
            &tenant("default"),
            JobCommand::Fail {
                attempt: 1,
                error: "boom".into(),
                retryable: true,
            },
            metadata("default"),
        )
        .await
        .expect("fail");
    assert_eq!(failed.status, ordo_domain::JobStatus::DeadLetter);
    assert_eq!(failed.sequence, 4);
    id
}

// ---------------------------------------------------------------------------------------------
// Submit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn submit_creates_a_queued_job_with_a_location() {
    let app = TestApp::spawn().await;
    let resp = app.submit(&json!({"type": "email.send"})).await;
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned();
    let body = success(resp, 201).await;
    let id = job_id_of(&body);
    assert_eq!(body["status"], "QUEUED");
    assert_eq!(body["sequence"], 1);
    assert_eq!(location, format!("{JOBS}/{id}"));
    assert_eq!(app.rows_written().await, (1, 1));
}

#[tokio::test]
async fn submit_with_a_future_run_at_is_pending() {
    let app = TestApp::spawn().await;
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = success(
        app.submit(&json!({"type": "report.build", "run_at": run_at}))
            .await,
        201,
    )
    .await;
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["sequence"], 1);
}

#[tokio::test]
async fn submit_applies_defaults() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let history = events(&app, id).await;
    assert_eq!(event_types(&history), ["JobSubmitted"]);
    let submitted = &history[0];
    assert_eq!(submitted["sequence"], 1);
    assert_eq!(submitted["tenant"], "default");
    assert_eq!(submitted["actor"], "anonymous");
    let spec = &submitted["data"]["spec"];
    assert_eq!(spec["type"], "email.send");
    assert_eq!(spec["name"], "email.send", "name defaults to the type");
    assert_eq!(spec["queue"], "default");
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["payload"], json!({}));
    assert_eq!(spec["run_at"], Value::Null);
    assert_eq!(spec["timeout_secs"], 300);
    assert_eq!(spec["labels"], json!({}));
    assert_eq!(
        spec["retry"],
        json!({
            "max_attempts": 3,
            "initial_delay_ms": 1000,
            "multiplier": 2.0,
            "max_delay_ms": 300000
        })
    );
}

#[tokio::test]
async fn submit_keeps_the_given_fields() {
    let app = TestApp::spawn().await;
    let id = create(
        &app,
        &json!({
            "type": "email.send",
            "name": "welcome mail",
            "queue": "mail",
            "payload": {"to": "a@example.com"},
            "priority": 9,
            "max_attempts": 5,
            "backoff": {"initial_delay_ms": 10, "multiplier": 3.0, "max_delay_ms": 1000},
            "timeout_secs": 30,
            "labels": {"team": "growth"}
        }),
    )
    .await;
    let history = events(&app, id).await;
    let spec = &history[0]["data"]["spec"];
    assert_eq!(spec["name"], "welcome mail");
    assert_eq!(spec["queue"], "mail");
    assert_eq!(spec["payload"], json!({"to": "a@example.com"}));
    assert_eq!(spec["priority"], 9);
    assert_eq!(spec["timeout_secs"], 30);
    assert_eq!(spec["labels"], json!({"team": "growth"}));
    assert_eq!(
        spec["retry"],
        json!({"max_attempts": 5, "initial_delay_ms": 10, "multiplier": 3.0, "max_delay_ms": 1000})
    );
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_key_replays_the_same_job() {
    let app = TestApp::spawn().await;
    let body = json!({"type": "email.send", "payload": {"n": 1}});
    let first = success(
        send(
            app.post(JOBS)
                .header("Idempotency-Key", "order-42")
                .json(&body),
        )
        .await,
        201,
    )
    .await;
    let rows = app.rows_written().await;
    assert_eq!(rows, (1, 1));

    let replay = send(
        app.post(JOBS)
            .header("Idempotency-Key", "order-42")
            .json(&body),
    )
    .await;
    let location = replay.headers().get(LOCATION).cloned();
    let replay = success(replay, 200).await;
    assert_eq!(replay["job_id"], first["job_id"]);
    assert_eq!(replay["status"], "QUEUED");
    assert_eq!(replay["sequence"], 1);
    assert_eq!(
        location.expect("Location on a replay").to_str().unwrap(),
        format!("{JOBS}/{}", job_id_of(&first))
    );
    assert_eq!(app.rows_written().await, rows, "a replay writes nothing");
}

/// The replay compares the stored spec (read back from `jsonb`) with the new one as
/// `serde_json::Value`s; `jsonb` rewrites `1e18` (an f64) as `1000000000000000000` (an integer),
/// so the very same body is currently refused as a different one.
#[tokio::test]
async fn idempotency_key_replay_is_insensitive_to_number_representation() {
    let app = TestApp::spawn().await;
    let raw = r#"{"type": "email.send", "payload": {"x": 1e18}}"#;
    let submit = || {
        app.post(JOBS)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", "float-1")
            .body(raw)
    };
    let first = success(send(submit()).await, 201).await;
    let replay = success(send(submit()).await, 200).await;
    assert_eq!(replay["job_id"], first["job_id"]);
}

#[tokio::test]
async fn idempotency_key_with_a_different_body_is_refused() {
    let app = TestApp::spawn().await;
    let key = ("Idempotency-Key", "order-43");
    success(
        send(
            app.post(JOBS)
                .header(key.0, key.1)
                .json(&json!({"type": "email.send", "priority": 1})),
        )
        .await,
        201,
    )
    .await;
    let request = app
        .post(JOBS)
        .header(key.0, key.1)
        .json(&json!({"type": "email.send", "priority": 2}));
    let body = refused(&app, request, 422, "idempotency-key-reused").await;
    assert!(
        body["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{body}"
    );
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_tenant() {
    let app = TestApp::spawn().await;
    let body = json!({"type": "email.send"});
    let first = success(
        send(app.post(JOBS).header("Idempotency-Key", "k-1").json(&body)).await,
        201,
    )
    .await;
    let other = success(
        send(
            app.post(JOBS)
                .header("Idempotency-Key", "k-1")
                .header("X-Ordo-Tenant", "other")
                .json(&body),
        )
        .await,
        201,
    )
    .await;
    assert_ne!(job_id_of(&first), job_id_of(&other));
    assert_eq!(app.rows_written().await, (2, 2));
    let history = success(
        send(
            app.get(&events_path(job_id_of(&other)))
                .header("X-Ordo-Tenant", "other"),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(history["events"][0]["tenant"], "other");
}

// ---------------------------------------------------------------------------------------------
// Request errors: nothing is written
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_and_empty_bodies_are_bad_requests() {
    let app = TestApp::spawn().await;
    for raw in [
        r#"{"type": "email.send""#,
        "{not json}",
        r#"{"type": "email.send",}"#,
        r#"{"type":"a"} x"#,
    ] {
        let request = app
            .post(JOBS)
            .header(CONTENT_TYPE, "application/json")
            .body(raw);
        refused(&app, request, 400, "malformed-json").await;
    }
    let request = app.post(JOBS).header(CONTENT_TYPE, "application/json");
    let body = refused(&app, request, 400, "malformed-json").await;
    assert!(body["detail"].as_str().unwrap().contains("empty"), "{body}");
}

/// serde's derived `Deserialize` also accepts a struct as a JSON array of its fields in order;
/// the API takes JSON objects only.
#[tokio::test]
async fn a_json_array_is_not_a_job() {
    let app = TestApp::spawn().await;
    let raw = r#"["email.send",null,null,null,null,null,null,null,null,null]"#;
    let before = app.rows_written().await;
    let resp = send(
        app.post(JOBS)
            .header(CONTENT_TYPE, "application/json")
            .body(raw),
    )
    .await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 422, "got {status}");
    problem(resp, status).await;
    assert_eq!(app.rows_written().await, before);
}

/// PostgreSQL's `jsonb` cannot hold U+0000, so a NUL in a payload string currently fails the
/// insert and answers 500. It is the client's input: it should be a 422 naming the field.
#[tokio::test]
async fn nul_characters_are_refused_as_invalid() {
    let app = TestApp::spawn().await;
    let raw = r#"{"type": "email.send", "payload": {"s": "a\u0000b"}}"#;
    let request = app
        .post(JOBS)
        .header(CONTENT_TYPE, "application/json")
        .body(raw);
    let body = refused(&app, request, 422, "validation-error").await;
    assert_eq!(body["field"], "payload");
    let id = create_simple(&app).await;
    let request = app
        .post(&cancel_path(id))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"reason": "a\u0000b"}"#);
    let body = refused(&app, request, 422, "validation-error").await;
    assert_eq!(body["field"], "reason");
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let app = TestApp::spawn().await;
    invalid(
        &app,
        json!({"type": "email.send", "priority": 10}),
        "priority",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "priority": -1}),
        "priority",
    )
    .await;
    invalid(&app, json!({"type": "has space"}), "type").await;
    invalid(&app, json!({"type": ""}), "type").await;
    invalid(
        &app,
        json!({"type": "email.send", "priority": "high"}),
        "priority",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "max_attempts": 0}),
        "max_attempts",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "max_attempts": 101}),
        "max_attempts",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "labels": {"bad key": "v"}}),
        "labels.bad key",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "backoff": {"multiplier": 0.5}}),
        "backoff.multiplier",
    )
    .await;
    invalid(
        &app,
        json!({"type": "email.send", "timeout_secs": 0}),
        "timeout_secs",
    )
    .await;
    invalid(&app, json!({"type": "email.send", "queue": "a b"}), "queue").await;
    invalid(&app, json!({"type": "email.send", "name": "  "}), "name").await;

    // An unknown field (a typo) is refused and named in the detail.
    let request = app
        .post(JOBS)
        .json(&json!({"tpye": "email.send", "type": "email.send"}));
    let body = refused(&app, request, 422, "validation-error").await;
    assert!(body["detail"].as_str().unwrap().contains("tpye"), "{body}");

    // A missing required field.
    let request = app.post(JOBS).json(&json!({"queue": "default"}));
    let body = refused(&app, request, 422, "validation-error").await;
    assert!(body["detail"].as_str().unwrap().contains("type"), "{body}");

    assert_eq!(app.rows_written().await, (0, 0));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let app = TestApp::spawn_with(ApiConfig {
        body_limit_bytes: 1024,
        ..Default::default()
    })
    .await;
    let big = json!({"type": "email.send", "payload": {"blob": "x".repeat(2048)}});
    let body = refused(&app, app.post(JOBS).json(&big), 413, "payload-too-large").await;
    assert!(body["detail"].as_str().unwrap().contains("1024"), "{body}");
    // A body under the limit still goes through.
    create_simple(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_unsupported() {
    let app = TestApp::spawn().await;
    let raw = r#"{"type": "email.send"}"#;
    let text = app.post(JOBS).header(CONTENT_TYPE, "text/plain").body(raw);
    let body = refused(&app, text, 415, "unsupported-media-type").await;
    assert!(
        body["detail"].as_str().unwrap().contains("text/plain"),
        "{body}"
    );
    let missing = app.post(JOBS).body(raw);
    refused(&app, missing, 415, "unsupported-media-type").await;
    // `+json` media types and parameters are accepted.
    let resp = send(
        app.post(JOBS)
            .header(CONTENT_TYPE, "application/vnd.ordo+json; charset=utf-8")
            .body(raw),
    )
    .await;
    success(resp, 201).await;
}

#[tokio::test]
async fn bad_headers_are_bad_requests() {
    let app = TestApp::spawn().await;
    let body = json!({"type": "email.send"});
    let request = app
        .post(JOBS)
        .header("X-Ordo-Tenant", "not a tenant")
        .json(&body);
    refused(&app, request, 400, "bad-request").await;
    let request = app.post(JOBS).header("Idempotency-Key", "").json(&body);
    refused(&app, request, 400, "bad-request").await;
    let request = app
        .post(JOBS)
        .header("Idempotency-Key", "k".repeat(201))
        .json(&body);
    refused(&app, request, 400, "bad-request").await;
}

// ---------------------------------------------------------------------------------------------
// Not found, routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_not_found() {
    let app = TestApp::spawn().await;
    create_simple(&app).await;
    let unknown = Uuid::new_v4();
    for id in [unknown.to_string(), "not-a-uuid".to_owned()] {
        refused(&app, app.post(&cancel_path(&id)), 404, "not-found").await;
        refused(&app, app.post(&requeue_path(&id)), 404, "not-found").await;
        refused(&app, app.get(&events_path(&id)), 404, "not-found").await;
    }
}

#[tokio::test]
async fn jobs_of_another_tenant_are_not_found() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let as_b = |r: reqwest::RequestBuilder| r.header("X-Ordo-Tenant", "tenant-b");
    refused(&app, as_b(app.get(&events_path(id))), 404, "not-found").await;
    refused(&app, as_b(app.post(&cancel_path(id))), 404, "not-found").await;
    refused(&app, as_b(app.post(&requeue_path(id))), 404, "not-found").await;
    // The owner still sees an untouched job.
    assert_eq!(event_types(&events(&app, id).await), ["JobSubmitted"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    let body = problem_of(send(app.get("/api/v1/nope")).await, 404, "not-found").await;
    assert!(
        body["detail"].as_str().unwrap().contains("/api/v1/nope"),
        "{body}"
    );
    let resp = send(app.client.delete(format!("{}{JOBS}", app.url))).await;
    let body = problem_of(resp, 405, "method-not-allowed").await;
    assert!(
        body["detail"].as_str().unwrap().contains("DELETE"),
        "{body}"
    );
    problem_of(send(app.get(JOBS)).await, 405, "method-not-allowed").await;
}

// ---------------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_carries_a_request_id_and_problems_name_it() {
    let app = TestApp::spawn().await;
    // The client's id is echoed.
    let resp = send(app.get("/healthz").header("x-request-id", "client-7")).await;
    assert_eq!(header(&resp, "x-request-id"), "client-7");
    // Without one, the server makes a fresh UUID for each request.
    let first = send(app.get("/healthz")).await;
    let second = send(app.get("/healthz")).await;
    let made: Uuid = header(&first, "x-request-id").parse().expect("a UUID");
    assert_ne!(header(&second, "x-request-id"), made.to_string());

    // Problems name the request they answer: from a handler, an extractor, a fallback.
    let resp = send(
        app.post(&cancel_path("nope"))
            .header("x-request-id", "client-8"),
    )
    .await;
    let body = problem_of(resp, 404, "not-found").await;
    assert_eq!(body["request_id"], "client-8", "{body}");
    let resp = send(
        app.post(JOBS)
            .header(CONTENT_TYPE, "text/plain")
            .header("x-request-id", "client-9")
            .body("x"),
    )
    .await;
    assert_eq!(header(&resp, "x-request-id"), "client-9");
    let body = problem_of(resp, 415, "unsupported-media-type").await;
    assert_eq!(body["request_id"], "client-9", "{body}");
    let resp = send(app.get("/nope")).await;
    let id = header(&resp, "x-request-id").to_owned();
    let body = problem_of(resp, 404, "not-found").await;
    assert_eq!(body["request_id"], id.as_str(), "{body}");
}

#[tokio::test]
async fn cancel_without_a_body() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let body = success(send(app.post(&cancel_path(id))).await, 200).await;
    assert_eq!(job_id_of(&body), id);
    assert_eq!(body["status"], "CANCELLED");
    assert_eq!(body["sequence"], 2);
    let history = events(&app, id).await;
    assert_eq!(event_types(&history), ["JobSubmitted", "JobCancelled"]);
    assert_eq!(history[1]["data"]["previous_status"], "QUEUED");
    assert_eq!(history[1]["data"]["reason"], "cancelled by anonymous");
    assert_eq!(app.rows_written().await, (2, 2));
}

#[tokio::test]
async fn cancel_with_a_reason_records_it() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let body = success(
        send(app.post(&cancel_path(id)).json(&json!({"reason": "x"}))).await,
        200,
    )
    .await;
    assert_eq!(body["status"], "CANCELLED");
    let history = events(&app, id).await;
    assert_eq!(history[1]["event_type"], "JobCancelled");
    assert_eq!(history[1]["data"]["reason"], "x");

    // A bad cancel body is refused like a bad submit body.
    let other = create_simple(&app).await;
    let request = app
        .post(&cancel_path(other))
        .json(&json!({"reason": "x".repeat(1001)}));
    let problem = refused(&app, request, 422, "validation-error").await;
    assert_eq!(problem["field"], "reason");
    let request = app
        .post(&cancel_path(other))
        .json(&json!({"reasn": "typo"}));
    refused(&app, request, 422, "validation-error").await;
}

#[tokio::test]
async fn cancelling_twice_is_a_conflict() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    success(send(app.post(&cancel_path(id))).await, 200).await;
    let body = refused(&app, app.post(&cancel_path(id)), 409, "invalid-transition").await;
    assert_eq!(body["current_status"], "CANCELLED");
    assert!(
        body["detail"].as_str().unwrap().contains("CANCELLED"),
        "{body}"
    );
}

#[tokio::test]
async fn requeue_of_a_queued_job_is_a_conflict() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let body = refused(&app, app.post(&requeue_path(id)), 409, "invalid-transition").await;
    assert_eq!(body["current_status"], "QUEUED");
    assert!(
        body["detail"].as_str().unwrap().contains("QUEUED"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Requeue and history
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requeue_of_a_dead_lettered_job_and_its_history() {
    let app = TestApp::spawn().await;
    let id = dead_lettered_job(&app).await;

    let correlation = format!("corr-{}", Uuid::new_v4());
    let body = success(
        send(
            app.post(&requeue_path(id))
                .header("X-Ordo-Actor", "ops@example.com")
                .header("X-Correlation-Id", &correlation),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(job_id_of(&body), id);
    assert_eq!(body["status"], "QUEUED");
    assert_eq!(body["sequence"], 6);

    let history = events(&app, id).await;
    assert_eq!(
        event_types(&history),
        [
            "JobSubmitted",
            "JobStarted",
            "JobFailed",
            "JobDeadLettered",
            "JobRequeued",
            "JobQueued"
        ]
    );
    let mut event_ids = std::collections::HashSet::new();
    for (i, event) in history.iter().enumerate() {
        assert_eq!(event["sequence"], i as u64 + 1, "{event}");
        assert_eq!(event["job_id"], id.to_string(), "{event}");
        assert_eq!(event["tenant"], "default", "{event}");
        assert_eq!(event["event_version"], 1, "{event}");
        let event_id: Uuid = event["event_id"]
            .as_str()
            .expect("event_id")
            .parse()
            .expect("event_id is a UUID");
        assert!(event_ids.insert(event_id), "duplicate event id: {event}");
        for key in ["actor", "correlation_id", "occurred_at"] {
            let value = event[key].as_str().unwrap_or("");
            assert!(!value.is_empty(), "{key} missing: {event}");
        }
    }
    // The headers of the requeue land in both events it wrote, and nowhere else.
    for event in &history[4..] {
        assert_eq!(event["actor"], "ops@example.com", "{event}");
        assert_eq!(event["correlation_id"], correlation, "{event}");
    }
    assert_eq!(history[0]["actor"], "anonymous");
    assert_ne!(history[0]["correlation_id"], correlation);
    assert_eq!(history[1]["data"]["worker_id"], "w1");
    assert_eq!(history[2]["data"]["error"], "boom");
    assert_eq!(history[4]["data"]["cycle"], 2);
    assert_eq!(app.rows_written().await, (6, 6));

    // Every outbox row carries the same envelope the history endpoint serves.
    let outbox: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE aggregateid = $1 ORDER BY sequence")
            .bind(id.to_string())
            .fetch_all(&app.db.pool)
            .await
            .expect("outbox rows");
    assert_eq!(outbox, history);

    // A second requeue of the now queued job is refused.
    let body = refused(&app, app.post(&requeue_path(id)), 409, "invalid-transition").await;
    assert_eq!(body["current_status"], "QUEUED");
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_cancels_of_one_job_have_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    let path = cancel_path(id);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let requests = (0..16).map(|_| {
        let request = app.post(&path);
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            request.send().await.expect("request sent")
        }
    });
    let responses = futures::future::join_all(requests.map(tokio::spawn)).await;
    let mut ok = 0;
    let mut conflicts = 0;
    for resp in responses {
        let resp = resp.expect("task");
        match resp.status().as_u16() {
            200 => {
                let body = success(resp, 200).await;
                assert_eq!(body["status"], "CANCELLED");
                assert_eq!(body["sequence"], 2);
                ok += 1;
            }
            _ => {
                let body = problem(resp, 409).await;
                let kind = body["type"].as_str().unwrap();
                assert!(
                    kind == "/problems/invalid-transition"
                        || kind == "/problems/concurrency-conflict",
                    "{body}"
                );
                conflicts += 1;
            }
        }
    }
    assert_eq!((ok, conflicts), (1, 15));
    let cancelled = app
        .db
        .count("SELECT count(*) FROM events WHERE event_type = 'JobCancelled'")
        .await;
    assert_eq!(cancelled, 1);
    assert_eq!(app.rows_written().await, (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_submits_all_succeed() {
    let app = TestApp::spawn().await;
    let requests = (0..32).map(|i| {
        let request = app
            .post(JOBS)
            .json(&json!({"type": "email.send", "payload": {"i": i}}));
        tokio::spawn(async move { request.send().await.expect("request sent") })
    });
    let mut ids = std::collections::HashSet::new();
    for resp in futures::future::join_all(requests).await {
        let body = success(resp.expect("task"), 201).await;
        assert!(ids.insert(job_id_of(&body)));
    }
    assert_eq!(app.rows_written().await, (32, 32));
}

// ---------------------------------------------------------------------------------------------
// Health, readiness, metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = success(send(app.get("/healthz")).await, 200).await;
    assert_eq!(health["status"], "ok");
    let ready = success(send(app.get("/readyz")).await, 200).await;
    assert_eq!(ready["postgres"], "ok");
}

#[tokio::test]
async fn readiness_reports_each_role_and_fails_while_one_is_not_ready() {
    let app = TestApp::spawn().await;
    let projector = app.state.readiness.role("projector redis-views");
    let ready = success(send(app.get("/readyz")).await, 200).await;
    assert_eq!(ready["roles"], json!({"projector redis-views": null}));

    projector.not_ready("stalled: 3 records to read and the group's offsets have not moved");
    let resp = send(app.get("/readyz")).await;
    assert_eq!(header(&resp, "retry-after"), "1");
    let body = problem_of(resp, 503, "unavailable").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("projector redis-views: stalled"), "{body}");

    projector.ready();
    success(send(app.get("/readyz")).await, 200).await;
}

#[tokio::test]
async fn readiness_fails_without_the_database() {
    let pool = db::connect(&DbConfig {
        url: "postgres://postgres@127.0.0.1:1/x".into(),
        acquire_timeout: Duration::from_secs(1),
        ..DbConfig::new("postgres://postgres@127.0.0.1:1/x")
    })
    .expect("valid url");
    let state = AppState::new(pool, ApiConfig::default(), JobServices::system());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("ephemeral port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let resp = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(header(&resp, "retry-after"), "1");
    let body = problem_of(resp, 503, "unavailable").await;
    assert!(
        body["detail"].as_str().unwrap().contains("postgres"),
        "{body}"
    );
    // Liveness does not depend on the database.
    let resp = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status().as_u16(), 200);
    // A command against the unreachable store is a 503 problem too, not a 500.
    let resp = client
        .post(format!("{url}{JOBS}"))
        .json(&json!({"type": "email.send"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(header(&resp, "retry-after"), "1");
    problem_of(resp, 503, "unavailable").await;
    server.abort();
}

#[tokio::test]
async fn metrics_count_requests_and_commands() {
    let app = TestApp::spawn().await;
    let id = create_simple(&app).await;
    create_simple(&app).await;
    success(send(app.post(&cancel_path(id))).await, 200).await;
    problem(send(app.post(&cancel_path(id))).await, 409).await;
    invalid(
        &app,
        json!({"type": "email.send", "priority": 10}),
        "priority",
    )
    .await;

    let resp = send(app.get("/metrics")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(content_type(&resp).starts_with("text/plain"));
    let text = resp.text().await.expect("metrics text");
    for expected in [
        r#"ordo_http_requests_total{method="POST",route="/api/v1/jobs",status="201"} 2"#,
        r#"ordo_http_requests_total{method="POST",route="/api/v1/jobs",status="422"} 1"#,
        r#"ordo_http_requests_total{method="POST",route="/api/v1/jobs/{id}/cancel",status="409"} 1"#,
        r#"ordo_commands_handled_total{command="submit",outcome="ok"} 2"#,
        r#"ordo_commands_handled_total{command="cancel",outcome="ok"} 1"#,
        r#"ordo_commands_handled_total{command="cancel",outcome="rejected"} 1"#,
        "ordo_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
}

//! The worker protocol over real HTTP, on a scratch database and a Redis key prefix of the
//! test's own. The projector's part (events into the dispatch model) is played by
//! `TestApp::project`, so each test decides what the model has seen.

mod common;

use common::TestApp;
use ordo_read_model::{keys, namespace};
use ordo_testkit::http::{problem_of, send};
use redis::AsyncCommands;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn submit(app: &TestApp, priority: i64) -> String {
    app.submit_projected(
        &json!({"type": "report.build", "queue": "reports", "priority": priority,
                "payload": {"n": priority}, "max_attempts": 2}),
    )
    .await
}

/// A claim answered 503 with `Retry-After` (transient, like every 503: the client hears when
/// to try again) and a detail that says `why`.
async fn claim_unavailable(app: &TestApp, why: &str) {
    let resp = send(
        app.post("/api/v1/workers/claim")
            .json(&json!({"worker_id": "w", "queues": ["reports"]})),
    )
    .await;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap());
    assert_eq!(retry_after, Some("1"));
    let problem = problem_of(resp, 503, "unavailable").await;
    assert!(
        problem["detail"].as_str().unwrap().contains(why),
        "{problem}"
    );
}

/// Submits a job the projector has not seen (unless the app writes through); its id.
async fn submit_unprojected(app: &TestApp) -> String {
    let answer: Value = app
        .submit(&json!({"type": "report.build", "queue": "reports"}))
        .await
        .json()
        .await
        .unwrap();
    answer["job_id"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.post_json(path, &body).await
}

async fn claim(app: &TestApp, max_jobs: u32, wait_ms: u64) -> Vec<Value> {
    let (status, body) = post(
        app,
        "/api/v1/workers/claim",
        json!({"worker_id": "w-1", "queues": ["reports"], "max_jobs": max_jobs, "wait_ms": wait_ms}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["jobs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_claim_starts_the_best_jobs_and_hands_over_their_payload() {
    let app = TestApp::spawn_with_dispatch().await;
    let low = submit(&app, 1).await;
    let high = submit(&app, 8).await;
    let mid = submit(&app, 4).await;

    let first = claim(&app, 2, 0).await;
    let ids: Vec<&str> = first
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [high.as_str(), mid.as_str()]);
    assert_eq!(first[0]["attempt"], 1);
    assert_eq!(first[0]["payload"], json!({"n": 8}));
    assert_eq!(first[0]["type"], "report.build");
    assert_eq!(first[0]["max_attempts"], 2);
    assert_eq!(
        first[0]["sequence"], 2,
        "JobStarted is the job's second event"
    );

    let events = app.events(&high).await;
    assert_eq!(events[1]["event_type"], "JobStarted");
    assert_eq!(events[1]["data"]["worker_id"], "w-1");

    let second = claim(&app, 5, 0).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["job_id"], low.as_str());
    assert!(claim(&app, 5, 0).await.is_empty());
}

#[tokio::test]
async fn complete_and_fail_must_name_the_running_attempt() {
    let app = TestApp::spawn_with_dispatch().await;
    let done = submit(&app, 0).await;
    let failing = submit(&app, 0).await;
    assert_eq!(claim(&app, 2, 0).await.len(), 2);

    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{done}/complete"),
        json!({"attempt": 2, "result": {}}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{done}/complete"),
        json!({"attempt": 1, "result": {"rows": 3}}),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("COMPLETED")));

    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{failing}/fail"),
        json!({"attempt": 1, "error": "timeout talking to smtp"}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("RETRYING")),
        "{body}"
    );
    app.project(&failing, "default").await;
    // The retry is due after its backoff (1 s by default, with jitter); claim it then.
    let retried = claim(&app, 1, 3_000).await;
    assert_eq!(retried[0]["attempt"], 2);
    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{failing}/fail"),
        json!({"attempt": 2, "error": "bad address", "retryable": false}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("DEAD_LETTER")),
        "{body}"
    );
}

#[tokio::test]
async fn a_heartbeat_extends_the_lease_and_reports_a_cancel() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit(&app, 0).await;
    assert_eq!(claim(&app, 1, 0).await.len(), 1);

    let before = chrono::Utc::now();
    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{id}/heartbeat"),
        json!({"attempt": 1, "lease_ms": 60_000}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], false);
    let lease: chrono::DateTime<chrono::Utc> =
        body["lease_expires_at"].as_str().unwrap().parse().unwrap();
    assert!(lease >= before + chrono::Duration::seconds(59), "{lease}");

    let (status, _) = post(
        &app,
        &format!("/api/v1/jobs/{id}/heartbeat"),
        json!({"attempt": 2}),
    )
    .await;
    assert_eq!(status, 409, "a heartbeat for another attempt is stale");

    let (status, _) = post(&app, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{id}/heartbeat"),
        json!({"attempt": 1}),
    )
    .await;
    assert_eq!(
        (status, body["cancelled"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
}

#[tokio::test]
async fn a_claim_waits_for_work_and_skips_what_the_write_side_refuses() {
    let app = TestApp::spawn_with_dispatch().await;
    let started = Instant::now();
    assert!(claim(&app, 1, 300).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Cancelled in the event store, but the model has not seen it: the claim skips the job.
    let cancelled = submit(&app, 9).await;
    let (status, _) = post(&app, &format!("/api/v1/jobs/{cancelled}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let waiting = submit(&app, 0).await;
    let jobs = claim(&app, 2, 0).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["job_id"], waiting.as_str());

    // A job that becomes ready during a long-poll is handed over at once.
    let app = std::sync::Arc::new(app);
    let poller = {
        let app = app.clone();
        tokio::spawn(async move { claim(&app, 1, 5_000).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = submit(&app, 0).await;
    let jobs = poller.await.unwrap();
    assert_eq!(jobs[0]["job_id"], late.as_str());
}

#[tokio::test]
async fn bad_claims_are_refused_and_without_redis_the_protocol_is_unavailable() {
    let app = TestApp::spawn_with_dispatch().await;
    for (body, field) in [
        (json!({"worker_id": "", "queues": ["q"]}), "worker_id"),
        (json!({"worker_id": "w", "queues": []}), "queues"),
        (
            json!({"worker_id": "w", "queues": ["q"], "max_jobs": 0}),
            "max_jobs",
        ),
        (
            json!({"worker_id": "w", "queues": ["q"], "wait_ms": 60_000}),
            "wait_ms",
        ),
        (
            json!({"worker_id": "w", "queues": ["q"], "lease_ms": 10}),
            "lease_ms",
        ),
    ] {
        let (status, problem) = post(&app, "/api/v1/workers/claim", body).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (422, Some(field)),
            "{problem}"
        );
    }
    let without = TestApp::spawn().await;
    claim_unavailable(&without, "Redis").await;
}

/// A worker shutting down gives its attempt back: the job is claimable again at once, under
/// the same attempt number, and the release does not count against `max_attempts`.
#[tokio::test]
async fn a_released_attempt_is_claimed_again_under_its_number() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit(&app, 0).await;
    assert_eq!(claim(&app, 1, 0).await[0]["attempt"], 1);

    let path = format!("/api/v1/jobs/{id}/release");
    let release = |attempt: u32, reason: Value| {
        post(&app, &path, json!({"attempt": attempt, "reason": reason}))
    };
    let (status, body) = release(2, json!("shutting down")).await;
    assert_eq!(status, 409, "another attempt: {body}");
    let (status, body) = release(1, json!("x".repeat(10_001))).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("reason")));
    let (status, body) = release(1, json!("shutting down")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("QUEUED")),
        "{body}"
    );

    app.project(&id, "default").await;
    let again = claim(&app, 1, 0).await;
    assert_eq!((again.len(), &again[0]["attempt"]), (1, &json!(1)));
    // Both attempts of max_attempts 2 are still there: a failure is retried.
    let (status, body) = post(
        &app,
        &format!("/api/v1/jobs/{id}/fail"),
        json!({"attempt": 1, "error": "flaky"}),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("RETRYING")));
    let types: Vec<String> = app
        .events(&id)
        .await
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "JobSubmitted",
            "JobStarted",
            "JobReleased",
            "JobStarted",
            "JobFailed",
            "JobRetryScheduled"
        ]
    );
}

/// A read model that lost its marker (Redis came back empty) or is being rebuilt cannot be
/// trusted to hold every ready job: claims answer 503 with `Retry-After` until it is whole,
/// and then claim again as before.
#[tokio::test]
async fn claims_wait_out_a_lost_or_rebuilding_read_model() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit(&app, 0).await;
    let redis = app.redis.as_ref().expect("spawned with a dispatch model");
    let mut connection = redis.redis.clone();
    namespace::unmark(&mut connection, &redis.prefix)
        .await
        .unwrap();
    let lock = keys::lock(&redis.prefix, keys::REBUILD_LOCK);
    for rebuilding in [false, true] {
        if rebuilding {
            let _: () = connection.set(&lock, "1").await.unwrap();
        }
        claim_unavailable(&app, "rebuilt from the event store").await;
    }
    let _: () = connection.del(&lock).await.unwrap();
    namespace::mark(&mut connection, &redis.prefix, 2, 1)
        .await
        .unwrap();
    let jobs = claim(&app, 1, 0).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job_id"], id.as_str());
}

/// With write-through, a submitted job is claimable the moment its submit answers, without
/// the projector; the projector's later copies of the same events are duplicates, so the job
/// is claimed once.
#[tokio::test]
async fn with_write_through_a_job_is_claimable_at_once_and_claimed_once() {
    let app = TestApp::spawn_with_dispatch().await;
    let redis = app.redis.as_ref().expect("spawned with a dispatch model");
    app.state
        .bus
        .write_through_to(redis.redis.clone(), &redis.prefix);
    let id = submit_unprojected(&app).await;
    // The write lands a round trip after the answer and wakes the waiting claim.
    let jobs = claim(&app, 5, 2_000).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job_id"], id.as_str());
    wait_for_metric(
        &app,
        r#"ordo_write_through_events_total{outcome="applied"} 2"#,
    )
    .await;
    // The projector delivers JobSubmitted and JobStarted afterwards: nothing changes.
    app.project(&id, "default").await;
    assert!(claim(&app, 5, 0).await.is_empty(), "claimed twice");
}

/// Waits (up to 2 s) until the app's `/metrics` has the line `sample`.
async fn wait_for_metric(app: &TestApp, sample: &str) {
    let began = Instant::now();
    loop {
        let metrics = app.metrics().await;
        if metrics.lines().any(|line| line == sample) {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "no {sample} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API died between a commit and its write-through, or wrote through nothing: the job
/// waits for the projector, which makes it claimable, once.
#[tokio::test]
async fn without_write_through_the_projector_alone_makes_a_job_claimable() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit_unprojected(&app).await;
    assert!(claim(&app, 5, 0).await.is_empty(), "not projected yet");
    app.project(&id, "default").await;
    let jobs = claim(&app, 5, 0).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(claim(&app, 5, 0).await.is_empty(), "claimed twice");
}

/// A Redis that accepts connections and never answers neither fails nor holds up a command:
/// the write-through gives up after its bound and the projector is left to write the events.
#[tokio::test]
async fn a_hung_redis_neither_fails_nor_holds_up_a_command() {
    let app = TestApp::spawn_with_dispatch().await;
    // Answers the client's connection handshake (`CLIENT SETINFO`), then nothing ever again.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = silent.accept().await {
            let mut handshake = vec![0; 4096];
            let read = socket.read(&mut handshake).await.unwrap_or(0);
            let commands = String::from_utf8_lossy(&handshake[..read])
                .matches("SETINFO")
                .count();
            let _ = socket
                .write_all("+OK\r\n".repeat(commands).as_bytes())
                .await;
            held.push(socket);
        }
    });
    let client = redis::Client::open(format!("redis://{address}")).unwrap();
    let hung = redis::aio::ConnectionManager::new(client).await.unwrap();
    app.state.bus.write_through_to(hung, "hung");
    let began = Instant::now();
    let resp = app
        .submit(&json!({"type": "report.build", "queue": "reports"}))
        .await;
    assert_eq!(resp.status(), 201);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    wait_for_metric(
        &app,
        r#"ordo_write_through_events_total{outcome="failed"} 1"#,
    )
    .await;
}

/// Jobs of a bulk submit are written through too: claimable at once, each once.
#[tokio::test]
async fn with_write_through_a_batch_is_claimable_at_once() {
    let app = TestApp::spawn_with_dispatch().await;
    let redis = app.redis.as_ref().expect("spawned with a dispatch model");
    app.state
        .bus
        .write_through_to(redis.redis.clone(), &redis.prefix);
    let job = json!({"type": "report.build", "queue": "reports"});
    let (status, body) = post(&app, "/api/v1/jobs/batch", json!({"jobs": [job, job, job]})).await;
    assert_eq!(status, 200, "{body}");
    wait_for_metric(
        &app,
        r#"ordo_write_through_events_total{outcome="applied"} 3"#,
    )
    .await;
    let jobs = claim(&app, 10, 0).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert!(claim(&app, 10, 0).await.is_empty(), "claimed twice");
}

/// `POST /api/v1/workers/reports` applies each report on its own and answers one result per
/// report in order: accepted ones with the job's new status, a wrong attempt 409, an
/// unstorable error 422, without holding up the others.
#[tokio::test]
async fn many_reports_in_one_call_each_get_their_own_result() {
    let app = TestApp::spawn_with_dispatch().await;
    let done = submit(&app, 0).await;
    let failing = submit(&app, 0).await;
    let released = submit(&app, 0).await;
    assert_eq!(claim(&app, 3, 0).await.len(), 3);

    let (status, body) = post(
        &app,
        "/api/v1/workers/reports",
        json!({"reports": [
            {"outcome": "completed", "job_id": done, "attempt": 2},
            {"outcome": "completed", "job_id": done, "attempt": 1, "result": {"rows": 3}},
            {"outcome": "failed", "job_id": failing, "attempt": 1, "error": "bad\u{0}byte"},
            {"outcome": "failed", "job_id": failing, "attempt": 1, "error": "bad address", "retryable": false},
            {"outcome": "released", "job_id": released, "attempt": 1, "reason": "shutting down"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<(u64, Option<&str>)> = results
        .iter()
        .map(|r| (r["status"].as_u64().unwrap(), r["job_status"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            (409, None),
            (200, Some("COMPLETED")),
            (422, None),
            (200, Some("DEAD_LETTER")),
            (200, Some("QUEUED")),
        ],
        "{body}"
    );
    assert_eq!(results[1]["job_id"], done.as_str());
    assert_eq!(results[2]["problem"]["field"], "error", "{body}");
    let events = app.events(&done).await;
    assert_eq!(events.last().unwrap()["data"]["result"]["rows"], 3);

    for (body, field) in [
        (json!({"reports": []}), "reports"),
        (
            json!({"reports": [{"outcome": "won", "job_id": done, "attempt": 1}]}),
            "won",
        ),
        (
            json!({"reports": [{"outcome": "completed", "job_id": done, "attempt": 1, "rsult": 1}]}),
            "rsult",
        ),
    ] {
        let (status, problem) = post(&app, "/api/v1/workers/reports", body).await;
        assert!(matches!(status, 400 | 422), "{status} {problem}");
        assert!(problem.to_string().contains(field), "{problem}");
    }
}

/// Complete-and-claim-next: a claim's reports are applied while it claims, in one round trip;
/// their results come back beside the jobs.
#[tokio::test]
async fn a_claim_carries_the_reports_of_finished_attempts() {
    let app = TestApp::spawn_with_dispatch().await;
    let first = submit(&app, 5).await;
    let second = submit(&app, 1).await;
    assert_eq!(claim(&app, 1, 0).await[0]["job_id"], first.as_str());

    let (status, body) = post(
        &app,
        "/api/v1/workers/claim",
        json!({"worker_id": "w-1", "queues": ["reports"], "max_jobs": 1,
               "reports": [{"outcome": "completed", "job_id": first, "attempt": 1}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reports"][0]["status"], 200, "{body}");
    assert_eq!(body["reports"][0]["job_status"], "COMPLETED");
    assert_eq!(body["jobs"][0]["job_id"], second.as_str(), "{body}");
    assert_eq!(body.get("claim_problem"), None);
    let events = app.events(&first).await;
    assert_eq!(events.last().unwrap()["event_type"], "JobCompleted");
}

/// A claim that carried reports answers 200 even when the claim itself fails: the reports were
/// applied and the worker must hear their results; the claim's problem comes in
/// `claim_problem`.
#[tokio::test]
async fn reports_on_a_claim_that_fails_are_still_answered() {
    let app = TestApp::spawn_with_dispatch().await;
    let id = submit(&app, 0).await;
    assert_eq!(claim(&app, 1, 0).await.len(), 1);
    let redis = app.redis.as_ref().expect("spawned with a dispatch model");
    let mut connection = redis.redis.clone();
    namespace::unmark(&mut connection, &redis.prefix)
        .await
        .unwrap();

    let (status, body) = post(
        &app,
        "/api/v1/workers/claim",
        json!({"worker_id": "w-1", "queues": ["reports"],
               "reports": [{"outcome": "completed", "job_id": id, "attempt": 1}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reports"][0]["job_status"], "COMPLETED", "{body}");
    assert_eq!(body["jobs"], json!([]));
    assert_eq!(body["claim_problem"]["status"], 503, "{body}");
}

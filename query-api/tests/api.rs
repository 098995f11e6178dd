//! Black-box tests of the query API over real HTTP against a real Redis: job views, read-your-
//! writes waits, lists with filters and cursors, queues, stats, the live-namespace switch, and
//! problem+json answers for bad input and for a Redis that does not answer.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use ordo_read_model::namespace;
use ordo_testkit::events::{completed, retried_lifecycle, spec, started, submitted};
use ordo_testkit::http::{content_type, problem_of, send, success};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Instant;

const JOBS: &str = "/api/v1/jobs";

fn job_path(id: &str) -> String {
    format!("{JOBS}/{id}")
}

// ---------------------------------------------------------------------------------------------
// One job
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_view_has_typed_fields_after_a_lifecycle() {
    let app = TestApp::spawn().await;
    let start = Utc::now();
    let spec = spec(TENANT, "report.build", "reports", &[("team", "data")]);
    app.apply(&updates(
        "job-1",
        TENANT,
        start,
        retried_lifecycle(spec, start),
    ))
    .await;

    let view = success(send(app.get(&job_path("job-1"))).await, 200).await;
    assert_eq!(view["job_id"], "job-1");
    assert_eq!(view["tenant"], TENANT);
    assert_eq!(view["name"], "test job");
    assert_eq!(view["type"], "report.build");
    assert_eq!(view["queue"], "reports");
    assert_eq!(view["status"], "COMPLETED");
    assert_eq!(view["priority"], 5);
    assert_eq!(view["max_attempts"], 3);
    assert_eq!(view["timeout_secs"], 300);
    assert_eq!(view["attempt"], 2);
    assert_eq!(view["cycle"], 1);
    assert_eq!(view["sequence"], 7);
    assert_eq!(view["labels"], json!({"team": "data"}));
    assert_eq!(view["result"], json!({"rows": 3}));
    assert_eq!(view["last_error"], "boom");
    assert_eq!(view["worker_id"], "w-1");
    for field in ["submitted_at", "queued_at", "started_at", "finished_at"] {
        let text = view[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {view}"));
        DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{field} {text}: {e}"));
    }
    let millis = |field: &str| {
        DateTime::parse_from_rfc3339(view[field].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(millis("submitted_at"), start.timestamp_millis());
    // The last event (the seventh) happened 6 ms after the first.
    assert_eq!(millis("updated_at"), start.timestamp_millis() + 6);
    // Cleared or never set: left out.
    for absent in [
        "lease_expires_at",
        "run_at",
        "cancel_reason",
        "dead_letter_reason",
    ] {
        assert!(view.get(absent).is_none(), "{absent}: {view}");
    }
    // A job in the middle of its life: running, with a lease.
    app.apply(&updates(
        "job-2",
        TENANT,
        start,
        vec![submitted(spec_of("job-2"), start), started(1, start)],
    ))
    .await;
    let view = success(send(app.get(&job_path("job-2"))).await, 200).await;
    assert_eq!(view["status"], "RUNNING");
    assert_eq!(view["attempt"], 1);
    assert!(view["lease_expires_at"].is_string(), "{view}");
    assert!(view.get("result").is_none(), "{view}");
}

fn spec_of(_id: &str) -> ordo_domain::JobSpec {
    spec(TENANT, "report.build", "reports", &[])
}

#[tokio::test]
async fn unknown_jobs_and_other_tenants_jobs_are_not_found() {
    let app = TestApp::spawn().await;
    let start = Utc::now();
    app.submit("job-1", spec_of("job-1"), start).await;
    success(send(app.get(&job_path("job-1"))).await, 200).await;

    let body = problem_of(send(app.get(&job_path("nope"))).await, 404, "not-found").await;
    assert!(body["detail"].as_str().unwrap().contains("nope"), "{body}");
    // Another tenant, and the default tenant (no header), get the same answer as for a
    // job that does not exist.
    problem_of(
        send(app.get_as("globex", &job_path("job-1"))).await,
        404,
        "not-found",
    )
    .await;
    let resp = send(app.client.get(format!("{}{}", app.url, job_path("job-1")))).await;
    problem_of(resp, 404, "not-found").await;
    // Even when asked to wait for it.
    let resp = send(app.get_as("globex", &format!("{}?min_sequence=1", job_path("job-1")))).await;
    problem_of(resp, 404, "not-found").await;

    let body = problem_of(
        send(app.get_as("not a tenant!", &job_path("job-1"))).await,
        400,
        "bad-request",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("x-ordo-tenant"),
        "{body}"
    );
}

#[tokio::test]
async fn min_sequence_waits_until_the_view_catches_up() {
    let app = TestApp::spawn().await;
    let start = Utc::now();
    let all = updates(
        "job-1",
        TENANT,
        start,
        vec![submitted(spec_of("job-1"), start), started(1, start)],
    );
    app.apply(&all[..1]).await;

    let request = app.get(&format!("{}?min_sequence=2", job_path("job-1")));
    let began = Instant::now();
    let pending = tokio::spawn(async move { request.send().await.expect("request sent") });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "the read must wait for sequence 2");
    app.apply(&all[1..]).await;
    let applied = began.elapsed();
    let view = success(pending.await.unwrap(), 200).await;
    let answered = began.elapsed();
    assert_eq!(view["sequence"], 2);
    assert_eq!(view["status"], "RUNNING");
    assert!(
        answered - applied < std::time::Duration::from_millis(100),
        "answered {:?} after the write",
        answered - applied
    );

    // A view that does not exist yet is waited for too.
    let request = app.get(&format!("{}?min_sequence=1", job_path("job-2")));
    let pending = tokio::spawn(async move { request.send().await.expect("request sent") });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.submit("job-2", spec_of("job-2"), start).await;
    let view = success(pending.await.unwrap(), 200).await;
    assert_eq!(view["status"], "QUEUED");

    // Already there: no wait.
    let began = Instant::now();
    success(
        send(app.get(&format!(
            "{}?min_sequence=1&wait_ms=5000",
            job_path("job-1")
        )))
        .await,
        200,
    )
    .await;
    assert!(began.elapsed() < std::time::Duration::from_millis(500));
}

#[tokio::test]
async fn min_sequence_times_out_with_a_not_caught_up_problem() {
    let app = TestApp::spawn_with(|c| c.max_wait = std::time::Duration::from_millis(300)).await;
    let start = Utc::now();
    app.submit("job-1", spec_of("job-1"), start).await;

    let began = Instant::now();
    let resp = send(app.get(&format!("{}?min_sequence=3&wait_ms=100", job_path("job-1")))).await;
    let waited = began.elapsed();
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body = problem_of(resp, 503, "not-caught-up").await;
    assert_eq!(body["sequence"], 1, "{body}");
    assert_eq!(body["min_sequence"], 3, "{body}");
    assert!(
        waited >= std::time::Duration::from_millis(100),
        "{waited:?}"
    );

    // A job the read model does not have yet is at sequence 0.
    let resp = send(app.get(&format!("{}?min_sequence=1&wait_ms=50", job_path("job-2")))).await;
    let body = problem_of(resp, 503, "not-caught-up").await;
    assert_eq!(body["sequence"], 0, "{body}");
    assert_eq!(body["min_sequence"], 1, "{body}");

    // wait_ms is capped by the server's maximum (300 ms here).
    let began = Instant::now();
    let resp = send(app.get(&format!(
        "{}?min_sequence=9&wait_ms=60000",
        job_path("job-1")
    )))
    .await;
    problem_of(resp, 503, "not-caught-up").await;
    let waited = began.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(300)
            && waited < std::time::Duration::from_millis(1500),
        "{waited:?}"
    );
}

#[tokio::test]
async fn bad_parameters_of_a_job_read_are_bad_requests() {
    let app = TestApp::spawn().await;
    for (query, names) in [
        ("min_sequence=abc", "min_sequence"),
        ("min_sequence=-1", "min_sequence"),
        ("min_sequence=1&wait_ms=1.5", "wait_ms"),
        ("min_sequence=1&min_sequence=2", "min_sequence"),
        ("min_seq=1", "min_seq"),
    ] {
        let resp = send(app.get(&format!("{}?{query}", job_path("job-1")))).await;
        let body = problem_of(resp, 400, "bad-request").await;
        assert!(
            body["detail"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// Job `i` of the filter tests: types, queues, labels and statuses cycle so that every
/// combination below selects a different subset.
struct Sample {
    id: String,
    job_type: &'static str,
    queue: &'static str,
    team: &'static str,
    prod: bool,
    status: &'static str,
}

fn sample(i: usize) -> Sample {
    Sample {
        id: format!("job-{i:02}"),
        job_type: if i.is_multiple_of(2) {
            "a.run"
        } else {
            "b.run"
        },
        queue: if i.is_multiple_of(3) { "q1" } else { "q2" },
        team: if i % 4 < 2 { "x" } else { "y" },
        prod: i < 6,
        status: ["QUEUED", "RUNNING", "COMPLETED"][i % 3],
    }
}

const SAMPLES: usize = 24;

async fn write_samples(app: &TestApp, base: DateTime<Utc>) {
    let mut batch = Vec::new();
    for i in 0..SAMPLES {
        let s = sample(i);
        let mut labels = vec![("team", s.team)];
        if s.prod {
            labels.push(("env", "prod"));
        }
        let at = base + Duration::milliseconds(10 * i as i64);
        let mut events = vec![submitted(spec(TENANT, s.job_type, s.queue, &labels), at)];
        if s.status != "QUEUED" {
            events.push(started(1, at));
        }
        if s.status == "COMPLETED" {
            events.push(completed(1, at));
        }
        batch.extend(updates(&s.id, TENANT, at, events));
    }
    // Another tenant's job matches every filter below but must never be listed.
    batch.extend(updates(
        "other-tenant-job",
        "globex",
        base,
        vec![submitted(
            spec("globex", "a.run", "q1", &[("team", "x"), ("env", "prod")]),
            base,
        )],
    ));
    app.apply(&batch).await;
}

/// Every page of `query` with `limit`, following `next_cursor`; the ids in order.
async fn all_pages(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
    pages(app, query, limit).await.concat()
}

/// The ids of every page of `query` with `limit`, page by page.
async fn pages(app: &TestApp, query: &str, limit: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("{JOBS}?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = success(send(app.get(&path)).await, 200).await;
        let ids = ids(&page);
        assert!(ids.len() <= limit, "{page}");
        out.push(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("no last page");
}

#[tokio::test]
async fn lists_filter_by_status_type_queue_and_labels() {
    let app = TestApp::spawn().await;
    write_samples(&app, Utc::now()).await;
    let expect = |keep: &dyn Fn(&Sample) -> bool| -> Vec<String> {
        (0..SAMPLES)
            .rev()
            .map(sample)
            .filter(|s| keep(s))
            .map(|s| s.id)
            .collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("", expect(&|_| true)),
        ("status=RUNNING", expect(&|s| s.status == "RUNNING")),
        ("type=a.run", expect(&|s| s.job_type == "a.run")),
        ("queue=q1", expect(&|s| s.queue == "q1")),
        ("label=team%3Dx", expect(&|s| s.team == "x")),
        (
            "label=team=y&label=env=prod",
            expect(&|s| s.team == "y" && s.prod),
        ),
        (
            "type=a.run&status=COMPLETED&label=team=y",
            expect(&|s| s.job_type == "a.run" && s.status == "COMPLETED" && s.team == "y"),
        ),
        (
            "queue=q2&type=b.run&status=QUEUED",
            expect(&|s| s.queue == "q2" && s.job_type == "b.run" && s.status == "QUEUED"),
        ),
        ("type=c.run", vec![]),
        ("status=DEAD_LETTER", vec![]),
    ];
    for (query, expected) in cases {
        // One page, and small pages (which exercise the cursor across filters).
        let path = if query.is_empty() {
            format!("{JOBS}?limit=500")
        } else {
            format!("{JOBS}?limit=500&{query}")
        };
        let page = success(send(app.get(&path)).await, 200).await;
        assert_eq!(ids(&page), expected, "{query}");
        assert_eq!(page["next_cursor"], Value::Null, "{query}");
        assert_eq!(all_pages(&app, query, 2).await, expected, "{query} by 2");
    }
    // Items are full views, the same as the single-job read.
    let page = success(send(app.get(&format!("{JOBS}?limit=1"))).await, 200).await;
    let one = success(send(app.get(&job_path("job-23"))).await, 200).await;
    assert_eq!(page["jobs"][0], one);
    // The default limit is 50; another tenant sees only its own job.
    let page = success(send(app.get_as("globex", JOBS)).await, 200).await;
    assert_eq!(ids(&page), ["other-tenant-job"]);
}

#[tokio::test]
async fn cursor_pagination_serves_every_job_once_newest_first_under_inserts() {
    let app = TestApp::spawn().await;
    let base = Utc::now();
    // 120 jobs, three per millisecond: ties of score must be ordered and paged too.
    let mut batch = Vec::new();
    for i in 0..120 {
        let at = base + Duration::milliseconds(i as i64 / 3);
        batch.extend(updates(
            &format!("job-{i:03}"),
            TENANT,
            at,
            vec![submitted(spec_of(""), at)],
        ));
    }
    app.apply(&batch).await;
    let expected: Vec<String> = (0..120).rev().map(|i| format!("job-{i:03}")).collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page_count = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{JOBS}?limit=7&cursor={c}"),
            None => format!("{JOBS}?limit=7"),
        };
        let page = success(send(app.get(&path)).await, 200).await;
        seen.extend(ids(&page));
        page_count += 1;
        if page_count == 3 {
            // Jobs submitted while a client pages, newer than all, and one in the same
            // millisecond as the cursor: they are not served by later pages.
            let mut inserted = Vec::new();
            for i in 0..5 {
                let at = base + Duration::seconds(10);
                inserted.extend(updates(
                    &format!("new-{i}"),
                    TENANT,
                    at,
                    vec![submitted(spec_of(""), at)],
                ));
            }
            app.apply(&inserted).await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(page_count, 18, "120 jobs by 7");
    assert_eq!(seen, expected);
    // A fresh listing starts with the new jobs.
    let page = success(send(app.get(&format!("{JOBS}?limit=5"))).await, 200).await;
    assert!(ids(&page).iter().all(|id| id.starts_with("new-")), "{page}");
    let all: HashSet<String> = all_pages(&app, "", 500).await.into_iter().collect();
    assert_eq!(all.len(), 125);
    // 125 by 25: the fifth page is full and the last, with no empty page after it.
    let by_25 = pages(&app, "", 25).await;
    assert_eq!(by_25.iter().map(Vec::len).collect::<Vec<_>>(), [25; 5]);
}

#[tokio::test]
async fn bad_list_parameters_are_bad_requests() {
    let app = TestApp::spawn().await;
    write_samples(&app, Utc::now()).await;
    let page = success(
        send(app.get(&format!("{JOBS}?type=a.run&limit=2"))).await,
        200,
    )
    .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    for (query, mention) in [
        ("status=DONE", "status"),
        ("status=queued", "status"),
        ("type=not%20a%20type", "type"),
        ("queue=", "queue"),
        ("label=team", "label"),
        ("label==x", "label"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=eyJ9", "cursor"),
        // A cursor of another listing (its index is not among these filters).
        (&format!("queue=q1&cursor={cursor}"), "cursor"),
        ("sort=asc", "sort"),
    ] {
        let resp = send(app.get(&format!("{JOBS}?{query}"))).await;
        let body = problem_of(resp, 400, "bad-request").await;
        assert!(
            body["detail"].as_str().unwrap().contains(mention),
            "{query}: {body}"
        );
    }
    // The cursor goes on with the filters it was made for.
    let resp = send(app.get(&format!("{JOBS}?type=a.run&limit=2&cursor={cursor}"))).await;
    success(resp, 200).await;
}

// ---------------------------------------------------------------------------------------------
// Queues and stats
// ---------------------------------------------------------------------------------------------

async fn write_queue_samples(app: &TestApp) {
    let now = Utc::now();
    let mut delayed = spec(TENANT, "a.run", "q1", &[]);
    delayed.run_at = Some(now + Duration::minutes(5));
    let mut batch = Vec::new();
    for (id, events) in [
        ("r1", vec![submitted(spec(TENANT, "a.run", "q1", &[]), now)]),
        ("r2", vec![submitted(spec(TENANT, "a.run", "q1", &[]), now)]),
        ("d1", vec![submitted(delayed, now)]),
        (
            "run1",
            vec![
                submitted(spec(TENANT, "b.run", "q2", &[]), now),
                started(1, now),
            ],
        ),
        (
            "done1",
            vec![
                submitted(spec(TENANT, "b.run", "q2", &[]), now),
                started(1, now),
                completed(1, now),
            ],
        ),
    ] {
        batch.extend(updates(id, TENANT, now, events));
    }
    batch.extend(updates(
        "other",
        "globex",
        now,
        vec![submitted(spec("globex", "a.run", "q3", &[]), now)],
    ));
    app.apply(&batch).await;
}

#[tokio::test]
async fn queues_count_ready_scheduled_and_running_jobs() {
    let app = TestApp::spawn().await;
    write_queue_samples(&app).await;
    let body = success(send(app.get("/api/v1/queues")).await, 200).await;
    assert_eq!(
        body,
        json!({"queues": [
            {"queue": "q1", "ready": 2, "scheduled": 1, "running": 0},
            {"queue": "q2", "ready": 0, "scheduled": 0, "running": 1},
        ]})
    );
    let body = success(send(app.get_as("globex", "/api/v1/queues")).await, 200).await;
    assert_eq!(
        body,
        json!({"queues": [{"queue": "q3", "ready": 1, "scheduled": 0, "running": 0}]})
    );
    let body = success(send(app.get_as("nobody", "/api/v1/queues")).await, 200).await;
    assert_eq!(body, json!({"queues": []}));
}

#[tokio::test]
async fn stats_count_by_status_and_type_without_zeros() {
    let app = TestApp::spawn().await;
    write_queue_samples(&app).await;
    let body = success(send(app.get("/api/v1/stats")).await, 200).await;
    assert_eq!(
        body,
        json!({
            "total": 5,
            "by_status": {"QUEUED": 2, "PENDING": 1, "RUNNING": 1, "COMPLETED": 1},
            "by_type": {
                "a.run": {"total": 3, "by_status": {"QUEUED": 2, "PENDING": 1}},
                "b.run": {"total": 2, "by_status": {"RUNNING": 1, "COMPLETED": 1}},
            }
        })
    );
    let body = success(send(app.get_as("nobody", "/api/v1/stats")).await, 200).await;
    assert_eq!(body, json!({"total": 0, "by_status": {}, "by_type": {}}));
    let resp = send(app.get("/api/v1/stats?x=1")).await;
    problem_of(resp, 400, "bad-request").await;
}

// ---------------------------------------------------------------------------------------------
// The live namespace, Redis failures, the standalone service
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_namespace_switch_is_seen_by_the_next_request() {
    let app = TestApp::spawn().await;
    let start = Utc::now();
    let green = format!("{}-green", app.prefix);
    app.submit("job-blue", spec_of(""), start).await;
    app.apply_in(
        &green,
        &updates(
            "job-green",
            TENANT,
            start,
            vec![submitted(spec(TENANT, "green.run", "gq", &[]), start)],
        ),
    )
    .await;
    success(send(app.get(&job_path("job-blue"))).await, 200).await;
    problem_of(
        send(app.get(&job_path("job-green"))).await,
        404,
        "not-found",
    )
    .await;

    let mut redis = app.redis.clone();
    namespace::switch(&mut redis, &app.prefix, &green)
        .await
        .expect("switched");
    success(send(app.get(&job_path("job-green"))).await, 200).await;
    problem_of(send(app.get(&job_path("job-blue"))).await, 404, "not-found").await;
    let page = success(send(app.get(JOBS)).await, 200).await;
    assert_eq!(ids(&page), ["job-green"]);
    let queues = success(send(app.get("/api/v1/queues")).await, 200).await;
    assert_eq!(queues["queues"][0]["queue"], "gq");
    let stats = success(send(app.get("/api/v1/stats")).await, 200).await;
    assert_eq!(stats["by_type"]["green.run"]["total"], 1);
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_a_prompt_503() {
    let proxy = StallingProxy::start().await;
    let api_redis = connect(&proxy.url).await;
    let app = TestApp::spawn_on(api_redis, connect(&redis_url()).await, |c| {
        c.redis_timeout = std::time::Duration::from_millis(200)
    })
    .await;
    let start = Utc::now();
    app.submit("job-1", spec_of(""), start).await;
    success(send(app.get(&job_path("job-1"))).await, 200).await;

    proxy.stall(true);
    for path in [
        job_path("job-1"),
        JOBS.to_owned(),
        "/api/v1/queues".into(),
        "/readyz".into(),
    ] {
        let began = Instant::now();
        let resp = send(app.get(&path)).await;
        problem_of(resp, 503, "unavailable").await;
        assert!(
            began.elapsed() < std::time::Duration::from_secs(1),
            "{path}: {:?}",
            began.elapsed()
        );
    }
    proxy.stall(false);
    // The connection recovers by itself.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let resp = send(app.get(&job_path("job-1"))).await;
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "Redis answers again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_standalone_service_has_health_metrics_and_problem_fallbacks() {
    let app = TestApp::spawn().await;
    let health = success(send(app.get("/healthz")).await, 200).await;
    assert_eq!(health["status"], "ok");
    let ready = success(send(app.get("/readyz")).await, 200).await;
    assert_eq!(ready["redis"], "ok");
    problem_of(send(app.get(&job_path("x"))).await, 404, "not-found").await;
    let body = problem_of(send(app.get("/api/v1/nope")).await, 404, "not-found").await;
    assert!(body["detail"].as_str().unwrap().contains("/api/v1/nope"));
    let resp = send(app.client.post(format!("{}{JOBS}", app.url))).await;
    problem_of(resp, 405, "method-not-allowed").await;

    let resp = send(app.get("/metrics")).await;
    assert!(content_type(&resp).starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for expected in [
        r#"ordo_http_requests_total{method="GET",route="/api/v1/jobs/{id}",status="404"} 1"#,
        r#"ordo_http_requests_total{method="GET",route="/readyz",status="200"} 1"#,
        "ordo_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
}

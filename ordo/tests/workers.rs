//! Workers as real processes: `ordo dev --no-worker` (APIs, relay, projector, reaper) on a
//! scratch database, topic and key prefix, and `ordo serve worker` processes claiming from it.
//! What happened is read from the event store, where every start, failure and retry is an
//! event.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use common::platform::{events, wait_for_events, DevProcess, RoleProcess, StoredEvent};
use common::read_model::TestPrefix;
use common::TestDb;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NO_WORKER: (&str, &str) = ("ORDO_DEV_NO_WORKER", "true");
/// Short backoffs, so retries come within the test's time.
const QUICK_RETRIES: (&str, &str) = ("ORDO_RETRY_INITIAL_DELAY_MS", "200");
const WAIT: Duration = Duration::from_secs(60);

fn at(event: &StoredEvent, field: &str) -> DateTime<Utc> {
    event.data[field]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {event:?}"))
}

fn of_type<'a>(events: &'a [StoredEvent], event_type: &str) -> Vec<&'a StoredEvent> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_run_ten_thousand_jobs_and_each_attempt_starts_once() {
    const JOBS: usize = 10_000;
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER, QUICK_RETRIES]).await;
    let concurrency = [("ORDO_WORKER_CONCURRENCY", "32")];
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(RoleProcess::start(&dev, "default", &concurrency).await);
    }
    let api = dev.api();

    // One job in five fails its first attempt (retryably) and succeeds on the second.
    let failing: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let api = api.clone();
            async move {
                let fails = i % 5 == 0;
                let job = if fails {
                    json!({"type": "fail", "payload": {"times": 1}})
                } else {
                    json!({"type": "noop"})
                };
                (api.submit_job(&job).await, fails)
            }
        })
        .buffer_unordered(32)
        .filter_map(|(id, fails)| async move { fails.then_some(id) })
        .collect()
        .await;
    assert_eq!(failing.len(), JOBS / 5);

    wait_for_events(
        &db.pool,
        "JobCompleted",
        JOBS as i64,
        Duration::from_secs(300),
    )
    .await;
    let events = events(&db.pool, None).await;

    let completed: HashSet<&str> = of_type(&events, "JobCompleted")
        .iter()
        .map(|e| e.job_id.as_str())
        .collect();
    assert_eq!(completed.len(), JOBS, "every job completed");
    assert_eq!(
        of_type(&events, "JobCompleted").len(),
        JOBS,
        "and only once"
    );

    // Each attempt started exactly once: 1 per job, plus the retried ones' second.
    let starts = of_type(&events, "JobStarted");
    let mut per_attempt: HashMap<(&str, u64), usize> = HashMap::new();
    for start in &starts {
        *per_attempt
            .entry((&start.job_id, start.data["attempt"].as_u64().unwrap()))
            .or_default() += 1;
    }
    assert!(
        per_attempt.values().all(|&n| n == 1),
        "an attempt started twice"
    );
    assert_eq!(starts.len(), JOBS + failing.len());
    for (job_id, attempt) in per_attempt.keys() {
        let expected = if failing.contains(*job_id) { 2 } else { 1 };
        assert!(*attempt <= expected, "{job_id} had attempt {attempt}");
    }

    // A retry starts no earlier than the backoff its failure scheduled.
    let mut retry_due: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for scheduled in of_type(&events, "JobRetryScheduled") {
        retry_due.insert(&scheduled.job_id, at(scheduled, "next_attempt_at"));
    }
    assert_eq!(retry_due.len(), failing.len());
    for start in starts.iter().filter(|s| s.data["attempt"] == 2) {
        let due = retry_due[start.job_id.as_str()];
        assert!(
            at(start, "at") >= due,
            "{start:?} before its backoff ({due})"
        );
    }

    let by_worker = starts.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.data["worker_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        m
    });
    assert_eq!(
        by_worker.len(),
        3,
        "all three workers ran jobs: {by_worker:?}"
    );

    // And the read side agrees.
    let mut stats = api.get_json("/api/v1/stats").await;
    for _ in 0..100 {
        if stats["by_status"]["COMPLETED"] == JOBS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = api.get_json("/api/v1/stats").await;
    }
    assert_eq!(stats["by_status"]["COMPLETED"], JOBS, "{stats}");
    assert_eq!(stats["total"], JOBS, "{stats}");
}

/// Statuses a local HTTP service answers by path, changed by the test.
#[derive(Clone, Default)]
struct Downstream(Arc<[AtomicU16; 2]>);

impl Downstream {
    const PERMANENT: usize = 0;
    const FLAKY: usize = 1;

    fn set(&self, path: usize, status: u16) {
        self.0[path].store(status, Ordering::SeqCst);
    }

    async fn serve(&self) -> String {
        async fn answer(State(d): State<Downstream>, Path(path): Path<usize>) -> StatusCode {
            StatusCode::from_u16(d.0[path].load(Ordering::SeqCst)).unwrap()
        }
        let app = axum::Router::new()
            .route("/{path}", get(answer))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_and_exhausted_failures_dead_letter_and_a_requeue_completes_them() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER, QUICK_RETRIES]).await;
    let _worker = RoleProcess::start(&dev, "default", &[]).await;
    let api = dev.api();
    let downstream = Downstream::default();
    downstream.set(Downstream::PERMANENT, 400);
    downstream.set(Downstream::FLAKY, 503);
    let url = downstream.serve().await;

    let permanent = api
        .submit_job(&json!({"type": "http", "max_attempts": 3,
            "payload": {"url": format!("{url}/{}", Downstream::PERMANENT)}}))
        .await;
    let exhausted = api
        .submit_job(&json!({"type": "http", "max_attempts": 2,
            "payload": {"url": format!("{url}/{}", Downstream::FLAKY)}}))
        .await;
    let view = api.wait_for_status(&permanent, "DEAD_LETTER", WAIT).await;
    assert_eq!(view["attempt"], 1, "a 4xx is not retried: {view}");
    let view = api.wait_for_status(&exhausted, "DEAD_LETTER", WAIT).await;
    assert_eq!(
        view["attempt"], 2,
        "a 5xx is retried until attempts run out: {view}"
    );

    // The downstream is fixed; an operator requeues both.
    downstream.set(Downstream::PERMANENT, 200);
    downstream.set(Downstream::FLAKY, 200);
    for id in [&permanent, &exhausted] {
        api.post_ok(&format!("/api/v1/jobs/{id}/requeue"), &json!({}))
            .await;
    }
    for id in [&permanent, &exhausted] {
        let view = api.wait_for_status(id, "COMPLETED", WAIT).await;
        assert_eq!(view["cycle"], 2, "a second cycle of attempts: {view}");
        let history = events(&db.pool, Some(id)).await;
        let kinds: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
        assert!(
            kinds.ends_with(&[
                "JobDeadLettered",
                "JobRequeued",
                "JobQueued",
                "JobStarted",
                "JobCompleted"
            ]),
            "{kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_is_killed_is_retried_once_after_its_lease_and_completes() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER, QUICK_RETRIES]).await;
    // A second reaper: the lock lets one sweep, and the aggregate would refuse a double expiry.
    let _reaper = RoleProcess::start_reaper(&db, &prefix).await;
    let short_lease = [("ORDO_WORKER_LEASE_MS", "1000")];
    let mut doomed = RoleProcess::start(&dev, "default", &short_lease).await;
    let api = dev.api();

    let id = api
        .submit_job(&json!({"type": "sleep", "payload": {"ms": 2500}}))
        .await;
    let view = api.wait_for_status(&id, "RUNNING", WAIT).await;
    assert_eq!(view["worker_id"], doomed.id.as_str());
    // Heartbeats keep the 1 s lease alive past its first end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.get_json(&format!("/api/v1/jobs/{id}")).await["status"],
        "RUNNING"
    );
    doomed.kill_hard();
    let rescuer = RoleProcess::start(&dev, "default", &short_lease).await;

    let view = api.wait_for_status(&id, "COMPLETED", WAIT).await;
    assert_eq!(view["worker_id"], rescuer.id.as_str(), "{view}");
    assert_eq!(view["attempt"], 2, "{view}");
    let history = events(&db.pool, Some(&id)).await;
    let first_lease_end = of_type(&history, "JobLeaseExtended")
        .into_iter()
        .filter(|e| e.data["attempt"] == 1)
        .map(|e| at(e, "lease_expires_at"))
        .max()
        .expect("the first worker heartbeated");
    let expired = of_type(&history, "JobLeaseExpired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].data["attempt"], 1);
    let second = of_type(&history, "JobStarted")[1];
    assert_eq!(second.data["worker_id"], rescuer.id.as_str());
    assert!(
        at(second, "at") >= first_lease_end,
        "retried only after the lease ran out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_sleep_job_stops_it_on_the_worker() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER]).await;
    let worker = RoleProcess::start(
        &dev,
        "default",
        &[
            ("ORDO_WORKER_LEASE_MS", "1000"),
            ("ORDO_WORKER_CONCURRENCY", "1"),
        ],
    )
    .await;
    let api = dev.api();

    let id = api
        .submit_job(&json!({"type": "sleep", "payload": {"ms": 600_000}}))
        .await;
    api.wait_for_status(&id, "RUNNING", WAIT).await;
    api.post_ok(
        &format!("/api/v1/jobs/{id}/cancel"),
        &json!({"reason": "not needed"}),
    )
    .await;
    api.wait_for_status(&id, "CANCELLED", WAIT).await;

    // The next heartbeat tells the worker, which stops the handler and frees its one slot.
    let cancelled = r#"ordo_worker_job_duration_seconds_count{outcome="cancelled",type="sleep"}"#;
    let mut stopped = 0.0;
    for _ in 0..100 {
        stopped = worker.metric(cancelled).await;
        if stopped == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stopped, 1.0, "the worker stopped the sleep");
    let next = api.submit_job(&json!({"type": "noop"})).await;
    api.wait_for_status(&next, "COMPLETED", WAIT).await;
    let history = events(&db.pool, Some(&id)).await;
    assert!(of_type(&history, "JobCompleted").is_empty());
    assert!(
        of_type(&history, "JobFailed").is_empty(),
        "a cancelled job reports nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_jobs_start_first_and_a_delayed_job_waits_for_its_time() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER]).await;
    let api = dev.api();

    // Twenty jobs of mixed priorities wait in the queue before any worker runs.
    let mut submitted = Vec::new();
    for i in 0..20u64 {
        let priority = (i * 7) % 10;
        let id = api
            .submit_job(&json!({"type": "noop", "priority": priority}))
            .await;
        submitted.push((id, priority));
    }
    for (id, _) in &submitted {
        let view = api
            .get_json(&format!("/api/v1/jobs/{id}?min_sequence=1&wait_ms=20000"))
            .await;
        assert_eq!(view["status"], "QUEUED", "{view}");
    }
    let _worker = RoleProcess::start(&dev, "default", &[("ORDO_WORKER_CONCURRENCY", "1")]).await;
    wait_for_events(&db.pool, "JobCompleted", 20, WAIT).await;

    let priority: HashMap<&str, u64> = submitted.iter().map(|(id, p)| (id.as_str(), *p)).collect();
    let order: Vec<u64> = of_type(&events(&db.pool, None).await, "JobStarted")
        .iter()
        .map(|s| priority[s.job_id.as_str()])
        .collect();
    let mut expected = order.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, expected, "started by priority, highest first");

    // A job due in 3 s, then one due now: the later-submitted one runs first.
    let run_at = Utc::now() + chrono::Duration::seconds(3);
    let delayed = api
        .submit_job(&json!({"type": "noop", "run_at": run_at}))
        .await;
    assert_eq!(
        api.get_json(&format!(
            "/api/v1/jobs/{delayed}?min_sequence=1&wait_ms=20000"
        ))
        .await["status"],
        "PENDING"
    );
    let now = api.submit_job(&json!({"type": "noop"})).await;
    api.wait_for_status(&now, "COMPLETED", WAIT).await;
    api.wait_for_status(&delayed, "COMPLETED", WAIT).await;
    let started = of_type(&events(&db.pool, Some(&delayed)).await, "JobStarted")[0].clone();
    assert!(
        at(&started, "at") >= run_at,
        "started {} before run_at {run_at}",
        at(&started, "at")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_a_worker_finishes_short_jobs_and_releases_the_rest() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER]).await;
    let mut worker = RoleProcess::start(
        &dev,
        "default",
        &[("ORDO_WORKER_SHUTDOWN_GRACE_MS", "1500")],
    )
    .await;
    let api = dev.api();

    let short = api
        .submit_job(&json!({"type": "sleep", "payload": {"ms": 700}}))
        .await;
    // One attempt only: a release must not spend it.
    let long = api
        .submit_job(&json!({"type": "sleep", "payload": {"ms": 600_000}, "max_attempts": 1}))
        .await;
    api.wait_for_status(&short, "RUNNING", WAIT).await;
    api.wait_for_status(&long, "RUNNING", WAIT).await;
    let status = worker.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");

    let history = events(&db.pool, Some(&short)).await;
    assert_eq!(
        of_type(&history, "JobCompleted").len(),
        1,
        "finished within the grace"
    );
    let history = events(&db.pool, Some(&long)).await;
    let released = of_type(&history, "JobReleased");
    assert_eq!(released.len(), 1, "released: {history:?}");
    assert!(released[0].data["reason"]
        .as_str()
        .unwrap()
        .contains("shut down"));
    assert!(of_type(&history, "JobFailed").is_empty(), "{history:?}");

    // Another worker gets it, as attempt 1 again.
    let _next = RoleProcess::start(&dev, "default", &[]).await;
    wait_for_events(&db.pool, "JobStarted", 3, WAIT).await;
    let history = events(&db.pool, Some(&long)).await;
    let attempts: Vec<&Value> = of_type(&history, "JobStarted")
        .iter()
        .map(|e| &e.data["attempt"])
        .collect();
    assert_eq!(attempts, [&json!(1), &json!(1)]);
}

/// An idle worker waiting in a long-poll claim exits at once on SIGTERM (well inside a
/// supervisor's 2 s grace), and the job that becomes ready afterwards is not claimed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_an_idle_worker_gives_up_its_waiting_claim_and_exits_at_once() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[NO_WORKER]).await;
    let mut worker =
        RoleProcess::start(&dev, "default", &[("ORDO_WORKER_CLAIM_WAIT_MS", "20000")]).await;
    // Its claim is waiting in the server by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = worker.terminate(Duration::from_secs(1));
    assert!(status.success(), "{status}");

    let api = dev.api();
    let job = api.submit_job(&json!({"type": "noop"})).await;
    api.wait_for_status(&job, "QUEUED", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let history = events(&db.pool, Some(&job)).await;
    assert!(of_type(&history, "JobStarted").is_empty(), "{history:?}");
}

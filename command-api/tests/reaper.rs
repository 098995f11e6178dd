//! The lease reaper against real PostgreSQL and Redis: a claimed attempt whose lease runs out
//! is expired (retried or dead-lettered); an extended lease is left alone; the singleton lock
//! admits one reaper at a time.

mod common;

use chrono::Utc;
use common::TestApp;
use ordo_command_api::reaper::{self, ReaperConfig, Sweep};
use ordo_domain::{JobServices, ManualClock};
use ordo_read_model::SingletonLock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn claimed_job(app: &TestApp, lease_ms: u64) -> String {
    let submitted: Value = app
        .submit(&json!({"type": "t", "max_attempts": 2}))
        .await
        .json()
        .await
        .unwrap();
    let id = submitted["job_id"].as_str().unwrap().to_owned();
    app.project(&id, "default").await;
    let (_, claimed) = app
        .post_json(
            "/api/v1/workers/claim",
            &json!({"worker_id": "w", "queues": ["default"], "lease_ms": lease_ms}),
        )
        .await;
    assert_eq!(claimed["jobs"][0]["job_id"], id.as_str());
    app.project(&id, "default").await;
    id
}

async fn sweep(app: &TestApp) -> Sweep {
    let redis = app.redis.as_ref().unwrap();
    let config = ReaperConfig::new(&redis.prefix);
    reaper::sweep(&app.state.bus, &mut redis.redis.clone(), &config, 1)
        .await
        .unwrap()
}

async fn status(app: &TestApp, id: &str) -> String {
    let types: Vec<String> = app
        .events(id)
        .await
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.join(",")
}

#[tokio::test]
async fn an_expired_lease_is_retried_and_an_extended_one_left_alone() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    // The leases run out on this clock, not on the wall's: no test time spent waiting.
    let services = JobServices {
        clock: clock.clone(),
        ..JobServices::system()
    };
    let app = TestApp::spawn_with_services(services).await;
    let silent = claimed_job(&app, 1_000).await;
    let alive = claimed_job(&app, 1_000).await;
    // A heartbeat the view has not seen yet: its running entry still says 1 s.
    let (beat, _) = app
        .post_json(
            &format!("/api/v1/jobs/{alive}/heartbeat"),
            &json!({"attempt": 1, "lease_ms": 60_000}),
        )
        .await;
    assert_eq!(beat, 200);

    assert_eq!(
        sweep(&app).await,
        Sweep::default(),
        "no lease has run out yet"
    );
    clock.advance(chrono::Duration::milliseconds(1_100));
    let done = sweep(&app).await;
    assert_eq!((done.expired, done.skipped), (1, 1), "{done:?}");
    assert!(
        status(&app, &silent)
            .await
            .ends_with("JobLeaseExpired,JobRetryScheduled"),
        "{}",
        status(&app, &silent).await
    );
    assert!(status(&app, &alive).await.ends_with("JobLeaseExtended"));

    // Once the view has caught up, neither is due any more.
    app.project(&silent, "default").await;
    app.project(&alive, "default").await;
    assert_eq!(sweep(&app).await, Sweep::default());
}

#[tokio::test]
async fn one_reaper_holds_the_lock_until_it_lets_go() {
    let app = TestApp::spawn_with_dispatch().await;
    let redis = app.redis.as_ref().unwrap();
    let ttl = Duration::from_secs(5);
    let mut first = SingletonLock::new(redis.redis.clone(), &redis.prefix, "reaper", ttl);
    let mut second = SingletonLock::new(redis.redis.clone(), &redis.prefix, "reaper", ttl);
    let token = first.hold().await.unwrap().expect("free lock taken");
    assert_eq!(second.hold().await.unwrap(), None);
    assert_eq!(first.hold().await.unwrap(), Some(token), "renewed");
    first.release().await.unwrap();
    let next = second.hold().await.unwrap().expect("released lock taken");
    assert!(next > token, "fencing tokens grow: {next} after {token}");
}

#[tokio::test]
async fn a_claim_that_never_started_goes_back_to_ready() {
    let app = TestApp::spawn_with_dispatch().await;
    let (_, submitted) = app.post_json("/api/v1/jobs", &json!({"type": "t"})).await;
    let id = submitted["job_id"].as_str().unwrap().to_owned();
    app.project(&id, "default").await;
    // What a claim leaves when its Start and its release both failed: the job is QUEUED,
    // gone from ready and in running with a lease that has ended.
    let redis = app.redis.as_ref().unwrap();
    let mut conn = redis.redis.clone();
    let ns = &redis.prefix;
    let ready = ordo_read_model::keys::dispatch(ns, "ready", "default", "default");
    let running = ordo_read_model::keys::dispatch(ns, "running", "default", "default");
    let _: i64 = redis::AsyncCommands::zrem(&mut conn, &ready, &id)
        .await
        .unwrap();
    let _: i64 = redis::AsyncCommands::zadd(&mut conn, &running, &id, 1)
        .await
        .unwrap();

    let done = sweep(&app).await;
    assert_eq!((done.requeued, done.cleaned), (1, 0), "{done:?}");
    let (status, claimed) = app
        .post_json(
            "/api/v1/workers/claim",
            &json!({"worker_id": "w", "queues": ["default"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(claimed["jobs"][0]["job_id"], id.as_str());
}

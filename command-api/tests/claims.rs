//! The claim service called directly (the worker protocol's HTTP route is tested in
//! `workers.rs`), on a scratch database and a Redis key prefix of the test's own, with a
//! manual clock: what a claim records, the lease it grants, whose jobs it may take.

mod common;

use chrono::{DateTime, Duration as Span, Utc};
use common::TestApp;
use ordo_command_api::claims::{ClaimService, WorkerClaim};
use ordo_domain::spec::TenantId;
use ordo_domain::{CommandMetadata, JobServices, ManualClock};
use ordo_protocol::worker::ClaimRequest;
use ordo_testkit::domain::tenant;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn caller(tenant: &TenantId, at: DateTime<Utc>) -> CommandMetadata {
    CommandMetadata {
        tenant: tenant.to_string(),
        actor: "claims-test".into(),
        correlation_id: "claim-1".into(),
        occurred_at: at,
    }
}

fn worker_claim(body: serde_json::Value) -> WorkerClaim {
    let request: ClaimRequest = serde_json::from_value(body).expect("a claim request");
    WorkerClaim::parse(&request).expect("a valid claim")
}

/// An app whose clock stands still at the returned time, with one `report.build` job of the
/// default tenant projected into queue `reports` (its id is returned).
async fn one_job_at_a_standstill() -> (DateTime<Utc>, TestApp, Arc<ClaimService>, String) {
    let now = Utc::now();
    let services = JobServices {
        clock: Arc::new(ManualClock::new(now)),
        ..JobServices::system()
    };
    let app = TestApp::spawn_with_services(services).await;
    let claims = app
        .state
        .claims
        .clone()
        .expect("spawned with a dispatch model");
    let id = app
        .submit_projected(&json!({"type": "report.build", "queue": "reports"}))
        .await;
    (now, app, claims, id)
}

#[tokio::test]
async fn a_claim_starts_the_job_for_its_caller_with_a_lease_on_the_bus_clock() {
    let (now, app, claims, id) = one_job_at_a_standstill().await;
    let claim = worker_claim(json!({"worker_id": "w-7", "queues": ["reports"], "lease_ms": 2_000}));

    let default = tenant("default");
    let jobs = claims
        .claim(&default, &caller(&default, now), &claim)
        .await
        .expect("claimed");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id.to_string(), id);
    assert_eq!((jobs[0].attempt, jobs[0].queue.as_str()), (1, "reports"));
    assert_eq!(jobs[0].lease_expires_at, now + Span::milliseconds(2_000));

    let events = app.events(&id).await;
    let started = events.last().expect("events");
    assert_eq!(started["event_type"], "JobStarted");
    assert_eq!(started["actor"], "claims-test");
    assert_eq!(started["correlation_id"], "claim-1");
    assert_eq!(started["data"]["worker_id"], "w-7");
}

#[tokio::test]
async fn a_claim_takes_only_its_tenants_jobs_and_waits_out_its_bound() {
    let (now, _app, claims, id) = one_job_at_a_standstill().await;
    let claim = worker_claim(json!({"worker_id": "w", "queues": ["reports"], "wait_ms": 200}));

    let other = tenant("other");
    let began = Instant::now();
    let jobs = claims
        .claim(&other, &caller(&other, now), &claim)
        .await
        .expect("an empty claim is no error");
    assert!(jobs.is_empty(), "{jobs:?}");
    assert!(began.elapsed() >= Duration::from_millis(200));

    let default = tenant("default");
    let jobs = claims
        .claim(&default, &caller(&default, now), &claim)
        .await
        .expect("claimed");
    assert_eq!(jobs.len(), 1, "still ready for its own tenant");
    assert_eq!(jobs[0].job_id.to_string(), id);
}

#[tokio::test]
async fn a_waiting_claim_answers_at_once_when_the_server_stops() {
    let (now, app, _, _) = one_job_at_a_standstill().await;
    let redis = app.redis.as_ref().expect("spawned with a dispatch model");
    let stopping = CancellationToken::new();
    let claims = ClaimService::new(
        app.state.bus.clone(),
        redis.redis.clone(),
        redis.client(),
        &redis.prefix,
        stopping.clone(),
    );
    // A queue with nothing in it: the claim would wait its whole 20 s.
    let claim = worker_claim(json!({"worker_id": "w", "queues": ["empty"], "wait_ms": 20_000}));
    let default = tenant("default");
    let began = Instant::now();
    let waiting =
        tokio::spawn(async move { claims.claim(&default, &caller(&default, now), &claim).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stopping.cancel();
    let jobs = waiting.await.unwrap().expect("an empty claim is no error");
    assert!(jobs.is_empty(), "{jobs:?}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "answered {:?} after it began",
        began.elapsed()
    );
}

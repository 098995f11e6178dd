//! Claims on the dispatch model against a real Redis, with views written by the projector's
//! own script from domain events; every test has its own key prefix. Claims take the clock
//! as an argument, so due times are tested without sleeping.

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::FutureExt;
use ordo_domain::sample;
use ordo_domain::spec::{Priority, QueueName, TenantId, WorkerId};
use ordo_domain::{CommandMetadata, EventEnvelope, JobEvent};
use ordo_read_model::{keys, JobViews, ViewUpdate};
use ordo_read_model::{Claim, DispatchQueues, ExpiredLease, ReadyWakeups, TenantQueue};
use ordo_testkit::stack::redis_url;
use ordo_testkit::TestPrefix;
use redis::AsyncCommands;
use std::collections::HashSet;
use std::pin::pin;

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn t(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(ms)
}

fn queues() -> Vec<String> {
    vec!["q".to_owned()]
}

/// Writes the events of job `id` (numbered from 1) into the prefix's namespace.
async fn project(prefix: &TestPrefix, id: &str, events: &[JobEvent]) {
    project_with(
        JobViews::new(prefix.redis.clone(), &prefix.prefix),
        id,
        events,
    )
    .await
}

async fn project_with(mut views: JobViews, id: &str, events: &[JobEvent]) {
    let updates: Vec<ViewUpdate> = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let metadata = CommandMetadata {
                tenant: "acme".into(),
                actor: "test".into(),
                correlation_id: id.into(),
                occurred_at: t(0),
            };
            ViewUpdate::of(
                &EventEnvelope::of(id, i as u64 + 1, &metadata, event),
                event,
            )
        })
        .collect();
    views.apply(&updates).await.unwrap();
}

fn submitted(priority: i64, at: i64, run_at: Option<i64>) -> JobEvent {
    let mut spec = sample::spec(
        &TenantId::parse("acme").unwrap(),
        &QueueName::parse("q").unwrap(),
    );
    spec.priority = Priority::parse(priority).unwrap();
    spec.run_at = run_at.map(t);
    JobEvent::JobSubmitted {
        spec: Box::new(spec),
        submitted_at: t(at),
    }
}

/// Claims at `t(now)`.
async fn claim(prefix: &TestPrefix, max: usize, now: i64) -> Vec<Claim> {
    DispatchQueues::new(prefix.redis.clone())
        .claim(
            &prefix.prefix,
            "acme",
            &queues(),
            max,
            t(now).timestamp_millis(),
            LEASE,
        )
        .await
        .unwrap()
}

fn ids(claims: &[Claim]) -> Vec<&str> {
    claims.iter().map(|c| c.job_id.as_str()).collect()
}

#[tokio::test]
async fn claims_take_higher_priority_first_then_the_earlier_enqueued() {
    let prefix = TestPrefix::new().await;
    project(&prefix, "low-early", &[submitted(0, 1, None)]).await;
    project(&prefix, "high-late", &[submitted(7, 3, None)]).await;
    project(&prefix, "high-early", &[submitted(7, 2, None)]).await;
    project(&prefix, "mid", &[submitted(3, 0, None)]).await;

    let first = claim(&prefix, 3, 10).await;
    assert_eq!(ids(&first), ["high-early", "high-late", "mid"]);
    assert!(first.iter().all(|c| c.attempt == 1 && c.queue == "q"));
    assert_eq!(ids(&claim(&prefix, 3, 10).await), ["low-early"]);
    assert!(claim(&prefix, 3, 10).await.is_empty());

    let mut redis = prefix.redis.clone();
    let running: Vec<(String, f64)> = redis
        .zrange_withscores(
            keys::dispatch(&prefix.prefix, "running", "acme", "q"),
            0,
            -1,
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 4);
    let lease_end = t(10 + 30_000).timestamp_millis() as f64;
    assert!(
        running.iter().all(|(_, end)| *end == lease_end),
        "{running:?}"
    );
}

#[tokio::test]
async fn a_delayed_job_and_a_retry_are_claimed_only_when_due() {
    let prefix = TestPrefix::new().await;
    project(&prefix, "delayed", &[submitted(0, 0, Some(5_000))]).await;
    let worker = WorkerId::parse("w").unwrap();
    project(
        &prefix,
        "retrying",
        &[
            submitted(0, 0, None),
            JobEvent::JobStarted {
                attempt: 1,
                worker_id: worker,
                lease_expires_at: t(30_000),
                at: t(1),
            },
            JobEvent::JobFailed {
                attempt: 1,
                error: "boom".into(),
                retryable: true,
                at: t(2),
            },
            JobEvent::JobRetryScheduled {
                next_attempt: 2,
                delay_ms: 998,
                next_attempt_at: t(1_000),
            },
        ],
    )
    .await;

    assert!(claim(&prefix, 10, 999).await.is_empty());
    let retry = claim(&prefix, 10, 1_000).await;
    assert_eq!(ids(&retry), ["retrying"]);
    assert_eq!(retry[0].attempt, 2, "the claim starts the next attempt");
    assert!(claim(&prefix, 10, 4_999).await.is_empty());
    assert_eq!(ids(&claim(&prefix, 10, 5_000).await), ["delayed"]);
}

#[tokio::test]
async fn a_released_claim_is_claimable_again() {
    let prefix = TestPrefix::new().await;
    project(&prefix, "job", &[submitted(4, 0, None)]).await;
    let claims = claim(&prefix, 1, 10).await;
    assert_eq!(ids(&claims), ["job"]);
    DispatchQueues::new(prefix.redis.clone())
        .release(&prefix.prefix, "acme", &claims[0], 0)
        .await
        .unwrap();
    assert_eq!(claim(&prefix, 1, 10).await, claims);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_get_the_same_job() {
    let prefix = TestPrefix::new().await;
    for i in 0..200 {
        project(
            &prefix,
            &format!("job-{i:03}"),
            &[submitted(i % 10, i, None)],
        )
        .await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut dispatch = DispatchQueues::new(prefix.redis.clone());
        let namespace = prefix.prefix.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = dispatch
                    .claim(&namespace, "acme", &queues(), 7, 1_000, LEASE)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.job_id));
            }
        });
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    while let Some(claimed) = tasks.join_next().await {
        for id in claimed.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!((total, seen.len()), (200, 200));
}

/// The live projector announces each job it makes ready: a claim waiting on that queue wakes,
/// one waiting on another queue does not.
#[tokio::test]
async fn a_job_made_ready_wakes_the_claims_waiting_on_its_queue() {
    let prefix = TestPrefix::new().await;
    let client = redis::Client::open(redis_url()).unwrap();
    let wakeups = ReadyWakeups::subscribe(client, &prefix.prefix);
    tokio::time::timeout(std::time::Duration::from_secs(10), wakeups.subscribed())
        .await
        .expect("subscribed to the wake channel");
    let (ready, other) = (wakeups.signal("acme", "q"), wakeups.signal("acme", "other"));
    let mut woken = pin!(ready.notified());
    woken.as_mut().enable();
    let mut not_woken = pin!(other.notified());
    not_woken.as_mut().enable();

    let views = JobViews::new(prefix.redis.clone(), &prefix.prefix).waking_claims(&prefix.prefix);
    project_with(views, "j1", &[submitted(0, 0, None)]).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), woken)
        .await
        .expect("the claim waiting on queue q is woken");
    assert!(not_woken.now_or_never().is_none());
}

#[tokio::test]
async fn expired_leases_are_listed_with_their_view_and_leftovers_dropped() {
    let prefix = TestPrefix::new().await;
    project(&prefix, "job", &[submitted(4, 0, None)]).await;
    assert_eq!(ids(&claim(&prefix, 1, 10).await), ["job"]);
    let mut dispatch = DispatchQueues::new(prefix.redis.clone());
    let queues = dispatch.queues(&prefix.prefix).await.unwrap();
    let queue = TenantQueue {
        tenant: "acme".into(),
        queue: "q".into(),
    };
    assert_eq!(queues, std::slice::from_ref(&queue));
    // A leftover without a view, due earlier than the claim's lease.
    let running = keys::dispatch(&prefix.prefix, "running", "acme", "q");
    let mut redis = prefix.redis.clone();
    let _: () = redis.zadd(&running, "ghost", 5).await.unwrap();

    let lease_end = t(10).timestamp_millis() + LEASE.as_millis() as i64;
    let reader = dispatch.clone();
    let expired = |now: i64, limit: usize| {
        let mut dispatch = reader.clone();
        let (ns, queue) = (prefix.prefix.clone(), queue.clone());
        async move { dispatch.expired(&ns, &queue, now, limit).await.unwrap() }
    };
    assert!(expired(4, 10).await.is_empty(), "nothing ended before 5");
    let ghost = ExpiredLease {
        job_id: "ghost".into(),
        attempt: 0,
        status: None,
    };
    assert_eq!(
        expired(lease_end - 1, 10).await,
        std::slice::from_ref(&ghost)
    );
    // The view still says QUEUED at attempt 0: the claim's Start has not been projected.
    let job = ExpiredLease {
        job_id: "job".into(),
        attempt: 0,
        status: Some("QUEUED".into()),
    };
    assert_eq!(expired(lease_end, 10).await, [ghost.clone(), job.clone()]);
    assert_eq!(
        expired(lease_end, 1).await,
        [ghost],
        "earliest first, bounded"
    );

    dispatch
        .drop_running(&prefix.prefix, &queue, "ghost")
        .await
        .unwrap();
    assert_eq!(expired(lease_end, 10).await, [job]);
}

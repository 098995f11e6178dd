//! The Redis read model against a real Redis (`ORDO_REDIS_URL`, default the local stack):
//! every test writes under its own namespace and deletes it afterwards.

use chrono::{DateTime, Duration, Utc};
use ordo_domain::spec::{JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs};
use ordo_domain::{JobEvent, JobSpec, RetryPolicy};
use ordo_read_model::{keys, ApplyOutcome, JobViews, ViewUpdate};
use ordo_testkit::events::{envelopes, retried_lifecycle};
use ordo_testkit::TestPrefix;
use redis::AsyncCommands;
use serde_json::json;
use std::collections::BTreeMap;

/// Job views in a namespace of their own (the test's key prefix), deleted afterwards.
struct TestRedis {
    views: JobViews,
    namespace: String,
    keys: TestPrefix,
}

impl TestRedis {
    async fn new() -> Self {
        let keys = TestPrefix::new().await;
        Self {
            views: JobViews::new(keys.redis.clone(), &keys.prefix),
            namespace: keys.prefix.clone(),
            keys,
        }
    }

    async fn connection(&self) -> redis::aio::ConnectionManager {
        self.keys.redis.clone()
    }

    /// Every key of the namespace with its full content, for before/after comparisons.
    async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut c = self.connection().await;
        let keys: Vec<String> = c.keys(format!("{}:*", self.namespace)).await.unwrap();
        let mut out = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let content = match kind.as_str() {
                "hash" => format!(
                    "{:?}",
                    c.hgetall::<_, BTreeMap<String, String>>(&key)
                        .await
                        .unwrap()
                ),
                "zset" => format!(
                    "{:?}",
                    c.zrange_withscores::<_, Vec<(String, f64)>>(&key, 0, -1)
                        .await
                        .unwrap()
                ),
                "set" => format!(
                    "{:?}",
                    c.smembers::<_, std::collections::BTreeSet<String>>(&key)
                        .await
                        .unwrap()
                ),
                other => other.to_owned(),
            };
            out.insert(key, content);
        }
        out
    }

    async fn job(&self, id: &str) -> BTreeMap<String, String> {
        self.connection()
            .await
            .hgetall(keys::job(&self.namespace, id))
            .await
            .unwrap()
    }

    async fn zset(&self, key: String) -> Vec<String> {
        self.connection().await.zrange(key, 0, -1).await.unwrap()
    }
}

fn spec(priority: i64, run_at: Option<DateTime<Utc>>) -> JobSpec {
    JobSpec {
        tenant: TenantId::parse("acme").unwrap(),
        name: JobName::parse("report").unwrap(),
        job_type: JobType::parse("report.build").unwrap(),
        queue: QueueName::parse("reports").unwrap(),
        payload: json!({}),
        priority: Priority::parse(priority).unwrap(),
        run_at,
        retry: RetryPolicy::default(),
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::parse([("team".to_owned(), "data".to_owned())].into()).unwrap(),
    }
}

/// Updates for `events` of job `id` of tenant `acme`, numbered from 1.
fn updates(id: &str, start: DateTime<Utc>, events: Vec<JobEvent>) -> Vec<ViewUpdate> {
    envelopes(id, "acme", start, &events)
        .iter()
        .zip(&events)
        .map(|(envelope, event)| ViewUpdate::of(envelope, event))
        .collect()
}

/// Submitted, failed once, retried, completed.
fn lifecycle(start: DateTime<Utc>) -> Vec<JobEvent> {
    retried_lifecycle(spec(5, None), start)
}

#[tokio::test]
async fn a_lifecycle_builds_the_view_indexes_and_counters() {
    let mut redis = TestRedis::new().await;
    let start = Utc::now();
    let outcomes = redis
        .views
        .apply(&updates("job-1", start, lifecycle(start)))
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| *o == ApplyOutcome::Applied),
        "{outcomes:?}"
    );

    let view = redis.job("job-1").await;
    assert_eq!(view["status"], "COMPLETED");
    assert_eq!(view["attempt"], "2");
    assert_eq!(view["sequence"], "7");
    assert_eq!(view["result"], r#"{"rows":3}"#);
    assert_eq!(view["last_error"], "boom");
    assert_eq!(view["worker_id"], "w-1");
    assert!(!view.contains_key("lease_expires_at"));

    let ns = &redis.namespace;
    assert_eq!(
        redis
            .zset(keys::index(ns, "acme", "status:COMPLETED"))
            .await,
        ["job-1"]
    );
    assert!(redis
        .zset(keys::index(ns, "acme", "status:RUNNING"))
        .await
        .is_empty());
    assert_eq!(
        redis.zset(keys::index(ns, "acme", "label:team=data")).await,
        ["job-1"]
    );
    assert_eq!(
        redis
            .zset(keys::index(ns, "acme", "type:report.build"))
            .await,
        ["job-1"]
    );
    for kind in ["ready", "scheduled", "running"] {
        assert!(
            redis
                .zset(keys::dispatch(ns, kind, "acme", "reports"))
                .await
                .is_empty(),
            "{kind}"
        );
    }
    let counts: BTreeMap<String, i64> = redis
        .connection()
        .await
        .hgetall(keys::counts(ns, "acme"))
        .await
        .unwrap();
    assert_eq!(counts["status:COMPLETED"], 1);
    assert_eq!(counts["type:report.build/status:COMPLETED"], 1);
    assert_eq!(counts["type:report.build"], 1);
    for status in ["QUEUED", "RUNNING", "FAILED", "RETRYING"] {
        assert_eq!(counts[&format!("status:{status}")], 0, "{status}");
    }
}

#[tokio::test]
async fn duplicates_and_redeliveries_change_nothing() {
    let mut redis = TestRedis::new().await;
    let start = Utc::now();
    let all = updates("job-1", start, lifecycle(start));
    redis.views.apply(&all[..4]).await.unwrap();
    let before = redis.snapshot().await;
    // A redelivered batch, out of order, of events already applied.
    let mut again = all[..4].to_vec();
    again.reverse();
    let outcomes = redis.views.apply(&again).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == ApplyOutcome::Duplicate),
        "{outcomes:?}"
    );
    assert_eq!(redis.snapshot().await, before);

    // The rest, with each event delivered twice in a row.
    let doubled: Vec<ViewUpdate> = all[4..]
        .iter()
        .flat_map(|u| [u.clone(), u.clone()])
        .collect();
    let outcomes = redis.views.apply(&doubled).await.unwrap();
    assert_eq!(
        outcomes,
        [ApplyOutcome::Applied, ApplyOutcome::Duplicate].repeat(3),
    );
    let mut once = TestRedis::new().await;
    once.views.apply(&all).await.unwrap();
    let strip = |s: BTreeMap<String, String>, ns: &str| -> BTreeMap<String, String> {
        s.into_iter()
            .map(|(k, v)| (k.replacen(ns, "NS", 1), v))
            .collect()
    };
    assert_eq!(
        strip(redis.snapshot().await, &redis.namespace),
        strip(once.snapshot().await, &once.namespace),
        "a run with duplicates equals a clean run"
    );
}

#[tokio::test]
async fn a_gap_is_refused_and_reported() {
    let mut redis = TestRedis::new().await;
    let start = Utc::now();
    let all = updates("job-1", start, lifecycle(start));
    redis.views.apply(&all[..1]).await.unwrap();
    let before = redis.snapshot().await;
    let outcomes = redis.views.apply(&all[2..3]).await.unwrap();
    assert_eq!(outcomes, [ApplyOutcome::Gap { last: 1 }]);
    assert_eq!(redis.snapshot().await, before);
}

#[tokio::test]
async fn dispatch_orders_by_priority_then_time_and_holds_delayed_jobs() {
    let mut redis = TestRedis::new().await;
    let start = Utc::now();
    let submit = |priority, run_at, ms| {
        let at = start + Duration::milliseconds(ms);
        updates(
            "",
            at,
            vec![JobEvent::JobSubmitted {
                spec: Box::new(spec(priority, run_at)),
                submitted_at: at,
            }],
        )
    };
    let named = |id: &str, mut u: Vec<ViewUpdate>| {
        u[0].job_id = id.to_owned();
        u
    };
    // "z-low-early" sorts after "low-late" by name: only time can put it first.
    let mut batch = named("z-low-early", submit(0, None, 0));
    batch.extend(named("high-late", submit(9, None, 5)));
    batch.extend(named("low-late", submit(0, None, 9)));
    batch.extend(named(
        "delayed",
        submit(9, Some(start + Duration::minutes(5)), 0),
    ));
    redis.views.apply(&batch).await.unwrap();
    let ns = redis.namespace.clone();
    assert_eq!(
        redis
            .zset(keys::dispatch(&ns, "ready", "acme", "reports"))
            .await,
        ["high-late", "z-low-early", "low-late"]
    );
    assert_eq!(
        redis
            .zset(keys::dispatch(&ns, "scheduled", "acme", "reports"))
            .await,
        ["delayed"]
    );
    assert_eq!(redis.job("delayed").await["status"], "PENDING");
}

#[tokio::test]
async fn a_forgotten_job_leaves_no_trace_and_its_history_rebuilds_it() {
    let mut redis = TestRedis::new().await;
    let start = Utc::now();
    // A neighbour in the same tenant and queue, whose share of the counters must stay.
    let neighbour = updates("job-0", start, lifecycle(start)[..1].to_vec());
    redis.views.apply(&neighbour).await.unwrap();
    let alone = redis.snapshot().await;

    let all = updates("job-1", start, lifecycle(start));
    redis.views.apply(&all).await.unwrap();
    let built = redis.snapshot().await;
    redis.views.forget(&all).await.unwrap();
    let queues = keys::queues(&redis.namespace);
    let mut after = redis.snapshot().await;
    // The queues set is shared by every job of the queue and left alone.
    assert_eq!(after.remove(&queues), alone.get(&queues).cloned());
    let mut expected = alone.clone();
    expected.remove(&queues);
    // Counters of job-1 went back to zero rather than away: compare the fields that are not.
    let counts = keys::counts(&redis.namespace, "acme");
    after.remove(&counts);
    expected.remove(&counts);
    let nonzero: BTreeMap<String, i64> = redis
        .connection()
        .await
        .hgetall::<_, BTreeMap<String, i64>>(&counts)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, count)| *count != 0)
        .collect();
    let neighbour_counts: BTreeMap<String, i64> = [
        ("status:QUEUED", 1),
        ("type:report.build", 1),
        ("type:report.build/status:QUEUED", 1),
    ]
    .into_iter()
    .map(|(field, count)| (field.to_owned(), count))
    .collect();
    assert_eq!(nonzero, neighbour_counts);
    assert_eq!(after, expected);

    assert!(redis
        .views
        .apply(&all)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == ApplyOutcome::Applied));
    assert_eq!(redis.snapshot().await, built);
}

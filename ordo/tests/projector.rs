//! The projector against the real broker and Redis: records are produced straight to a
//! topic of the test's own, the projector runs in-process, and the Redis views are read back.

mod common;

use common::platform::RoleProcess;
use common::read_model::{produce, record, write_histories, InProcessProjector, TestPrefix};
use common::unique;
use common::TestDb;
use ordo_domain::sample;
use ordo_domain::spec::{QueueName, TenantId};
use ordo_projectors::metrics::RecordOutcome;
use ordo_read_model::{keys, JobViews, ViewUpdate};
use ordo_testkit::kafka::{member_with_partitions, read_topic};
use redis::AsyncCommands;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn history(retried: bool) -> Vec<ordo_domain::EventEnvelope> {
    let job_id = uuid::Uuid::now_v7().to_string();
    sample::lifecycle(
        &job_id,
        &TenantId::parse("acme").unwrap(),
        &QueueName::parse("reports").unwrap(),
        chrono::Utc::now(),
        retried,
    )
}

async fn view_sequence(prefix: &TestPrefix, job_id: &str) -> Option<u64> {
    let mut redis = prefix.redis.clone();
    redis
        .hget(keys::job(&prefix.prefix, job_id), "sequence")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_redelivered_records_leave_the_views_unchanged() {
    let prefix = TestPrefix::new().await;
    let topic = unique("ordo-test-projector-");
    let histories: Vec<_> = (0..150).map(|i| history(i % 3 == 0)).collect();
    let once: Vec<_> = histories.iter().flatten().map(record).collect();
    // Everything once, then all of it again (a redelivery after a crash), then each job's
    // records newest first (duplicates arriving out of order).
    let mut records = once.clone();
    records.extend(once.iter().cloned());
    records.extend(histories.iter().flat_map(|h| h.iter().rev().map(record)));
    produce(&topic, 6, &records).await;

    let projector = InProcessProjector::start(&topic, 6, &prefix).await;
    projector
        .wait_for(
            RecordOutcome::Duplicate,
            (records.len() - once.len()) as u64,
            WAIT,
        )
        .await;
    assert_eq!(
        projector.metrics.count(RecordOutcome::Applied),
        once.len() as u64
    );
    assert_eq!(projector.metrics.count(RecordOutcome::Gap), 0);
    projector.stop().await;

    // The reference: every event applied exactly once, in order, straight into Redis.
    let reference = format!("{}.reference", prefix.prefix);
    let mut views = JobViews::new(prefix.redis.clone(), &reference);
    for history in &histories {
        let updates: Vec<_> = history
            .iter()
            .map(|e| ViewUpdate::of(e, &e.event().unwrap()))
            .collect();
        views.apply(&updates).await.unwrap();
    }
    let mut redis = prefix.redis.clone();
    let differences = ordo_read_model::compare::compare(&mut redis, &prefix.prefix, &reference)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_records_are_parked_with_their_reason_and_the_projector_goes_on() {
    let prefix = TestPrefix::new().await;
    let topic = unique("ordo-test-projector-");
    let job = history(false);
    let mut unknown_version = history(false)[0].clone();
    unknown_version.event_version = 99;
    let mismatched = history(false)[0].clone();
    let mut records = vec![
        ("job-x".to_owned(), "not json at all".to_owned()),
        record(&unknown_version),
        ("not-the-job-id".to_owned(), record(&mismatched).1),
    ];
    records.extend(job.iter().map(record));
    produce(&topic, 1, &records).await;

    let projector = InProcessProjector::start(&topic, 1, &prefix).await;
    projector.wait_for(RecordOutcome::Applied, 3, WAIT).await;
    projector.wait_for(RecordOutcome::Parked, 3, WAIT).await;
    let parking_topic = projector.config.parking_topic.clone();
    projector.stop().await;

    assert_eq!(view_sequence(&prefix, &job[0].job_id).await, Some(3));
    let parked = tokio::task::spawn_blocking(move || {
        read_topic(&parking_topic, WAIT, |records| records.len() >= 3)
    })
    .await
    .unwrap();
    let reasons: Vec<&str> = parked
        .iter()
        .map(|r| r.header("ordo.parked.reason").expect("reason header"))
        .collect();
    assert!(reasons[0].contains("not an event envelope"), "{reasons:?}");
    assert!(reasons[1].contains("event_version 99"), "{reasons:?}");
    assert!(
        reasons[2].contains("is not the envelope's job_id"),
        "{reasons:?}"
    );
    for (parked, original) in parked.iter().zip(&records) {
        assert_eq!(parked.key.as_deref(), Some(original.0.as_bytes()));
        assert_eq!(parked.value.as_deref(), Some(original.1.as_bytes()));
        assert_eq!(parked.header("ordo.parked.topic"), Some(topic.as_str()));
        assert_eq!(parked.header("ordo.parked.projector"), Some("redis-views"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_whose_events_are_not_in_the_store_waits_until_the_view_is_repaired() {
    let prefix = TestPrefix::new().await;
    // The projector may repair from this store, but it has none of these events.
    let store = TestDb::new().await;
    let topic = unique("ordo-test-projector-");
    let (gapped, after) = (history(false), history(true));
    // Event 2 of the first job is missing; the second job's records come behind the gap on
    // the one partition (those in the same batch are written; the partition then waits at
    // the gap, so they come again later as duplicates).
    let mut records = vec![record(&gapped[0]), record(&gapped[2])];
    records.extend(after.iter().map(record));
    produce(&topic, 1, &records).await;

    let projector = InProcessProjector::start_repairing(&topic, 1, &prefix, &store).await;
    // Retried with backoff, and never skipped.
    projector.wait_for(RecordOutcome::Gap, 3, WAIT).await;
    assert_eq!(projector.metrics.count(RecordOutcome::Repaired), 0);
    assert_eq!(view_sequence(&prefix, &gapped[0].job_id).await, Some(1));

    // The repair `ordo replay --job` would make: the missing event, written to the view.
    let mut views = JobViews::new(prefix.redis.clone(), &prefix.prefix);
    let missing = ViewUpdate::of(&gapped[1], &gapped[1].event().unwrap());
    views.apply(&[missing]).await.unwrap();

    projector
        .wait_for(RecordOutcome::Applied, 1 + 1 + after.len() as u64, WAIT)
        .await;
    projector.stop().await;
    assert_eq!(view_sequence(&prefix, &gapped[0].job_id).await, Some(3));
    assert_eq!(view_sequence(&prefix, &after[0].job_id).await, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_whose_events_are_in_the_store_is_repaired_and_the_partition_goes_on() {
    let prefix = TestPrefix::new().await;
    let topic = unique("ordo-test-projector-");
    let store = TestDb::new().await;
    // Two jobs written through the command bus: the first completes (3 events), the second
    // fails with a retry ahead.
    write_histories(&store, 2, 1).await;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events ORDER BY aggregate_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let bus = common::bus(&store);
    let tenant = TenantId::parse("default").unwrap();
    let mut stored = Vec::new();
    for id in &ids {
        stored.push(bus.history(id.parse().unwrap(), &tenant).await.unwrap());
    }
    let (gapped, after) = (&stored[0], &stored[1]);
    assert_eq!(gapped.len(), 3);
    // The topic lost the first job's event 2 (as a Redis restarted empty would lose a view).
    let mut records = vec![record(&gapped[0]), record(&gapped[2])];
    records.extend(after.iter().map(record));
    produce(&topic, 1, &records).await;

    let projector = InProcessProjector::start_repairing(&topic, 1, &prefix, &store).await;
    projector.wait_for(RecordOutcome::Repaired, 1, WAIT).await;
    projector
        .wait_for(RecordOutcome::Applied, 1 + after.len() as u64, WAIT)
        .await;
    assert_eq!(
        projector.metrics.count(RecordOutcome::Gap),
        0,
        "nothing waited"
    );
    projector.stop().await;
    assert_eq!(view_sequence(&prefix, &gapped[0].job_id).await, Some(3));
    assert_eq!(
        view_sequence(&prefix, &after[0].job_id).await,
        Some(after.len() as u64)
    );
    let mut redis = prefix.redis.clone();
    let status: String = redis
        .hget(keys::job(&prefix.prefix, &gapped[0].job_id), "status")
        .await
        .unwrap();
    assert_eq!(status, "COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_stopped_during_a_rebalance_leaves_its_group_usable() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let topic = unique("ordo-test-projector-");
    let group = unique("ordo-test-group-");
    let job = history(false);
    produce(&topic, 1, &job.iter().map(record).collect::<Vec<_>>()).await;
    let mut projector = RoleProcess::start_projector(&db, &prefix, &topic, &group, &[]).await;
    let started = Instant::now();
    while view_sequence(&prefix, &job[0].job_id).await != Some(3) {
        assert!(started.elapsed() < WAIT, "the projector applied nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second member joins: the broker opens a rebalance, which the projector, the group's
    // leader, must rejoin. It is stopped meanwhile. Leaving now (LeaveGroup) would leave the
    // local broker's group without a leader for good (see the README); the projector goes
    // without leaving, is evicted after its session timeout, and the rebalance completes.
    let (member, topic) = (group.clone(), topic.clone());
    let second = tokio::task::spawn_blocking(move || {
        member_with_partitions(
            &member,
            &topic,
            Duration::from_secs(6),
            Duration::from_secs(30),
        )
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let status = projector.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let (_, took) = second.await.expect("the other member got the partition");
    eprintln!("the other member got the partition {took:?} after joining");
}

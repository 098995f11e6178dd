//! The read side heals itself, with no command typed: a read model lost to Redis (flushed
//! mid-load) and records lost by the broker (a group's offsets beyond the log's end) are
//! rebuilt from the event store by the projector role, and every job completes.

mod common;

use common::platform::{wait_for_events, DevProcess, RoleProcess};
use common::read_model::TestPrefix;
use common::{kafka_brokers, unique, TestDb};
use ordo_common::kafka;
use ordo_read_model::namespace::{self, ModelState};
use ordo_testkit::http::TestClient;
use ordo_testkit::stack::redis_url;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use std::time::{Duration, Instant};

/// Submits `count` noop jobs to the dev worker's queue, `pause` apart.
async fn submit_noops(api: &TestClient, count: usize, pause: Duration) {
    for _ in 0..count {
        api.submit_job(&json!({"type": "noop", "queue": "default"}))
            .await;
        tokio::time::sleep(pause).await;
    }
}

/// `ordo replay --verify` against the live model: no difference from the event store.
async fn assert_verified(db: &TestDb, prefix: &TestPrefix) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["replay", "--projector", "redis-views", "--verify"])
        .env("ORDO_DATABASE_URL", &db.url)
        .env("ORDO_REDIS_URL", redis_url())
        .env("ORDO_REDIS_PREFIX", &prefix.prefix)
        .env("ORDO_LOG_FORMAT", "text")
        .output()
        .await
        .expect("run ordo replay --verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("0 differences"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With write-through on (`ordo dev`'s default), submits and reports during the rebuild write
/// into the namespace being replaced; the rebuild's catch-up and the projector must still
/// leave a model that holds every job, each started once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_flushed_mid_load_is_rebuilt_and_every_job_completes() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[]).await;
    let api = dev.api();

    submit_noops(&api, 60, Duration::from_millis(20)).await;
    // Redis loses everything of the deployment (the live namespace, its marker, the locks)
    // while jobs are queued, running and completing.
    prefix.flush();
    submit_noops(&api, 60, Duration::from_millis(20)).await;

    wait_for_events(&db.pool, "JobCompleted", 120, Duration::from_secs(120)).await;
    let starts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'JobStarted'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(starts, 120, "a job was claimed twice");
    let rebuilt = r#"ordo_read_model_rebuilds_total{outcome="rebuilt"}"#;
    assert!(dev.metric(rebuilt).await >= 1.0, "no rebuild counted");
    assert_eq!(dev.metric("ordo_read_model_complete").await, 1.0);
    // The views follow the event store within moments.
    let started = Instant::now();
    loop {
        let stats = api.get_json("/api/v1/stats").await;
        if stats["by_status"]["COMPLETED"] == 120 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_verified(&db, &prefix).await;
}

/// A topic recreated while the group kept its offsets (the broker lost the records between):
/// the group's committed offsets are beyond the log's end. The projector role sees it and
/// rebuilds the read model from the event store instead of skipping or waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_by_the_broker_make_the_projector_rebuild_the_read_model() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = DevProcess::start(&db, &prefix, &[]).await;
    let api = dev.api();
    submit_noops(&api, 10, Duration::ZERO).await;
    wait_for_events(&db.pool, "JobCompleted", 10, Duration::from_secs(60)).await;

    // A second projector's group, whose offsets stand far beyond the log's end.
    let group = unique("ordo-test-lost-");
    commit_offsets(&group, &dev.jobs_topic, 1_000_000);
    // The watchdog looks every second.
    let env = [("ORDO_PROJECTOR_STALL_TIMEOUT_MS", "6000")];
    let projector = RoleProcess::start_projector(&db, &prefix, &dev.jobs_topic, &group, &env).await;
    let lost = r#"ordo_projector_lost_records_total{projector="redis-views"}"#;
    let started = Instant::now();
    while projector.metric(lost).await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no loss seen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Either projector process may take the rebuild lock: the live namespace is a new one.
    let mut redis = prefix.redis.clone();
    loop {
        let live = namespace::live(&mut redis, &prefix.prefix).await.unwrap();
        if live.namespace != prefix.prefix && live.state == ModelState::Complete {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not rebuilt: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    submit_noops(&api, 5, Duration::ZERO).await;
    wait_for_events(&db.pool, "JobCompleted", 15, Duration::from_secs(60)).await;
    assert_verified(&db, &prefix).await;
}

/// Commits `offset` for every partition of `topic` in `group` (which has no member).
fn commit_offsets(group: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer = kafka::client_config(&kafka_brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("topic metadata");
    let mut offsets = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        offsets
            .add_partition_offset(topic, partition.id(), Offset::Offset(offset))
            .expect("offset");
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("offsets committed");
}

//! The whole read side at scale: job histories written through the command path, relayed to
//! Kafka, projected by a real `ordo serve projector` process that is killed with SIGKILL in
//! the middle of its work and restarted; then `ordo replay --verify` must find the live views
//! equal to a replay of the event store.

mod common;

use common::read_model::{write_histories, TestPrefix};
use common::{kafka_brokers, topic_template, unique, InProcessRelay, TestDb};
use ordo_read_model::{keys, namespace};
use redis::AsyncCommands;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// About 100,000 events: 4 jobs in 7 write 3 events, the others 4 (started, failed, and
/// retry-scheduled or dead-lettered).
const JOBS: usize = 28_600;

struct ProjectorProcess(Child);

impl ProjectorProcess {
    fn spawn(db: &TestDb, prefix: &str, topic: &str, group: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["--log-format", "text", "serve", "projector"])
            .env("ORDO_DATABASE_URL", &db.url)
            .env("ORDO_KAFKA_BROKERS", kafka_brokers())
            .env("ORDO_REDIS_PREFIX", prefix)
            .env("ORDO_PROJECTOR_TOPIC", topic)
            .env("ORDO_PROJECTOR_GROUP", group)
            .env("ORDO_PROJECTOR_SESSION_TIMEOUT_MS", "2000")
            .env("ORDO_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn,ordo_projectors=info")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn ordo serve projector");
        Self(child)
    }

    fn kill_hard(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Status counts of the live view of tenant `default`.
async fn status_counts(prefix: &TestPrefix) -> BTreeMap<String, u64> {
    let mut redis = prefix.redis.clone();
    let counts: BTreeMap<String, i64> = redis
        .hgetall(keys::counts(&prefix.prefix, "default"))
        .await
        .unwrap();
    counts
        .into_iter()
        .filter_map(|(field, n)| {
            let status = field.strip_prefix("status:")?;
            (n != 0).then(|| (status.to_owned(), n as u64))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_resumes_and_its_views_equal_a_replay_of_100k_events() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let run = unique("ordo-test-read-side-");
    let template = topic_template(&run);
    let topic = template.replace("${routedByValue}", "job");

    let started = Instant::now();
    let written = write_histories(&db, JOBS, 32).await;
    eprintln!(
        "wrote {} events of {JOBS} jobs in {:.1?}",
        written.events,
        started.elapsed()
    );
    assert!(written.events >= 100_000, "{} events", written.events);
    let relay = InProcessRelay::start(&db, &unique("ordo_test_"), &template).await;

    let group = unique("ordo-test-projector-");
    // Marked complete, so that the projector role projects from Kafka (what this test is
    // about) instead of rebuilding the model from the event store it already holds.
    namespace::mark(&mut prefix.redis.clone(), &prefix.prefix, 1, 0)
        .await
        .unwrap();
    let first = ProjectorProcess::spawn(&db, &prefix.prefix, &topic, &group);
    // Kill it once a good part of the views exist, in the middle of its batches.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let projected: u64 = status_counts(&prefix).await.values().sum();
        if projected >= JOBS as u64 / 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the projector made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill_hard();
    let at_kill = status_counts(&prefix).await;

    let second = ProjectorProcess::spawn(&db, &prefix.prefix, &topic, &group);
    let deadline = Instant::now() + Duration::from_secs(240);
    while status_counts(&prefix).await != written.statuses {
        assert!(
            Instant::now() < deadline,
            "views did not converge: {:?} (expected {:?}; at the kill {at_kill:?})",
            status_counts(&prefix).await,
            written.statuses
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
    relay.stop().await;

    let verify = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["replay", "--projector", "redis-views", "--verify"])
        .env("ORDO_DATABASE_URL", &db.url)
        .env("ORDO_REDIS_PREFIX", &prefix.prefix)
        .output()
        .expect("run ordo replay --verify");
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "replay --verify found differences ({}):\n{stdout}\n{}",
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
}

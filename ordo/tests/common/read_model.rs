//! Helpers of the read-side system tests: a Redis key prefix per test (deleted afterwards),
//! records produced straight to a topic, and a projector run in-process.

use super::{kafka_brokers, unique};
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use ordo_domain::EventEnvelope;
use ordo_projectors::metrics::RecordOutcome;
use ordo_projectors::replay::{JobRepair, DEFAULT_REPAIRS_PER_SECOND};
use ordo_projectors::{ProjectorConfig, ProjectorMetrics};
pub use ordo_testkit::TestPrefix;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Produces `(key, value)` records to `topic` (created with `partitions` if missing) and
/// waits for every acknowledgement.
pub async fn produce(topic: &str, partitions: i32, records: &[(String, String)]) {
    kafka::ensure_topic(&kafka_brokers(), topic, partitions)
        .await
        .expect("create topic");
    let producer = kafka::producer(&kafka_brokers(), Duration::from_secs(30)).expect("producer");
    for (key, value) in records {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
    }
}

/// The Kafka record of an envelope: key = job id, value = the envelope's JSON.
pub fn record(envelope: &EventEnvelope) -> (String, String) {
    (
        envelope.job_id.clone(),
        serde_json::to_string(envelope).expect("envelope serializes"),
    )
}

/// A projector consuming `topic` into `prefix` inside the test process.
pub struct InProcessProjector {
    pub metrics: ProjectorMetrics,
    pub config: ProjectorConfig,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessProjector {
    /// Gaps wait: the projector has no event store to repair them from.
    pub async fn start(topic: &str, partitions: i32, prefix: &TestPrefix) -> Self {
        Self::spawn(topic, partitions, prefix, None).await
    }

    /// Gaps are repaired from the event store of `db`.
    pub async fn start_repairing(
        topic: &str,
        partitions: i32,
        prefix: &TestPrefix,
        db: &super::TestDb,
    ) -> Self {
        let repair = JobRepair::new(
            db.pool.clone(),
            prefix.redis.clone(),
            &prefix.prefix,
            DEFAULT_REPAIRS_PER_SECOND,
        );
        // Complete, as the projector role's rebuild watch would mark it: gaps are repaired
        // one job at a time, not left to a rebuild of the whole model.
        ordo_read_model::namespace::mark(&mut prefix.redis.clone(), &prefix.prefix, 1, 0)
            .await
            .expect("the read model is marked complete");
        Self::spawn(topic, partitions, prefix, Some(repair)).await
    }

    async fn spawn(
        topic: &str,
        partitions: i32,
        prefix: &TestPrefix,
        repair: Option<JobRepair>,
    ) -> Self {
        let config = ProjectorConfig {
            topic: topic.to_owned(),
            group: unique("ordo-test-projector-"),
            parking_topic: format!("{topic}.parked"),
            topic_partitions: partitions,
            // A new group member waits about half of this before its first record.
            session_timeout: Duration::from_secs(2),
            ..ProjectorConfig::new("redis-views", &kafka_brokers(), &prefix.prefix)
        };
        let metrics =
            ProjectorMetrics::register(&prometheus::Registry::new(), "redis-views").unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ordo_projectors::run_redis_views(
            config.clone(),
            prefix.redis.clone(),
            repair,
            metrics.clone(),
            RoleHealth::unobserved("projector"),
            shutdown.clone(),
        ));
        Self {
            metrics,
            config,
            shutdown,
            task,
        }
    }

    /// Waits until `outcome` was counted at least `count` times.
    pub async fn wait_for(&self, outcome: RecordOutcome, count: u64, timeout: Duration) {
        let started = Instant::now();
        while self.metrics.count(outcome) < count {
            assert!(
                started.elapsed() < timeout,
                "{outcome:?}: {} of {count} after {timeout:?}",
                self.metrics.count(outcome)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("projector task").expect("projector");
    }
}

/// What [`write_histories`] wrote.
#[derive(Debug, Default)]
pub struct Histories {
    pub events: u64,
    /// Jobs per final status.
    pub statuses: std::collections::BTreeMap<String, u64>,
}

/// Writes `jobs` job histories through the real command path (the command bus, in-process),
/// `concurrency` jobs at a time, in tenant `default`: each job is submitted and started,
/// then completed, failed with a retry ahead, cancelled or dead-lettered, in turn.
pub async fn write_histories(db: &super::TestDb, jobs: usize, concurrency: usize) -> Histories {
    use ordo_domain::spec::{QueueName, TenantId, WorkerId};
    use ordo_domain::{sample, CommandMetadata, JobCommand};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let bus = Arc::new(super::bus(db));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (bus, next) = (bus.clone(), next.clone());
        tasks.spawn(async move {
            let tenant = TenantId::parse("default").unwrap();
            let queues = ["alpha", "beta", "gamma"].map(|q| QueueName::parse(q).unwrap());
            let worker_id = WorkerId::parse("test-worker").unwrap();
            let metadata = || CommandMetadata {
                tenant: "default".into(),
                actor: "test".into(),
                correlation_id: "read-side-test".into(),
                occurred_at: chrono::Utc::now(),
            };
            let mut histories = Histories::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return histories;
                }
                let spec = sample::spec(&tenant, &queues[i % queues.len()]);
                let submitted = bus.submit(spec, None, metadata()).await.expect("submit");
                let id = submitted.job_id;
                let start = JobCommand::Start {
                    worker_id: worker_id.clone(),
                    attempt: 1,
                    lease_expires_at: chrono::Utc::now() + chrono::Duration::seconds(60),
                };
                bus.execute(id, &tenant, start, metadata())
                    .await
                    .expect("start");
                let last = match i % 4 {
                    0 => JobCommand::Complete {
                        attempt: 1,
                        result: serde_json::json!({"n": i}),
                    },
                    1 | 3 => JobCommand::Fail {
                        attempt: 1,
                        error: format!("failure {i}"),
                        retryable: i % 4 == 1,
                    },
                    _ => JobCommand::Cancel {
                        reason: "not needed".into(),
                    },
                };
                let outcome = bus
                    .execute(id, &tenant, last, metadata())
                    .await
                    .expect("last command");
                histories.events += outcome.sequence;
                *histories
                    .statuses
                    .entry(outcome.status.as_str().to_owned())
                    .or_default() += 1;
            }
        });
    }
    let mut total = Histories::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("writer task");
        total.events += done.events;
        for (status, count) in done.statuses {
            *total.statuses.entry(status).or_default() += count;
        }
    }
    total
}

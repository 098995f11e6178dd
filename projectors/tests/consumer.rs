//! The consumer loop against the real broker, writing to a sink that keeps what it was given
//! in memory: batching, offsets, parking, sink-kept offsets, gap repair and the breaker. Each
//! test has its own topic and consumer group.

use chrono::Utc;
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use ordo_projectors::metrics::{BreakerState, RecordOutcome};
use ordo_projectors::projector::{BreakerConfig, GapResolution, Sink, WriteOutcome};
use ordo_projectors::{ProjectorConfig, ProjectorMetrics};
use ordo_protocol::Backoff;
use ordo_testkit::kafka::{member_with_partitions, read_topic};
use ordo_testkit::stack::{kafka_brokers, unique};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// One record as the sink got it.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    partition: i32,
    offset: i64,
    value: String,
}

/// What a [`MemorySink`] was given, and how it behaves; shared with the test.
#[derive(Default)]
struct Memory {
    batches: Vec<Vec<Item>>,
    /// The items of every write attempt, failed ones included.
    attempted: Vec<Vec<Item>>,
    /// Write attempts so far, failed ones included.
    attempts: usize,
    /// Attempts with these numbers (from 1) fail.
    failing: Range<usize>,
    /// With `keeps_offsets`: the next offset per partition, as stored with the data.
    stored: BTreeMap<i32, i64>,
}

#[derive(Clone, Default)]
struct MemorySink {
    memory: Arc<Mutex<Memory>>,
    keeps_offsets: bool,
    repairs_gaps: bool,
}

impl MemorySink {
    fn failing(attempts: Range<usize>) -> Self {
        let sink = Self::default();
        sink.memory.lock().unwrap().failing = attempts;
        sink
    }

    fn batches(&self) -> Vec<Vec<Item>> {
        self.memory.lock().unwrap().batches.clone()
    }

    fn items(&self) -> Vec<Item> {
        self.batches().concat()
    }

    fn attempts(&self) -> usize {
        self.memory.lock().unwrap().attempts
    }

    fn attempted(&self) -> Vec<Vec<Item>> {
        self.memory.lock().unwrap().attempted.clone()
    }
}

impl Sink for MemorySink {
    type Item = Item;

    fn name(&self) -> &'static str {
        "memory"
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Values starting with `bad` are unreadable.
    fn decode(&self, record: &BorrowedMessage<'_>) -> Result<Item, String> {
        let value = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        if value.starts_with("bad") {
            return Err(format!("unreadable value {value}"));
        }
        Ok(Item {
            partition: record.partition(),
            offset: record.offset(),
            value,
        })
    }

    /// `w{n}` weighs n rows; anything else one.
    fn weight(&self, item: &Item) -> usize {
        item.value
            .strip_prefix('w')
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }

    /// Values starting with `gap` meet a gap the first time they are written.
    async fn write(&mut self, items: &[Item]) -> anyhow::Result<Vec<WriteOutcome>> {
        let mut memory = self.memory.lock().unwrap();
        memory.attempts += 1;
        memory.attempted.push(items.to_vec());
        let attempt = memory.attempts;
        anyhow::ensure!(!memory.failing.contains(&attempt), "write {attempt} fails");
        let seen: Vec<String> = memory
            .batches
            .concat()
            .into_iter()
            .map(|i| i.value)
            .collect();
        let outcomes = items
            .iter()
            .map(|item| {
                if item.value.starts_with("gap") && !seen.contains(&item.value) {
                    WriteOutcome::Gap {
                        detail: item.value.clone(),
                    }
                } else {
                    WriteOutcome::Applied {
                        occurred_at: Utc::now(),
                    }
                }
            })
            .collect();
        for item in items {
            memory.stored.insert(item.partition, item.offset + 1);
        }
        memory.batches.push(items.to_vec());
        Ok(outcomes)
    }

    async fn resolve_gap(&mut self, _item: &Item) -> anyhow::Result<GapResolution> {
        Ok(if self.repairs_gaps {
            GapResolution::Repaired
        } else {
            GapResolution::Wait
        })
    }

    fn keeps_offsets(&self) -> bool {
        self.keeps_offsets
    }

    async fn stored_offsets(
        &mut self,
        _topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        let memory = self.memory.lock().unwrap();
        Ok(partitions
            .iter()
            .filter_map(|p| Some((*p, *memory.stored.get(p)?)))
            .collect())
    }
}

/// A projector of `sink` running in the test process.
struct Running {
    metrics: ProjectorMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(config: ProjectorConfig, sink: MemorySink) -> Self {
        let metrics =
            ProjectorMetrics::register(&prometheus::Registry::new(), &config.name).unwrap();
        let shutdown = CancellationToken::new();
        let health = RoleHealth::unobserved("projector");
        let task = tokio::spawn(ordo_projectors::run(
            config,
            sink,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        Self {
            metrics,
            health,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("projector task").expect("projector");
    }
}

/// The settings of a test: its own topic and group, short session and backoff.
fn config(topic: &str, partitions: i32) -> ProjectorConfig {
    ProjectorConfig {
        topic: topic.to_owned(),
        group: unique("ordo-test-consumer-"),
        parking_topic: format!("{topic}.parked"),
        topic_partitions: partitions,
        session_timeout: Duration::from_secs(2),
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
        ..ProjectorConfig::new("memory", &kafka_brokers(), "")
    }
}

/// Produces `values` to `partition` of `topic` (made with `partitions` if missing).
async fn produce(topic: &str, partitions: i32, partition: i32, values: &[&str]) {
    kafka::ensure_topic(&kafka_brokers(), topic, partitions)
        .await
        .expect("create topic");
    let producer = kafka::producer(&kafka_brokers(), Duration::from_secs(30)).expect("producer");
    for value in values {
        send(&producer, topic, partition, value).await;
    }
}

/// `r0` … `r{count - 1}` on a new one-partition topic; returns them.
async fn produce_numbered(topic: &str, count: usize) -> Vec<String> {
    let records: Vec<String> = (0..count).map(|i| format!("r{i}")).collect();
    let values: Vec<&str> = records.iter().map(String::as_str).collect();
    produce(topic, 1, 0, &values).await;
    records
}

async fn send(producer: &kafka::Producer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            FutureRecord::<str, str>::to(topic)
                .partition(partition)
                .payload(value),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("record acknowledged");
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn values(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.value.as_str()).collect()
}

fn offsets(items: &[Item]) -> Vec<i64> {
    items.iter().map(|i| i.offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_closes_at_max_batch_records() {
    let topic = unique("ordo-test-consumer-");
    let records = produce_numbered(&topic, 10).await;
    let sink = MemorySink::default();
    let projector = Running::start(
        ProjectorConfig {
            max_batch: 4,
            // Long enough that every record is fetched before a batch could close by time.
            max_wait: Duration::from_secs(2),
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("10 records written", || sink.items().len() == 10).await;
    projector.stop().await;
    let sizes: Vec<usize> = sink.batches().iter().map(Vec::len).collect();
    // The last batch closes after `max_wait`, with the 2 records left.
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(values(&sink.items()), records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_what_comes_within_max_wait_of_its_first_record() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["first"]).await;
    let sink = MemorySink::default();
    let projector = Running::start(
        ProjectorConfig {
            max_wait: Duration::from_secs(5),
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("the first record written", || sink.items().len() == 1).await;
    // Produced one by one, well within the wait: one batch, closed by time.
    let producer = kafka::producer(&kafka_brokers(), Duration::from_secs(30)).expect("producer");
    for value in ["a", "b", "c", "d", "e"] {
        send(&producer, &topic, 0, value).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until("6 records written", || sink.items().len() == 6).await;
    projector.stop().await;
    let batches = sink.batches();
    let batches: Vec<Vec<&str>> = batches.iter().map(|b| values(b)).collect();
    assert_eq!(batches, [vec!["first"], vec!["a", "b", "c", "d", "e"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_stored_only_after_a_successful_write() {
    let topic = unique("ordo-test-consumer-");
    produce_numbered(&topic, 10).await;
    let config = ProjectorConfig {
        max_batch: 4,
        ..config(&topic, 1)
    };

    // The first write succeeds, every later one fails.
    let failing = MemorySink::failing(2..usize::MAX);
    let first = Running::start(config.clone(), failing.clone());
    wait_until("a failed write after the first batch", || {
        failing.attempts() >= 3
    })
    .await;
    first.stop().await;
    let written = failing.items();
    assert!(!written.is_empty() && written.len() < 10, "{written:?}");

    // The next member of the group starts right after what was written: nothing lost,
    // nothing committed past the failure.
    let next = MemorySink::default();
    let second = Running::start(config, next.clone());
    wait_until("the rest written", || {
        next.items().last().is_some_and(|i| i.offset == 9)
    })
    .await;
    second.stop().await;
    let expected: Vec<i64> = (written.len() as i64..10).collect();
    assert_eq!(offsets(&next.items()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_parked_with_their_reason() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["ok-1", "bad-1", "ok-2"]).await;
    let sink = MemorySink::default();
    let config = config(&topic, 1);
    let projector = Running::start(config.clone(), sink.clone());
    wait_until("both readable records written", || sink.items().len() == 2).await;
    assert_eq!(projector.metrics.count(RecordOutcome::Parked), 1);
    projector.stop().await;
    assert_eq!(values(&sink.items()), ["ok-1", "ok-2"]);

    let parked = tokio::task::spawn_blocking(move || {
        read_topic(&config.parking_topic, WAIT, |read| !read.is_empty()).remove(0)
    })
    .await
    .unwrap();
    assert_eq!(parked.value.as_deref(), Some(&b"bad-1"[..]));
    assert_eq!(
        parked.header("ordo.parked.reason"),
        Some("unreadable value bad-1")
    );
    assert_eq!(parked.header("ordo.parked.projector"), Some("memory"));
    assert_eq!(parked.header("ordo.parked.topic"), Some(topic.as_str()));
    assert_eq!(parked.header("ordo.parked.offset"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_start_at_the_offsets_the_sink_keeps() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 2, 0, &["p0-0", "p0-1", "p0-2", "p0-3", "p0-4"]).await;
    produce(&topic, 2, 1, &["p1-0", "p1-1"]).await;
    let sink = MemorySink {
        keeps_offsets: true,
        ..MemorySink::default()
    };
    // What the sink wrote before: partition 0 up to offset 3; nothing of partition 1, which
    // starts where the group stands (the beginning: a new group).
    sink.memory.lock().unwrap().stored.insert(0, 3);
    let projector = Running::start(config(&topic, 2), sink.clone());
    wait_until("4 records written", || sink.items().len() == 4).await;
    // Nothing else comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    projector.stop().await;
    let mut written = values(&sink.items())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    written.sort();
    assert_eq!(written, ["p0-3", "p0-4", "p1-0", "p1-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_the_sink_repairs_does_not_hold_the_partition() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["a", "gap-1", "b"]).await;
    let sink = MemorySink {
        repairs_gaps: true,
        ..MemorySink::default()
    };
    let projector = Running::start(
        ProjectorConfig {
            max_wait: Duration::from_secs(1),
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("3 records written", || sink.items().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Counted as repaired, not as a gap that waits.
    assert_eq!(projector.metrics.count(RecordOutcome::Repaired), 1);
    assert_eq!(projector.metrics.count(RecordOutcome::Gap), 0);
    assert_eq!(projector.metrics.count(RecordOutcome::Applied), 2);
    projector.stop().await;
    // Written once: the partition went on past the repaired gap.
    assert_eq!(values(&sink.items()), ["a", "gap-1", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_repeated_failures_and_closes_after_a_successful_trial() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["a", "b", "c"]).await;
    // 3 failures open it; the trials after the first two cool-downs fail too; the third
    // succeeds.
    let sink = MemorySink::failing(1..6);
    let projector = Running::start(
        ProjectorConfig {
            max_wait: Duration::from_secs(1),
            breaker: BreakerConfig {
                threshold: 3,
                cool_down: Backoff::new(Duration::from_millis(100), Duration::from_millis(300)),
            },
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("the records written", || !sink.items().is_empty()).await;
    // Records produced after the breaker closed still come: the partition was resumed.
    produce(&topic, 1, 0, &["d"]).await;
    wait_until("the later record written", || sink.items().len() == 4).await;
    let metrics = projector.metrics.clone();
    projector.stop().await;
    assert_eq!(sink.attempts(), 7);
    assert_eq!(values(&sink.items()), ["a", "b", "c", "d"]);
    assert_eq!(metrics.breaker_count(BreakerState::Open), 3);
    assert_eq!(metrics.breaker_count(BreakerState::HalfOpen), 3);
    assert_eq!(metrics.breaker_count(BreakerState::Closed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_closes_at_max_batch_rows_of_its_items_weights() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["w3", "w3", "w3", "w1"]).await;
    let sink = MemorySink::default();
    let projector = Running::start(
        ProjectorConfig {
            max_batch: 5,
            max_wait: Duration::from_secs(2),
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("every record written", || sink.items().len() == 4).await;
    projector.stop().await;
    let batches = sink.batches();
    let batches: Vec<Vec<&str>> = batches.iter().map(|b| values(b)).collect();
    assert_eq!(batches, [vec!["w3", "w3"], vec!["w3", "w1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_writes_the_same_batch_and_records_fetched_meanwhile_come_after_it() {
    let topic = unique("ordo-test-consumer-");
    let records = produce_numbered(&topic, 12).await;
    // Attempts 1 to 4 fail: the breaker opens twice while the records after the first
    // batch sit fetched in the consumer's queue.
    let sink = MemorySink::failing(1..5);
    let projector = Running::start(
        ProjectorConfig {
            max_batch: 3,
            max_wait: Duration::from_millis(500),
            breaker: BreakerConfig {
                threshold: 2,
                cool_down: Backoff::new(Duration::from_millis(200), Duration::from_millis(200)),
            },
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("every record written", || sink.items().len() == 12).await;
    projector.stop().await;
    let attempted = sink.attempted();
    for attempt in &attempted[..5] {
        assert_eq!(values(attempt), ["r0", "r1", "r2"], "{attempted:?}");
    }
    assert_eq!(values(&sink.items()), records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_gets_no_partitions_fails_readiness_and_recreates_its_consumer() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["a", "b", "c"]).await;
    let config = ProjectorConfig {
        stall_timeout: Duration::from_secs(2),
        ..config(&topic, 1)
    };
    // Another member of the group takes the partition and then stops polling: the group's
    // rebalance for the projector's member waits on it, as a wedged group would.
    let (group, topic) = (config.group.clone(), topic.clone());
    let (hog, _) = tokio::task::spawn_blocking(move || {
        member_with_partitions(&group, &topic, Duration::from_secs(30), WAIT)
    })
    .await
    .unwrap();

    let sink = MemorySink::default();
    let projector = Running::start(config, sink.clone());
    wait_until("readiness fails", || projector.health.reason().is_some()).await;
    let reason = projector.health.reason().unwrap();
    assert!(reason.contains("3 records to read"), "{reason}");
    assert!(reason.contains("holds 0 partitions"), "{reason}");
    wait_until("the consumer recreated", || {
        projector.metrics.recreations() >= 1
    })
    .await;
    assert!(sink.items().is_empty());
    // Not asserted: recovery once the other member leaves. The local broker's coordinator
    // never answers the remaining member's SyncGroup after a member that missed a rebalance
    // leaves (reproduced with two plain clients; see the README), so this group stays stuck,
    // which is what the watchdog is for: the projector says so instead of looking healthy.
    projector.stop().await;
    tokio::task::spawn_blocking(move || drop(hog));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_stays_down_fails_readiness_until_the_projector_progresses_again() {
    let topic = unique("ordo-test-consumer-");
    produce(&topic, 1, 0, &["a", "b"]).await;
    let sink = MemorySink::failing(1..usize::MAX);
    let projector = Running::start(
        ProjectorConfig {
            stall_timeout: Duration::from_secs(2),
            ..config(&topic, 1)
        },
        sink.clone(),
    );
    wait_until("readiness fails", || projector.health.reason().is_some()).await;
    let reason = projector.health.reason().unwrap();
    assert!(reason.contains("2 records to read"), "{reason}");

    // The sink comes back: the records are written, the offsets move, the role is ready.
    sink.memory.lock().unwrap().failing = 0..0;
    wait_until("2 records written", || sink.items().len() == 2).await;
    wait_until("ready again", || projector.health.reason().is_none()).await;
    projector.stop().await;
}

//! The projector process: a Kafka consumer group on the job topic whose batches are written
//! to the Redis read model, with offsets committed only after the write succeeded.
//!
//! Offsets are stored after each batch and committed by librdkafka in the background (every
//! `AUTO_COMMIT_INTERVAL_MS`, and on rebalance and close), not with a request per batch:
//! under load batches come hundreds per second, and a crash only means redelivery, which the
//! sequence check absorbs.
//!
//! Decisions:
//! - Batches are whatever the consumer has ready, up to `max_batch`: one record when the
//!   stream is quiet (low latency), thousands in one Redis pipeline under load (throughput).
//! - Every write is sequence-checked (see `lua/apply.lua`), so redeliveries after a crash
//!   or a rebalance are harmless, and at-least-once delivery is enough.
//! - A gap (an earlier event of the job is missing from the view) is never skipped: the
//!   partition's offset is committed up to the waiting record, the consumer seeks back to it,
//!   and it is retried with backoff, logged and counted, until the view is repaired (for
//!   example with `ordo replay --job`).
//! - A record that is not a job event this projector understands is copied to the parking
//!   topic with the reason in a header, and the projector goes on.
//! - Redis and parking failures are retried in place with capped exponential backoff until
//!   they succeed or the process stops; nothing is committed past an unwritten record.

use crate::metrics::{ProjectorMetrics, RecordOutcome};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ordo_common::kafka::{self, LoggingContext, Producer};
use ordo_domain::{EventEnvelope, JobEvent};
use ordo_protocol::Backoff;
use ordo_read_model::{namespace, ApplyOutcome, JobViews, ViewUpdate};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The job topic Debezium's EventRouter and the relay write (`outbox.event.${aggregatetype}`).
pub const DEFAULT_TOPIC: &str = "outbox.event.job";

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Names the consumer group and the parking topic by default.
    pub name: String,
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub parking_topic: String,
    /// Key prefix of the read model; the live namespace under it is resolved per batch.
    pub prefix: String,
    /// Partitions of the job topic if the projector has to create it.
    pub topic_partitions: i32,
    pub max_batch: usize,
    /// A new group member waits about half of this before its first record.
    pub session_timeout: Duration,
    /// How often librdkafka reports consumer lag.
    pub statistics_interval: Duration,
    pub backoff: Backoff,
}

impl ProjectorConfig {
    pub fn new(name: &str, brokers: &str, prefix: &str) -> Self {
        Self {
            name: name.to_owned(),
            brokers: brokers.to_owned(),
            topic: DEFAULT_TOPIC.to_owned(),
            group: format!("ordo-projector-{name}"),
            parking_topic: format!("ordo.parked.{name}"),
            prefix: prefix.to_owned(),
            topic_partitions: 6,
            max_batch: 2_000,
            session_timeout: Duration::from_secs(6),
            statistics_interval: Duration::from_secs(5),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// Consumes until `shutdown` is cancelled. Fails only when the Kafka consumer cannot be
/// made at all (bad settings); outages of Kafka and Redis are waited out.
pub async fn run(
    config: ProjectorConfig,
    redis: ConnectionManager,
    metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Brokers here do not auto-create topics, and a subscription to a missing topic idles
    // until the next metadata refresh: create it (as the relay would) so start order is free.
    let mut retry = Retry::new(config.backoff, "kafka");
    while let Err(error) =
        kafka::ensure_topic(&config.brokers, &config.topic, config.topic_partitions).await
    {
        if !retry.failed(error, &metrics, &shutdown).await {
            return Ok(());
        }
    }
    let consumer = consumer(&config, metrics.clone())?;
    consumer.subscribe(&[&config.topic])?;
    tracing::info!(
        projector = %config.name,
        topic = %config.topic,
        group = %config.group,
        "projector consuming"
    );
    let mut projector = Projector {
        views: JobViews::new(redis.clone(), &config.prefix).waking_claims(&config.prefix),
        redis,
        parking: Parking {
            producer: kafka::producer(&config.brokers, Duration::from_secs(30))?,
            topic_ready: false,
        },
        consumer: &consumer,
        metrics,
        gap_streak: 0,
        config: &config,
    };
    let mut batches = consumer.stream().ready_chunks(config.max_batch);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else { break };
        if projector.project(batch, &shutdown).await.is_none() {
            break;
        }
    }
    tracing::info!(projector = %config.name, "projector stopped");
    Ok(())
}

struct Projector<'a> {
    config: &'a ProjectorConfig,
    consumer: &'a StreamConsumer<ConsumerEvents>,
    redis: ConnectionManager,
    views: JobViews,
    parking: Parking,
    metrics: ProjectorMetrics,
    /// Consecutive batches that met a gap, for the backoff between them.
    gap_streak: u32,
}

/// Where a decoded record came from.
struct Source {
    partition: i32,
    offset: i64,
    occurred_at: DateTime<Utc>,
}

impl Projector<'_> {
    /// Writes one batch and stores its offsets for the next commit; `None` when shutdown
    /// interrupted a retry.
    async fn project(
        &mut self,
        batch: Vec<KafkaResult<BorrowedMessage<'_>>>,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        let mut updates = Vec::with_capacity(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        let mut next_offsets = BTreeMap::new();
        for message in &batch {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    // librdkafka recovers by itself; the error is only reported.
                    tracing::warn!(%error, "kafka consumer error");
                    self.metrics.error("kafka");
                    continue;
                }
            };
            match decode(message) {
                Ok((envelope, event)) => {
                    updates.push(ViewUpdate::of(&envelope, &event));
                    sources.push(Source {
                        partition: message.partition(),
                        offset: message.offset(),
                        occurred_at: envelope.occurred_at,
                    });
                }
                Err(reason) => self.park(message, &reason, shutdown).await?,
            }
            next_offsets.insert(message.partition(), message.offset() + 1);
        }

        let mut retry = Retry::new(self.config.backoff, "redis");
        let outcomes = loop {
            match self.write(&updates).await {
                Ok(outcomes) => break outcomes,
                Err(error) => retry
                    .failed(error, &self.metrics, shutdown)
                    .await
                    .then_some(())?,
            }
        };

        let now = Utc::now();
        let mut gaps = BTreeMap::new();
        for ((outcome, update), source) in outcomes.iter().zip(&updates).zip(&sources) {
            match outcome {
                ApplyOutcome::Applied => {
                    self.metrics.record(RecordOutcome::Applied, 1);
                    let lag = (now - source.occurred_at).num_microseconds().unwrap_or(0);
                    self.metrics.lag.observe(lag.max(0) as f64 / 1e6);
                }
                ApplyOutcome::Duplicate => self.metrics.record(RecordOutcome::Duplicate, 1),
                ApplyOutcome::Gap { last } => {
                    self.metrics.record(RecordOutcome::Gap, 1);
                    // Records of one partition come in offset order: the first gap wins.
                    if gaps.insert(source.partition, source.offset).is_none() {
                        tracing::warn!(
                            projector = %self.config.name,
                            job_id = %update.job_id,
                            sequence = update.sequence,
                            view_sequence = last,
                            partition = source.partition,
                            offset = source.offset,
                            "gap: an earlier event of this job is missing from the view; \
                             the partition waits here (repair with `ordo replay --job`)"
                        );
                    }
                }
            }
        }
        next_offsets.extend(gaps.iter().map(|(p, o)| (*p, *o)));
        self.store_offsets(&next_offsets);
        if gaps.is_empty() {
            self.gap_streak = 0;
            return Some(());
        }
        for (partition, offset) in &gaps {
            if let Err(error) = self.consumer.seek(
                &self.config.topic,
                *partition,
                Offset::Offset(*offset),
                Duration::from_secs(5),
            ) {
                // Without the seek the partition would move past the gap: restart from the
                // committed offset instead, which is at or before the waiting record (the
                // stored one is committed when the consumer closes).
                tracing::error!(%error, partition, "cannot seek back to a waiting record");
                self.metrics.error("kafka");
                return None;
            }
        }
        self.gap_streak += 1;
        tokio::select! {
            _ = tokio::time::sleep(self.config.backoff.delay(self.gap_streak)) => Some(()),
            _ = shutdown.cancelled() => None,
        }
    }

    fn store_offsets(&self, next_offsets: &BTreeMap<i32, i64>) {
        if next_offsets.is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next_offsets {
            // Only fails for an invalid offset, which a consumed record cannot have.
            let _ = offsets.add_partition_offset(
                &self.config.topic,
                *partition,
                Offset::Offset(*offset),
            );
        }
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            tracing::warn!(%error, "offset store failed; records will be delivered again");
            self.metrics.error("kafka");
        }
    }

    async fn park(
        &mut self,
        message: &BorrowedMessage<'_>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        tracing::warn!(
            projector = %self.config.name,
            partition = message.partition(),
            offset = message.offset(),
            reason,
            parking_topic = %self.config.parking_topic,
            "parking a record this projector cannot apply"
        );
        let mut retry = Retry::new(self.config.backoff, "parking");
        while let Err(error) = self.parking.send(self.config, message, reason).await {
            retry
                .failed(error, &self.metrics, shutdown)
                .await
                .then_some(())?;
        }
        self.metrics.record(RecordOutcome::Parked, 1);
        Some(())
    }

    /// Applies `updates` to the live namespace, resolved now so a blue/green switch is
    /// followed from the next batch on.
    async fn write(&mut self, updates: &[ViewUpdate]) -> redis::RedisResult<Vec<ApplyOutcome>> {
        let live = namespace::active(&mut self.redis, &self.config.prefix).await?;
        self.views.set_namespace(live);
        self.views.apply(updates).await
    }
}

/// The envelope and event of a record, or why it cannot be applied.
fn decode(message: &BorrowedMessage<'_>) -> Result<(EventEnvelope, JobEvent), String> {
    let payload = message.payload().ok_or("the record has no value")?;
    let envelope: EventEnvelope = serde_json::from_slice(payload)
        .map_err(|e| format!("the value is not an event envelope: {e}"))?;
    if let Some(key) = message.key() {
        if key != envelope.job_id.as_bytes() {
            return Err(format!(
                "the record key {:?} is not the envelope's job_id {}",
                String::from_utf8_lossy(key),
                envelope.job_id
            ));
        }
    }
    let event = envelope.event().map_err(|e| e.to_string())?;
    Ok((envelope, event))
}

/// The parking topic: records copied as they were, plus headers saying why and from where.
struct Parking {
    producer: Producer,
    topic_ready: bool,
}

impl Parking {
    async fn send(
        &mut self,
        config: &ProjectorConfig,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), KafkaError> {
        if !self.topic_ready {
            kafka::ensure_topic(&config.brokers, &config.parking_topic, 1).await?;
            self.topic_ready = true;
        }
        let (partition, offset) = (
            message.partition().to_string(),
            message.offset().to_string(),
        );
        let mut headers = OwnedHeaders::new()
            .insert(header("ordo.parked.reason", reason))
            .insert(header("ordo.parked.projector", &config.name))
            .insert(header("ordo.parked.topic", message.topic()))
            .insert(header("ordo.parked.partition", &partition))
            .insert(header("ordo.parked.offset", &offset));
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&config.parking_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let delivered = self
            .producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error);
        // A restarted in-memory broker forgets its topics: create it again next time.
        self.topic_ready = delivered.is_ok();
        delivered
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// The failures of one call retried until it succeeds, with capped exponential backoff
/// between them, each one logged and counted. There is no attempt limit: a projector that
/// gave up would only stop its read model, so it waits the outage out (or the shutdown).
struct Retry {
    backoff: Backoff,
    kind: &'static str,
    failures: u32,
}

impl Retry {
    fn new(backoff: Backoff, kind: &'static str) -> Self {
        Self {
            backoff,
            kind,
            failures: 0,
        }
    }

    /// Records a failure and waits before the next attempt; `false` when shutdown came first.
    async fn failed(
        &mut self,
        error: impl Display,
        metrics: &ProjectorMetrics,
        shutdown: &CancellationToken,
    ) -> bool {
        self.failures += 1;
        metrics.error(self.kind);
        let delay = self.backoff.delay(self.failures);
        tracing::warn!(
            %error,
            kind = self.kind,
            attempt = self.failures,
            retry_in_ms = delay.as_millis() as u64,
            "projector call failed; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

const AUTO_COMMIT_INTERVAL_MS: &str = "1000";

fn consumer(
    config: &ProjectorConfig,
    metrics: ProjectorMetrics,
) -> KafkaResult<StreamConsumer<ConsumerEvents>> {
    let session_ms = config.session_timeout.as_millis().max(1);
    kafka::client_config(&config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", AUTO_COMMIT_INTERVAL_MS)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set("heartbeat.interval.ms", (session_ms / 3).max(1).to_string())
        .set("fetch.wait.max.ms", "20")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set(
            "statistics.interval.ms",
            config.statistics_interval.as_millis().to_string(),
        )
        .create_with_context(ConsumerEvents {
            metrics,
            topic: config.topic.clone(),
        })
}

/// librdkafka's callbacks: logs to `tracing`, statistics to the consumer-lag gauges,
/// rebalances and failed commits to the log.
struct ConsumerEvents {
    metrics: ProjectorMetrics,
    topic: String,
}

impl ClientContext for ConsumerEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        LoggingContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LoggingContext.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (id, partition) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; -1 lag means "unknown yet".
            if *id >= 0 && partition.desired && partition.consumer_lag >= 0 {
                self.metrics.set_consumer_lag(*id, partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = ?numbers(partitions), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = ?numbers(partitions), "partitions revoked");
                for partition in numbers(partitions) {
                    self.metrics.forget_partition(partition);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed; records will be delivered again");
            self.metrics.error("kafka");
        }
    }
}

fn numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

//! The projector: one Kafka consumer loop, the same for every read model, writing to a
//! [`Sink`]. A consumer group on one topic whose batches are written by the sink, with
//! offsets stored only after the write succeeded.
//!
//! Offsets are stored after each batch and committed by librdkafka in the background (every
//! second, and on rebalance and close), not with a request per batch: under load batches
//! come hundreds per second, and a crash only means redelivery, which the sinks absorb (a
//! sequence check, or offsets kept with their data).
//!
//! Decisions:
//! - Batches close at `max_batch` records or `max_wait` after their first record
//!   (`batch`); with a zero wait (job views) a batch is what the consumer has ready.
//! - A gap (the sink's sequence check refused an event because an earlier one of the same
//!   job is missing) is never skipped: unless the sink repairs it (or the whole read model is
//!   being rebuilt from the event store, which covers it), the partition's offset is
//!   stored up to the waiting record, the consumer seeks back to it, and it is retried with
//!   backoff, logged and counted, until the read model is repaired (for example with
//!   `ordo replay --job`). Other partitions of the batch go on.
//! - A record the sink cannot decode is copied to the parking topic with the reason in a
//!   header (`parking`), and the projector goes on.
//! - Sink failures go through a circuit breaker (`breaker`): retried in place a few times,
//!   then the breaker opens, the assigned partitions are paused and the consumer is still
//!   polled (so the member stays in the group), and after a cool-down one trial write
//!   decides. Nothing is stored past an unwritten record, and a retry writes the same batch
//!   (records fetched meanwhile are fetched again later), so a sink can make its writes
//!   idempotent per batch.
//! - A batch whose partitions were revoked before it was written is dropped: another member
//!   may hold them now, and writing it would race that member's writes.
//! - A sink that keeps its offsets with its data has its partitions assigned there
//!   (`partitions`), not at the group's committed offsets.
//! - Records the broker lost (the watchdog saw the log or the group's offsets go back) are
//!   reported to the sink, which rebuilds its read model from the source of truth
//!   (`Sink::records_lost`).
//! - Parking and topic-creation failures are retried in place with capped exponential
//!   backoff until they succeed or the process stops (`retry`).
//!
//! One file per job: `batch`, `partitions`, `parking`, `breaker`, `retry`,
//! `events` (librdkafka's callbacks), `sink` (the trait).

mod batch;
mod breaker;
mod events;
mod parking;
mod partitions;
mod retry;
mod sink;
mod watchdog;

pub use breaker::BreakerConfig;
pub use sink::{GapResolution, Sink, WriteOutcome};

use crate::metrics::{ProjectorMetrics, RecordOutcome};
use batch::Batch;
use batch::Collected;
use breaker::{Breaker, Next};
use chrono::Utc;
use events::{ConsumerEvents, ProjectorConsumer, Rebalances};
use futures::StreamExt;
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use ordo_protocol::Backoff;
use parking::Parking;
use rdkafka::consumer::{CommitMode, Consumer, MessageStream};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use retry::Retry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use watchdog::{LostRecords, Watched};

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
    /// Key prefix of the Redis read model (the `redis-views` sink); the live namespace under
    /// it is resolved per batch.
    pub prefix: String,
    /// Partitions of the topic if the projector has to create it.
    pub topic_partitions: i32,
    pub max_batch: usize,
    /// How long a batch may wait for more records after its first; zero takes what is ready.
    pub max_wait: Duration,
    /// Longest wait for one call of the sink.
    pub write_timeout: Duration,
    /// A new group member waits about half of this before its first record.
    pub session_timeout: Duration,
    /// How often librdkafka reports consumer lag.
    pub statistics_interval: Duration,
    /// Between retries of Kafka calls, of a waiting record, and of sink writes before the
    /// breaker opens.
    pub backoff: Backoff,
    pub breaker: BreakerConfig,
    /// A group with records to read whose offsets stand still this long is stalled: the
    /// role's readiness fails and the consumer is recreated (see `watchdog`).
    pub stall_timeout: Duration,
    /// Whether the consumer leaves its group when the projector stops (LeaveGroup: its
    /// partitions move to the other members at once), or goes without leaving and is evicted
    /// after the session timeout. Leaving is Kafka's usual way; the local broker wedges a
    /// group when its leader leaves during a rebalance, so `ordo serve` does not leave.
    pub leave_group_on_stop: bool,
    /// Gaps the `redis-views` sink repairs per second from the event store, when the role
    /// has one (0: none; gaps wait for `ordo replay --job`).
    pub gap_repairs_per_second: u32,
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
            max_wait: Duration::ZERO,
            write_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(6),
            statistics_interval: Duration::from_secs(5),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            breaker: BreakerConfig::default(),
            stall_timeout: Duration::from_secs(60),
            leave_group_on_stop: true,
            gap_repairs_per_second: crate::replay::DEFAULT_REPAIRS_PER_SECOND,
        }
    }
}

/// Consumes `config.topic` into `sink` until `shutdown` is cancelled, saying through
/// `health` when it stalls. Fails only when the Kafka clients cannot be made at all (bad
/// settings); outages of Kafka and of the sink are waited out.
pub async fn run<S: Sink>(
    config: ProjectorConfig,
    sink: S,
    metrics: ProjectorMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(config.max_batch >= 1, "max_batch must be at least 1");
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
    let rebalances = Arc::new(Rebalances::new(sink.keeps_offsets()));
    let recreate = Arc::new(Notify::new());
    let lost = Arc::new(LostRecords::default());
    let mut projector = Projector {
        consumer: subscribed(&config, &metrics, &rebalances)?,
        breaker: Breaker::new(config.breaker, config.backoff, metrics.clone(), sink.name()),
        parking: Parking::new(&config)?,
        sink,
        rebalances: rebalances.clone(),
        recreate: recreate.clone(),
        metrics: metrics.clone(),
        gap_streak: 0,
        lost: lost.clone(),
        config: &config,
    };
    tracing::info!(
        projector = %config.name,
        sink = projector.sink.name(),
        topic = %config.topic,
        group = %config.group,
        "projector consuming"
    );
    let watching = shutdown.child_token();
    let watched = Watched {
        assigned: rebalances.held.clone(),
        recreate,
        lost,
    };
    tokio::spawn(watchdog::watch(
        config.clone(),
        health,
        metrics.clone(),
        watched,
        watching.clone(),
    ));
    let _stop_watching = watching.drop_guard();
    while let Ended::Recreate = projector.consume(&shutdown).await {
        // The old member leaves (and commits what was stored) before the new one joins: a
        // leader leaving while the new member's join holds a rebalance open is what wedges a
        // group on the local broker (see the README). Closing blocks; it is bounded.
        let stale = std::mem::replace(
            &mut projector.consumer,
            new_member(&config, &metrics, &rebalances)?,
        );
        let closed = tokio::task::spawn_blocking(move || drop(stale));
        if tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err() {
            tracing::warn!("the old consumer did not close in time; the new one joins anyway");
        }
        projector.consumer.subscribe(&[&config.topic])?;
    }
    if !config.leave_group_on_stop {
        stay_in_group(projector.consumer).await;
    }
    tracing::info!(projector = %config.name, "projector stopped");
    Ok(())
}

/// A new consumer (a new group member) subscribed to the topic.
fn subscribed(
    config: &ProjectorConfig,
    metrics: &ProjectorMetrics,
    rebalances: &Arc<Rebalances>,
) -> anyhow::Result<Arc<ProjectorConsumer>> {
    let consumer = new_member(config, metrics, rebalances)?;
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// A new consumer, which joins the group (a new member) once it subscribes.
fn new_member(
    config: &ProjectorConfig,
    metrics: &ProjectorMetrics,
    rebalances: &Arc<Rebalances>,
) -> anyhow::Result<Arc<ProjectorConsumer>> {
    Ok(Arc::new(events::consumer(
        config,
        metrics.clone(),
        rebalances.clone(),
    )?))
}

/// Longest wait for a replaced consumer to leave its group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops without leaving the group: commits what was stored, then keeps the consumer from
/// closing (closing sends LeaveGroup) until the process exits; the group evicts the member
/// after its session timeout. The local broker wedges a group for good when its leader
/// leaves during a rebalance (see the README), which a member cannot rule out: it learns of
/// a rebalance only at its next heartbeat.
async fn stay_in_group(consumer: Arc<ProjectorConsumer>) {
    let committing = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || committing.commit_consumer_state(CommitMode::Sync));
    match tokio::time::timeout(CLOSE_TIMEOUT, committed).await {
        Ok(Ok(Ok(()))) => {}
        // Nothing stored since the last commit is the common case at shutdown.
        Ok(Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => {}
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "final offset commit failed; records will be delivered again");
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("final offset commit did not finish; records may be delivered again");
        }
    }
    std::mem::forget(consumer);
}

/// A call of the sink, failed when it takes longer than `limit`.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {limit:?}")))
}

/// What became of a batch handed to the sink.
enum Written {
    Outcomes(Vec<WriteOutcome>),
    /// Its partitions were revoked before it could be written.
    Revoked,
    Shutdown,
}

/// Why [`Projector::consume`] returned.
enum Ended {
    Shutdown,
    /// The watchdog asked for a new consumer.
    Recreate,
}

struct Projector<'a, S> {
    config: &'a ProjectorConfig,
    consumer: Arc<ProjectorConsumer>,
    rebalances: Arc<Rebalances>,
    /// Notified by the watchdog when the consumer is to be recreated.
    recreate: Arc<Notify>,
    sink: S,
    breaker: Breaker,
    parking: Parking,
    metrics: ProjectorMetrics,
    /// Consecutive batches that met a gap, for the backoff between them.
    gap_streak: u32,
    /// Records the broker lost, reported by the watchdog.
    lost: Arc<LostRecords>,
}

impl<S: Sink> Projector<'_, S> {
    async fn consume(&mut self, shutdown: &CancellationToken) -> Ended {
        let consumer = self.consumer.clone();
        let mut stream = consumer.stream();
        loop {
            if let Some(partitions) = self.rebalances.take_pending() {
                if self
                    .assign_at_sink_offsets(partitions, shutdown)
                    .await
                    .is_none()
                {
                    return Ended::Shutdown;
                }
            }
            if let Some(detail) = self.lost.take() {
                if self.records_lost(detail, shutdown).await.is_none() {
                    return Ended::Shutdown;
                }
            }
            let batch = match self.collect(&mut stream, shutdown).await {
                Collected::Batch(batch) => batch,
                Collected::Recreate => return Ended::Recreate,
                Collected::Shutdown => return Ended::Shutdown,
            };
            if batch.records == 0 {
                continue;
            }
            let written = self.write(&batch, &mut stream, shutdown).await;
            self.resume();
            let outcomes = match written {
                Written::Outcomes(outcomes) => outcomes,
                Written::Revoked => continue,
                Written::Shutdown => return Ended::Shutdown,
            };
            if self.settle(batch, outcomes, shutdown).await.is_none() {
                return Ended::Shutdown;
            }
        }
    }

    /// Writes the batch through the breaker until it succeeds, unless shutdown comes or the
    /// batch's partitions are revoked meanwhile (they may be another member's now: the
    /// batch is dropped, and read again by whoever holds them). While the breaker is open
    /// the partitions are paused and the stream polled; a record fetched before the pause
    /// took hold is not added to the batch (a retry writes exactly what the failed write
    /// had, which idempotent sinks rely on) but fetched again: its partition is sought back
    /// to it before the trial write.
    async fn write(
        &mut self,
        batch: &Batch<S::Item>,
        stream: &mut MessageStream<'_, ConsumerEvents>,
        shutdown: &CancellationToken,
    ) -> Written {
        if batch.items.is_empty() {
            return Written::Outcomes(Vec::new());
        }
        loop {
            if self.rebalances.generation() != batch.generation {
                tracing::info!(
                    sink = self.sink.name(),
                    records = batch.items.len(),
                    "partitions revoked before the batch was written; it is read again"
                );
                return Written::Revoked;
            }
            if let Next::OpenUntil(until) = self.breaker.next() {
                self.pause();
                let mut held_back = BTreeMap::new();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Written::Shutdown,
                        _ = tokio::time::sleep_until(until) => break,
                        message = stream.next() => {
                            let Some(message) = message else { return Written::Shutdown };
                            if let Some(message) = self.consumed(message) {
                                held_back.entry(message.partition()).or_insert(message.offset());
                            }
                        }
                    }
                }
                if self.rebalances.generation() == batch.generation
                    && self.seek_back(&held_back).is_none()
                {
                    return Written::Shutdown;
                }
                continue;
            }
            let error = match self.write_once(batch).await {
                Ok(outcomes) => {
                    self.breaker.succeeded();
                    return Written::Outcomes(outcomes);
                }
                Err(error) => error,
            };
            self.metrics.error(self.sink.error_kind(&error));
            tracing::warn!(
                error = format!("{error:#}"),
                sink = self.sink.name(),
                records = batch.items.len(),
                "sink write failed; nothing past the batch is stored"
            );
            if let Some(delay) = self.breaker.failed() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Written::Shutdown,
                }
            }
        }
    }

    async fn write_once(&mut self, batch: &Batch<S::Item>) -> anyhow::Result<Vec<WriteOutcome>> {
        let started = std::time::Instant::now();
        let items = &batch.items;
        let outcomes = bounded(self.config.write_timeout, self.sink.write(items)).await?;
        anyhow::ensure!(
            outcomes.len() == items.len(),
            "the sink answered {} outcomes for {} items",
            outcomes.len(),
            items.len()
        );
        let rows = items.iter().map(|item| self.sink.weight(item)).sum();
        self.metrics.written(started.elapsed().as_secs_f64(), rows);
        Ok(outcomes)
    }

    /// Counts the outcomes, stores the offsets of what was written, and holds partitions at
    /// their first gap; `None` when shutdown came or a seek failed.
    async fn settle(
        &mut self,
        batch: Batch<S::Item>,
        outcomes: Vec<WriteOutcome>,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        let now = Utc::now();
        let mut waiting = BTreeMap::new();
        for ((outcome, item), (partition, offset)) in
            outcomes.into_iter().zip(&batch.items).zip(batch.sources)
        {
            let detail = match outcome {
                WriteOutcome::Applied { occurred_at } => {
                    self.metrics.record(RecordOutcome::Applied, 1);
                    self.metrics.rows_written(self.sink.weight(item) as u64);
                    let lag = (now - occurred_at).num_microseconds().unwrap_or(0);
                    self.metrics.lag.observe(lag.max(0) as f64 / 1e6);
                    continue;
                }
                WriteOutcome::Duplicate => {
                    self.metrics.record(RecordOutcome::Duplicate, 1);
                    continue;
                }
                WriteOutcome::Gap { detail } => detail,
            };
            // Records of one partition come in offset order: the first gap not repaired wins.
            if waiting.contains_key(&partition) {
                self.metrics.record(RecordOutcome::Gap, 1);
                continue;
            }
            if let Some(outcome) = self.resolved(item, &detail).await {
                self.metrics.record(outcome, 1);
                continue;
            }
            self.metrics.record(RecordOutcome::Gap, 1);
            tracing::warn!(
                projector = %self.config.name,
                detail,
                partition,
                offset,
                "gap: an earlier event is missing from the read model; the partition waits \
                 here (repair with `ordo replay --job`)"
            );
            waiting.insert(partition, offset);
        }
        let mut next_offsets = batch.next_offsets;
        next_offsets.extend(&waiting);
        self.store_offsets(&next_offsets);
        if waiting.is_empty() {
            self.gap_streak = 0;
            return Some(());
        }
        self.seek_back(&waiting)?;
        self.gap_streak += 1;
        tokio::select! {
            _ = tokio::time::sleep(self.config.backoff.delay(self.gap_streak)) => Some(()),
            _ = shutdown.cancelled() => None,
        }
    }

    /// How the sink resolved the gap `item` met (`Repaired`, `Superseded`), or `None` when
    /// the record waits.
    async fn resolved(&mut self, item: &S::Item, detail: &str) -> Option<RecordOutcome> {
        let resolved = bounded(self.config.write_timeout, self.sink.resolve_gap(item)).await;
        match resolved {
            Ok(GapResolution::Repaired) => {
                tracing::info!(projector = %self.config.name, detail, "gap repaired by the sink");
                Some(RecordOutcome::Repaired)
            }
            Ok(GapResolution::Superseded) => {
                tracing::debug!(projector = %self.config.name, detail, "gap left to the read model's rebuild");
                Some(RecordOutcome::Superseded)
            }
            Ok(GapResolution::Wait) => None,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    detail,
                    "the sink could not repair a gap"
                );
                self.metrics.error(self.sink.error_kind(&error));
                None
            }
        }
    }

    /// The broker lost records (see [`Sink::records_lost`]): the sink is told, until it
    /// answers (or shutdown); `None` at shutdown.
    async fn records_lost(&mut self, detail: String, shutdown: &CancellationToken) -> Option<()> {
        tracing::error!(
            projector = %self.config.name,
            detail,
            "the broker lost records of the topic; the read model is rebuilt from the event store"
        );
        self.metrics.records_lost();
        let mut retry = Retry::new(self.config.backoff, self.sink.backend());
        loop {
            match bounded(self.config.write_timeout, self.sink.records_lost(&detail)).await {
                Ok(()) => return Some(()),
                Err(error) => retry
                    .failed(format!("{error:#}"), &self.metrics, shutdown)
                    .await
                    .then_some(())?,
            }
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
}

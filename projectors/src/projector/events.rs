//! The Kafka consumer and librdkafka's callbacks: logs to `tracing`, statistics to the
//! consumer-lag gauges, failed commits to the log, and rebalances, which are shared with the
//! loop through [`Rebalances`] (they run inside the loop's own polls).

use super::ProjectorConfig;
use crate::metrics::ProjectorMetrics;
use ordo_common::kafka::{self, LoggingContext};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const AUTO_COMMIT_INTERVAL_MS: &str = "1000";

pub(super) type ProjectorConsumer = StreamConsumer<ConsumerEvents>;

pub(super) fn consumer(
    config: &ProjectorConfig,
    metrics: ProjectorMetrics,
    rebalances: Arc<Rebalances>,
) -> KafkaResult<ProjectorConsumer> {
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
            rebalances,
        })
}

/// What the rebalance callbacks tell the loop, and what the loop tells them.
pub(super) struct Rebalances {
    /// Whether assignments wait for the sink's stored offsets (see `Sink::keeps_offsets`).
    sink_offsets: bool,
    /// Partitions assigned to this member whose offsets the loop has to ask the sink for,
    /// before assigning them. At most one assignment: a newer one replaces it.
    pending: Mutex<Option<Vec<i32>>>,
    /// Wakes the loop when `pending` is set.
    pub assigned: Notify,
    /// Set while the breaker is open: partitions assigned meanwhile are paused at once.
    pub paused: AtomicBool,
    /// Partitions this member holds (the stall watchdog reports it).
    pub held: Arc<AtomicUsize>,
    /// Counts the assignments taken away (revoked, or lost to a failed rebalance): records
    /// of an earlier generation may belong to another member now.
    generation: AtomicU64,
}

impl Rebalances {
    pub fn new(sink_offsets: bool) -> Self {
        Self {
            sink_offsets,
            pending: Mutex::new(None),
            assigned: Notify::new(),
            paused: AtomicBool::new(false),
            held: Arc::default(),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn revoked(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn take_pending(&self) -> Option<Vec<i32>> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn set_pending(&self, partitions: Option<Vec<i32>>) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = partitions;
    }
}

pub(super) struct ConsumerEvents {
    metrics: ProjectorMetrics,
    topic: String,
    rebalances: Arc<Rebalances>,
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
    /// The eager protocol (librdkafka's default assignors): every rebalance revokes the whole
    /// assignment, then assigns the new one. An assignment of a sink that keeps its offsets
    /// is left to the loop, which assigns it at the sink's offsets: librdkafka allows the
    /// assign call outside the callback, and fetches nothing until it comes.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions = numbers(tpl);
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(?partitions, "partitions assigned");
                self.rebalances
                    .held
                    .store(partitions.len(), Ordering::Relaxed);
                if self.rebalances.sink_offsets {
                    self.rebalances.set_pending(Some(partitions));
                    self.rebalances.assigned.notify_one();
                    Ok(())
                } else {
                    consumer.assign(tpl).and_then(|()| {
                        if self.rebalances.paused.load(Ordering::Relaxed) {
                            consumer.pause(tpl)
                        } else {
                            Ok(())
                        }
                    })
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(?partitions, "partitions revoked");
                self.rebalances.held.store(0, Ordering::Relaxed);
                for partition in partitions {
                    self.metrics.forget_partition(partition);
                }
                self.rebalances.set_pending(None);
                self.rebalances.revoked();
                consumer.unassign()
            }
            error => {
                tracing::warn!(error = %KafkaError::Rebalance(error.into()), "rebalance failed");
                self.rebalances.revoked();
                consumer.unassign()
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "cannot apply a rebalance");
            self.metrics.error("kafka");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed; records will be delivered again");
            self.metrics.error("kafka");
        }
    }
}

/// The partition numbers of a list.
pub(super) fn numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

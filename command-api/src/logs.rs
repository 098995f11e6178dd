//! The Kafka side of job log lines: one record per line on `ordo.logs`, for the logs read
//! model (and anything else that reads the topic).

use chrono::{DateTime, Utc};
use ordo_common::kafka::{self, Producer};
use ordo_protocol::worker::LogLevel;
use prometheus::{IntCounterVec, Opts, Registry};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;
use uuid::Uuid;

/// The topic log lines go to unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "ordo.logs";

/// The `service` of lines a job's worker wrote; other services' logs will share the topic.
pub const JOB_SERVICE: &str = "job";

/// How long a batch of lines may take to be acknowledged. Also the producer's message timeout:
/// a line the client was told failed should not reach Kafka much later through librdkafka's
/// own retries, beside the copy the client sends again.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One log line as a Kafka record: the wire contract of topic `ordo.logs`.
///
/// Key: the job id (so a job's lines share a partition with its events, in order). Value, one
/// JSON object per line:
///
/// ```json
/// {"tenant": "acme", "service": "job", "job_id": "0193…", "attempt": 1,
///  "worker_id": "w-1" or null, "level": "trace|debug|info|warn|error",
///  "message": "…", "fields": {…}, "ts": "2026-11-21T10:00:00.250Z",
///  "received_at": "2026-11-21T10:00:00.310Z"}
/// ```
///
/// `fields` is an object (`{}` when the worker sent none); `ts` is when the worker says the
/// line was written (the command API's clock when it did not say), `received_at` when the
/// command API took it; both RFC 3339 in UTC. Delivery is at-least-once: a client that
/// retries after an error may have some of its lines on the topic twice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    pub tenant: String,
    pub service: &'static str,
    pub job_id: Uuid,
    pub attempt: u32,
    pub worker_id: Option<String>,
    pub level: LogLevel,
    pub message: String,
    pub fields: Map<String, Value>,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogSinkError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("Kafka did not acknowledge the lines within {SEND_TIMEOUT:?}")]
    Timeout,
}

/// Produces log records to one topic.
#[derive(Clone)]
pub struct LogSink {
    producer: Producer,
    topic: String,
}

impl LogSink {
    /// Creates `topic` with `partitions` partitions unless it exists (brokers here do not
    /// auto-create topics), then the producer.
    pub async fn connect(brokers: &str, topic: &str, partitions: i32) -> Result<Self, KafkaError> {
        kafka::ensure_topic(brokers, topic, partitions).await?;
        Ok(Self {
            producer: kafka::producer(brokers, SEND_TIMEOUT)?,
            topic: topic.to_owned(),
        })
    }

    /// Returns once Kafka has acknowledged every record, so a caller that answers success
    /// after it never loses a line; fails after 5 s at most.
    pub async fn send(&self, records: &[LogRecord]) -> Result<(), LogSinkError> {
        let mut deliveries = Vec::with_capacity(records.len());
        // Enqueued one after the other: the idempotent producer keeps that order per partition.
        for record in records {
            let key = record.job_id.to_string();
            let value = serde_json::to_vec(record).expect("a log record is plain JSON");
            let delivery = self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(&key).payload(&value))
                .map_err(|(error, _)| error)?;
            deliveries.push(delivery);
        }
        let delivered = tokio::time::timeout(SEND_TIMEOUT, futures::future::join_all(deliveries))
            .await
            .map_err(|_| LogSinkError::Timeout)?;
        for delivery in delivered {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(error.into()),
                Err(_) => return Err(KafkaError::Canceled.into()),
            }
        }
        Ok(())
    }
}

/// `ordo_logs_ingested_total{source}`: log lines Kafka acknowledged. Cheap to clone.
#[derive(Clone)]
pub struct LogMetrics {
    ingested: IntCounterVec,
}

impl LogMetrics {
    /// Registers the instrument in `registry`; once per registry.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ingested = IntCounterVec::new(
            Opts::new(
                "ordo_logs_ingested_total",
                "Log lines acknowledged by Kafka, by source (job)",
            ),
            &["source"],
        )?;
        registry.register(Box::new(ingested.clone()))?;
        Ok(Self { ingested })
    }

    /// `lines` lines of `source` (a record's `service`) are on the topic.
    pub fn record_ingested(&self, source: &str, lines: usize) {
        self.ingested
            .with_label_values(&[source])
            .inc_by(lines as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_common::http::render_metrics;

    #[test]
    fn ingested_lines_are_counted_by_source() {
        let registry = Registry::new();
        let metrics = LogMetrics::register(&registry).unwrap();
        metrics.record_ingested(JOB_SERVICE, 3);
        metrics.clone().record_ingested(JOB_SERVICE, 2);
        let text = render_metrics(&registry);
        assert!(
            text.contains(r#"ordo_logs_ingested_total{source="job"} 5"#),
            "{text}"
        );
        assert!(
            LogMetrics::register(&registry).is_err(),
            "once per registry"
        );
    }
}

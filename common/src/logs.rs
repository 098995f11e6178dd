//! The producing side of topic `ordo.logs` (contract v2: [`ordo_protocol::logs`]), shared by
//! the log-aggregator role and the command API's worker endpoint, and the metrics of log
//! ingestion, which both count into.

use crate::kafka::{self, LoggingContext, Producer};
use ordo_protocol::logs::{LogBatch, MAX_RECORD_BYTES};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use std::time::Duration;

/// The topic log lines go to unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "ordo.logs";

/// How long a request's records may take to be acknowledged. Also the producer's message
/// timeout: lines the client was told failed should not reach Kafka much later through
/// librdkafka's own retries, beside the copy the client sends again.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The producer's buffer; a full buffer fails a send at once (503) instead of queueing more.
const QUEUE_KBYTES: &str = "262144";

#[derive(Debug, thiserror::Error)]
pub enum LogSinkError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("Kafka did not acknowledge the lines within {SEND_TIMEOUT:?}")]
    Timeout,
}

/// Produces log batches to one topic. Cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    producer: Producer,
    topic: String,
}

impl LogSink {
    /// Creates `topic` with `partitions` partitions unless it exists (brokers here do not
    /// auto-create topics), then the producer: idempotent, lz4-compressed batches.
    pub async fn connect(brokers: &str, topic: &str, partitions: i32) -> Result<Self, KafkaError> {
        kafka::ensure_topic(brokers, topic, partitions).await?;
        let producer = kafka::producer_config(brokers, SEND_TIMEOUT)
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", QUEUE_KBYTES)
            .create_with_context(LoggingContext)?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Returns once Kafka has acknowledged every record of `batches` (each batch one record,
    /// or several under [`MAX_RECORD_BYTES`]), so a caller that answers success after it
    /// never loses a line; fails after 5 s at most.
    pub async fn send(&self, batches: &[LogBatch]) -> Result<(), LogSinkError> {
        let mut deliveries = Vec::with_capacity(batches.len());
        // Enqueued one after the other: the idempotent producer keeps that order per partition.
        for batch in batches {
            let key = batch.key();
            for value in batch.encode(MAX_RECORD_BYTES) {
                let delivery = self
                    .producer
                    .send_result(FutureRecord::to(&self.topic).key(&key).payload(&value))
                    .map_err(|(error, _)| error)?;
                deliveries.push(delivery);
            }
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

/// The instruments of log ingestion, labelled by `protocol` (`native`, `otlp`,
/// `elasticsearch`, `loki`, `job`) and, for refusals, a `reason` from a fixed set. Cheap to
/// clone; register once per registry and hand the clone to every role of the process.
#[derive(Clone)]
pub struct LogMetrics {
    accepted: IntCounterVec,
    rejected_lines: IntCounterVec,
    rejected_requests: IntCounterVec,
    adjusted: IntCounterVec,
    bytes: IntCounterVec,
    limiter_errors: IntCounter,
}

impl LogMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        let limiter_errors = IntCounter::new(
            "ordo_log_limiter_errors_total",
            "Ingest requests let through because the rate limiter (Redis) failed or was slow",
        )?;
        registry.register(Box::new(limiter_errors.clone()))?;
        Ok(Self {
            accepted: counter(
                "ordo_log_lines_accepted_total",
                "Log lines acknowledged by Kafka, by protocol",
                &["protocol"],
            )?,
            rejected_lines: counter(
                "ordo_log_lines_rejected_total",
                "Log lines refused, by protocol and reason (invalid, rate_limited, \
                 unavailable, unsupported)",
                &["protocol", "reason"],
            )?,
            rejected_requests: counter(
                "ordo_log_requests_rejected_total",
                "Log requests refused whole, by protocol and reason (malformed, invalid, \
                 too_large, unsupported, rate_limited, busy, unavailable)",
                &["protocol", "reason"],
            )?,
            adjusted: counter(
                "ordo_log_lines_adjusted_total",
                "Accepted log lines changed by a documented rule, by protocol and rule \
                 (truncated, timestamp, level)",
                &["protocol", "rule"],
            )?,
            bytes: counter(
                "ordo_log_bytes_received_total",
                "Bytes of accepted log request bodies (decompressed), by protocol",
                &["protocol"],
            )?,
            limiter_errors,
        })
    }

    pub fn accepted(&self, protocol: &str, lines: usize) {
        self.accepted
            .with_label_values(&[protocol])
            .inc_by(lines as u64);
    }

    /// A request refused whole for `reason`, carrying `lines` lines when they are known.
    pub fn rejected_request(&self, protocol: &str, reason: &str, lines: usize) {
        self.rejected_requests
            .with_label_values(&[protocol, reason])
            .inc();
        self.rejected_lines(protocol, reason, lines);
    }

    /// Lines refused one by one (an item of a bulk request) or with their request.
    pub fn rejected_lines(&self, protocol: &str, reason: &str, lines: usize) {
        if lines > 0 {
            self.rejected_lines
                .with_label_values(&[protocol, reason])
                .inc_by(lines as u64);
        }
    }

    pub fn adjusted(&self, protocol: &str, rule: &str, lines: usize) {
        if lines > 0 {
            self.adjusted
                .with_label_values(&[protocol, rule])
                .inc_by(lines as u64);
        }
    }

    pub fn bytes(&self, protocol: &str, bytes: usize) {
        self.bytes
            .with_label_values(&[protocol])
            .inc_by(bytes as u64);
    }

    pub fn limiter_error(&self) {
        self.limiter_errors.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::render_metrics;

    #[test]
    fn lines_are_counted_by_protocol_and_reason() {
        let registry = Registry::new();
        let metrics = LogMetrics::register(&registry).unwrap();
        metrics.accepted("job", 3);
        metrics.clone().accepted("job", 2);
        metrics.rejected_request("otlp", "rate_limited", 7);
        metrics.rejected_request("native", "malformed", 0);
        let text = render_metrics(&registry);
        for expected in [
            r#"ordo_log_lines_accepted_total{protocol="job"} 5"#,
            r#"ordo_log_lines_rejected_total{protocol="otlp",reason="rate_limited"} 7"#,
            r#"ordo_log_requests_rejected_total{protocol="otlp",reason="rate_limited"} 1"#,
            r#"ordo_log_requests_rejected_total{protocol="native",reason="malformed"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        assert!(!text.contains(r#"reason="malformed"} 0"#), "{text}");
        assert!(
            LogMetrics::register(&registry).is_err(),
            "once per registry"
        );
    }
}

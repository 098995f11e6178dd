//! Kafka client set-up shared by the relay and the projectors: common settings, librdkafka's
//! logs in `tracing`, an idempotent producer that partitions like Java clients do, and topic
//! creation through the admin API (brokers here do not auto-create topics).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, ProducerContext};
use std::time::Duration;

/// How long the admin API may take to create a topic.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Forwards librdkafka's own logs and errors (a broker going away, say) to `tracing`, so an
/// outage shows in the process's logs while librdkafka retries underneath.
#[derive(Clone, Default)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "kafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "kafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "kafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, "kafka client error: {reason}");
    }
}

impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

pub type Producer = FutureProducer<LoggingContext>;

/// Settings shared by every Kafka client Ordo makes.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    config
}

/// An idempotent producer (no duplicates from its own retries, order kept per partition)
/// whose keyed records land on the partition Java's default partitioner, and so Debezium,
/// would choose. `message_timeout` bounds how long a record may wait for a broker; after it
/// the delivery fails and the relay restarts from the last acknowledged position.
pub fn producer(brokers: &str, message_timeout: Duration) -> Result<Producer, KafkaError> {
    producer_config(brokers, message_timeout).create_with_context(LoggingContext)
}

/// The settings of [`producer`], for a producer that changes some (compression, say).
pub fn producer_config(brokers: &str, message_timeout: Duration) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .set("batch.num.messages", "10000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.max.bytes", "10000000")
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        );
    config
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<LoggingContext> =
        client_config(brokers).create_with_context(LoggingContext)?;
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(topic = %name, ?code, "cannot create topic");
                });
            }
        }
    }
    Ok(())
}

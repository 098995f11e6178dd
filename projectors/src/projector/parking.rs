//! The parking topic: records a sink cannot decode, copied as they were, plus headers saying
//! why and from where.

use super::ProjectorConfig;
use ordo_common::kafka::{self, Producer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::time::Duration;

/// Longest wait for the broker to acknowledge a parked record.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Parking {
    producer: Producer,
    topic_ready: bool,
}

impl Parking {
    pub fn new(config: &ProjectorConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: kafka::producer(&config.brokers, Duration::from_secs(30))?,
            topic_ready: false,
        })
    }

    pub async fn send(
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
            .send(record, SEND_TIMEOUT)
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

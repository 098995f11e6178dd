//! Reading a topic back, without a consumer group to form: every partition assigned from the
//! beginning.

use crate::stack::{kafka_brokers, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A record as read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn event_id(&self) -> Uuid {
        self.header("id")
            .and_then(|id| Uuid::parse_str(id).ok())
            .expect("every record has an id header")
    }
}

/// A consumer assigned every partition of `topic` from the beginning, once the topic exists
/// (the relay creates it with its first record). No consumer group has to form.
pub fn assigned_consumer(brokers: &str, topic: &str, timeout: Duration) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("ordo-test-reader-"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let count = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
            .unwrap_or(0);
        if count > 0 {
            break count;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} did not appear on {brokers} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Reads `topic` of the local broker from the beginning until `done(records)` holds or
/// `timeout` passes; returns what it read.
pub fn read_topic(
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let consumer = assigned_consumer(&kafka_brokers(), topic, timeout);
    let mut records = Vec::new();
    while !done(&records) && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("kafka read");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Consumed {
            partition: message.partition(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records
}

/// A plain member of consumer group `group` on `topic` (session timeout `session`), polled
/// until it holds a partition; panics after `timeout`. Blocking: call it off the runtime.
/// Returns the member, which stops polling from then on, and how long it waited.
pub fn member_with_partitions(
    group: &str,
    topic: &str,
    session: Duration,
    timeout: Duration,
) -> (BaseConsumer, Duration) {
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", group)
        .set("session.timeout.ms", session.as_millis().to_string())
        .create()
        .expect("consumer");
    member.subscribe(&[topic]).expect("subscribe");
    let joined = Instant::now();
    while member.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(
            joined.elapsed() < timeout,
            "a member of group {group} got no partition of {topic} within {timeout:?}"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    let waited = joined.elapsed();
    (member, waited)
}

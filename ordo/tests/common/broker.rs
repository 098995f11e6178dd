//! A reader that counts the event ids of one topic on any broker. The private broker the
//! fault tests run lives in the `ordo` library (`ordo::instances::broker`).

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Headers, Message};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Reads one topic from the beginning, on every partition, and counts the records per event id
/// (the `id` header). Reading is incremental: each call continues where the last one stopped.
/// Blocking; call it from `spawn_blocking`.
pub struct TopicReader {
    consumer: BaseConsumer,
    pub topic: String,
    /// Records read, duplicates included.
    pub records: usize,
    /// Records read per event id.
    pub seen: HashMap<Uuid, u32>,
    /// Next offset expected per partition; a record at another offset is a gap (or a step
    /// back), kept in `jumps` as (partition, expected, got).
    next_offset: HashMap<i32, i64>,
    pub jumps: Vec<(i32, i64, i64)>,
}

impl TopicReader {
    /// Reads `topic` on `brokers` from the beginning (see `ordo_testkit::kafka::assigned_consumer`).
    pub fn open(brokers: &str, topic: &str, timeout: Duration) -> Self {
        let consumer = ordo_testkit::kafka::assigned_consumer(brokers, topic, timeout);
        Self {
            consumer,
            topic: topic.to_owned(),
            records: 0,
            seen: HashMap::new(),
            next_offset: HashMap::new(),
            jumps: Vec::new(),
        }
    }

    /// Distinct event ids read so far.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    /// Records read more than once: `records − distinct`.
    pub fn duplicates(&self) -> usize {
        self.records - self.seen.len()
    }

    fn poll_one(&mut self) -> Option<Uuid> {
        match self.consumer.poll(Duration::from_millis(100))? {
            Ok(message) => {
                let id = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "id"))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .expect("every record has an id header");
                let (partition, offset) = (message.partition(), message.offset());
                let expected = self.next_offset.insert(partition, offset + 1).unwrap_or(0);
                if offset != expected {
                    self.jumps.push((partition, expected, offset));
                }
                self.records += 1;
                *self.seen.entry(id).or_default() += 1;
                Some(id)
            }
            Err(e) => {
                // A broker that is away shows here; the consumer reconnects by itself.
                eprintln!("reader of {}: {e}", self.topic);
                None
            }
        }
    }

    /// Reads until at least `count` distinct ids were seen or `timeout` passed; returns whether
    /// the count was reached.
    pub fn read_distinct(&mut self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.seen.len() < count && Instant::now() < deadline {
            self.poll_one();
        }
        self.seen.len() >= count
    }

    /// Reads until every id of `ids` was seen or `timeout` passed; returns the ids still
    /// missing (empty on success).
    pub fn read_all(&mut self, ids: &[Uuid], timeout: Duration) -> Vec<Uuid> {
        let mut missing: HashSet<Uuid> = ids
            .iter()
            .filter(|id| !self.seen.contains_key(id))
            .copied()
            .collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() && Instant::now() < deadline {
            if let Some(id) = self.poll_one() {
                missing.remove(&id);
            }
        }
        ids.iter()
            .filter(|id| missing.contains(id))
            .copied()
            .collect()
    }

    /// Reads whatever else arrives within `quiet` of the last record (late duplicates).
    pub fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if self.poll_one().is_some() {
                last = Instant::now();
            }
        }
    }
}

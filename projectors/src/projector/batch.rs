//! Batching by size and by time: a batch closes at `max_batch` rows (each record weighs the
//! rows its item writes, `Sink::weight`), or `max_wait` after its first record, whichever
//! comes first. Records that are ready are always taken, so with a zero `max_wait` a batch
//! is what the consumer has ready: one record when the stream is quiet (low latency),
//! `max_batch` rows under load (throughput).

use super::events::ConsumerEvents;
use super::{Projector, Sink};
use futures::StreamExt;
use rdkafka::consumer::MessageStream;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::BTreeMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The decoded records of one batch, with where each came from.
pub(super) struct Batch<T> {
    pub items: Vec<T>,
    /// (partition, offset) of each item.
    pub sources: Vec<(i32, i64)>,
    /// The offset after the last record of each partition, parked ones included: what is
    /// stored once the items are written.
    pub next_offsets: BTreeMap<i32, i64>,
    /// Records taken from the consumer, parked ones and consumer errors included.
    pub records: usize,
    /// The rows of the items, plus one per parked record or consumer error.
    pub weight: usize,
    /// The assignment the records came from (`Rebalances::generation`): a batch of an
    /// assignment revoked since is not written.
    pub generation: u64,
}

impl<T> Batch<T> {
    fn new(generation: u64) -> Self {
        Self {
            items: Vec::new(),
            sources: Vec::new(),
            next_offsets: BTreeMap::new(),
            records: 0,
            weight: 0,
            generation,
        }
    }
}

/// What waiting for a batch gave.
pub(super) enum Collected<T> {
    /// Records (none when partitions were assigned that wait for the sink's offsets).
    Batch(Batch<T>),
    /// The watchdog asked for a new consumer before a record came.
    Recreate,
    /// Shutdown, or the consumer is gone.
    Shutdown,
}

impl<S: Sink> Projector<'_, S> {
    /// The next batch.
    pub(super) async fn collect(
        &mut self,
        stream: &mut MessageStream<'_, ConsumerEvents>,
        shutdown: &CancellationToken,
    ) -> Collected<S::Item> {
        let mut batch = Batch::new(self.rebalances.generation());
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Collected::Shutdown,
            _ = self.recreate.notified() => return Collected::Recreate,
            _ = self.rebalances.assigned.notified() => return Collected::Batch(batch),
            _ = self.lost.notified() => return Collected::Batch(batch),
            message = stream.next() => message,
        };
        let Some(first) = first else {
            return Collected::Shutdown;
        };
        if self.add(&mut batch, first, shutdown).await.is_none() {
            return Collected::Shutdown;
        }
        let deadline = Instant::now() + self.config.max_wait;
        while batch.weight < self.config.max_batch {
            // The stream is polled before the deadline is checked: a past deadline still
            // takes what is ready.
            let added = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(message)) => self.add(&mut batch, message, shutdown).await,
                Ok(None) => None,
                Err(_) => break,
            };
            if added.is_none() {
                return Collected::Shutdown;
            }
        }
        Collected::Batch(batch)
    }

    /// Decodes a record into the batch, or parks it; `None` when shutdown interrupted the
    /// parking.
    async fn add(
        &mut self,
        batch: &mut Batch<S::Item>,
        message: KafkaResult<BorrowedMessage<'_>>,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        batch.records += 1;
        let Some(message) = self.consumed(message) else {
            batch.weight += 1;
            return Some(());
        };
        let (partition, offset) = (message.partition(), message.offset());
        match self.sink.decode(&message) {
            Ok(item) => {
                batch.weight += self.sink.weight(&item);
                batch.items.push(item);
                batch.sources.push((partition, offset));
            }
            Err(reason) => {
                batch.weight += 1;
                self.park(&message, &reason, shutdown).await?
            }
        }
        batch.next_offsets.insert(partition, offset + 1);
        Some(())
    }

    /// The record, or `None` after reporting a consumer error (librdkafka recovers by
    /// itself; the error is only reported).
    pub(super) fn consumed<'m>(
        &self,
        message: KafkaResult<BorrowedMessage<'m>>,
    ) -> Option<BorrowedMessage<'m>> {
        match message {
            Ok(message) => Some(message),
            Err(error) => {
                tracing::warn!(%error, "kafka consumer error");
                self.metrics.error("kafka");
                None
            }
        }
    }
}

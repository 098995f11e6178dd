//! What the loop does to its partitions: store offsets after a write, seek back to a record
//! that waits, assign at the sink's own offsets, pause and resume around an open breaker.

use super::{Projector, Retry, Sink};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait for a seek to reach the fetcher.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

impl<S: Sink> Projector<'_, S> {
    /// Stores `next_offsets` for librdkafka's next commit.
    pub(super) fn store_offsets(&self, next_offsets: &BTreeMap<i32, i64>) {
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

    /// Makes each partition of `waiting` deliver again from its offset; `None` when a seek
    /// failed, which stops the projector.
    pub(super) fn seek_back(&self, waiting: &BTreeMap<i32, i64>) -> Option<()> {
        for (partition, offset) in waiting {
            if let Err(error) = self.consumer.seek(
                &self.config.topic,
                *partition,
                Offset::Offset(*offset),
                SEEK_TIMEOUT,
            ) {
                // Without the seek the partition would move past the waiting record: restart
                // from the committed offset instead, which is at or before it (the stored one
                // is committed when the consumer closes).
                tracing::error!(%error, partition, "cannot seek back to a waiting record");
                self.metrics.error("kafka");
                return None;
            }
        }
        Some(())
    }

    /// Assigns `partitions` at the offsets the sink keeps (the others at the group's
    /// committed offsets). The sink is asked until it answers, with backoff: without its
    /// offsets the partitions cannot start. `None` at shutdown.
    pub(super) async fn assign_at_sink_offsets(
        &mut self,
        partitions: Vec<i32>,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        let mut retry = Retry::new(self.config.backoff, self.sink.backend());
        let stored = loop {
            let asked = tokio::time::timeout(
                self.config.write_timeout,
                self.sink.stored_offsets(&self.config.topic, &partitions),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within the write timeout")));
            match asked {
                Ok(stored) => break stored.into_iter().collect::<BTreeMap<_, _>>(),
                Err(error) => retry
                    .failed(format!("{error:#}"), &self.metrics, shutdown)
                    .await
                    .then_some(())?,
            }
        };
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            let offset = stored
                .get(partition)
                .map_or(Offset::Invalid, |o| Offset::Offset(*o));
            // Only fails for an invalid offset; `Invalid` means "the committed one".
            let _ = assignment.add_partition_offset(&self.config.topic, *partition, offset);
        }
        tracing::info!(
            sink = self.sink.name(),
            ?stored,
            "assigning at the sink's offsets"
        );
        if let Err(error) = self.consumer.assign(&assignment) {
            tracing::error!(%error, "cannot assign partitions");
            self.metrics.error("kafka");
            return None;
        }
        Some(())
    }

    /// Stops fetching for the whole assignment, and for partitions assigned until `resume`.
    pub(super) fn pause(&self) {
        self.rebalances.paused.store(true, Ordering::Relaxed);
        self.change_assignment(|consumer, assignment| consumer.pause(assignment));
    }

    pub(super) fn resume(&self) {
        if self.rebalances.paused.swap(false, Ordering::Relaxed) {
            self.change_assignment(|consumer, assignment| consumer.resume(assignment));
        }
    }

    fn change_assignment(
        &self,
        change: impl FnOnce(
            &super::ProjectorConsumer,
            &TopicPartitionList,
        ) -> rdkafka::error::KafkaResult<()>,
    ) {
        let changed = self
            .consumer
            .assignment()
            .and_then(|assignment| change(&self.consumer, &assignment));
        if let Err(error) = changed {
            tracing::warn!(%error, "cannot pause or resume the assigned partitions");
            self.metrics.error("kafka");
        }
    }
}

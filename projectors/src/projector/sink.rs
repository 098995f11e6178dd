//! What a read model plugs into the consumer loop: how to read a record, how to write a batch,
//! and the hooks with defaults that some sinks need.

use chrono::{DateTime, Utc};
use rdkafka::message::BorrowedMessage;
use std::future::Future;

/// What became of one item of a written batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; `occurred_at` is the event's time, for `ordo_projection_lag_seconds`.
    Applied { occurred_at: DateTime<Utc> },
    /// Already in the read model (a redelivery or a duplicate).
    Duplicate,
    /// Refused by the sink's sequence check: an earlier event of the same entity is missing.
    /// The loop asks [`Sink::resolve_gap`]; unless it was repaired, the record's partition
    /// waits at it. `detail` says which entity and sequences, for the log.
    Gap { detail: String },
}

/// What [`Sink::resolve_gap`] did about a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapResolution {
    /// Nothing: the partition waits at the record, which is retried with backoff until the
    /// read model is repaired from outside (`ordo replay --job`).
    Wait,
    /// The sink repaired the entity (rebuilt it from the event store, say), so the record is
    /// in the read model now and the partition goes on.
    Repaired,
    /// The whole read model is being rebuilt from the event store, which holds the record:
    /// it counts as handled and the partition goes on.
    Superseded,
}

/// A read model the consumer loop ([`super::run`]) writes to. The loop owns everything Kafka:
/// batching, parking what [`Sink::decode`] refuses, storing offsets only after
/// [`Sink::write`] succeeded, the circuit breaker around it, metrics and lag.
///
/// Futures are `Send` so a projector can run on `tokio::spawn`.
pub trait Sink: Send {
    /// One decoded record, as the sink writes it.
    type Item: Send + Sync;

    /// Names the sink in logs (`redis-views`).
    fn name(&self) -> &'static str;

    /// The system behind the sink (`redis`): the `kind` of `ordo_projector_errors_total`
    /// when a write fails.
    fn backend(&self) -> &'static str;

    /// The kind of a failed write for `ordo_projector_errors_total` (by default
    /// [`Sink::backend`]); a bounded set of labels.
    fn error_kind(&self, _error: &anyhow::Error) -> &'static str {
        self.backend()
    }

    /// The record as an item, or why it cannot be applied (the record is then parked with
    /// the reason).
    fn decode(&self, record: &BorrowedMessage<'_>) -> Result<Self::Item, String>;

    /// The rows `item` writes, which batches are measured in (`ProjectorConfig::max_batch`):
    /// one by default; a record of many log lines weighs its lines.
    fn weight(&self, _item: &Self::Item) -> usize {
        1
    }

    /// Writes `items` (in record order) and returns one outcome per item, in the same order.
    /// An error means nothing can be assumed written: the same batch is written again (the
    /// loop never adds to a batch it failed to write), so a write must be idempotent (a
    /// sequence check, offsets kept with the data, a deduplication token).
    fn write(
        &mut self,
        items: &[Self::Item],
    ) -> impl Future<Output = anyhow::Result<Vec<WriteOutcome>>> + Send;

    /// A gap met by `item`: repair it and go on, or wait (the default). Called for the gaps
    /// of a partition in record order until one is not repaired: the partition waits there.
    fn resolve_gap(
        &mut self,
        _item: &Self::Item,
    ) -> impl Future<Output = anyhow::Result<GapResolution>> + Send {
        async { Ok(GapResolution::Wait) }
    }

    /// The broker lost records of the topic that this projector may not have read (its log
    /// went back below offsets already read: an in-memory broker restarted, a topic
    /// recreated): make the read model whole again from the source of truth, or do nothing
    /// (the default). `detail` says what was seen, for the log.
    fn records_lost(&mut self, _detail: &str) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether the sink keeps the offsets it has written with its own data (a sink without a
    /// sequence check, whose writes are idempotent per offset). If so, partitions are
    /// assigned at [`Sink::stored_offsets`] rather than at the group's committed offsets.
    fn keeps_offsets(&self) -> bool {
        false
    }

    /// The next offset to read of each of `partitions` of `topic`, as kept by the sink;
    /// partitions it has nothing for are left out (they start at the group's committed
    /// offset). Only called when [`Sink::keeps_offsets`].
    fn stored_offsets(
        &mut self,
        _topic: &str,
        _partitions: &[i32],
    ) -> impl Future<Output = anyhow::Result<Vec<(i32, i64)>>> + Send {
        async { Ok(Vec::new()) }
    }
}

//! The `logs` table as its Kafka sink uses it: batches of rows in, the highest stored offset
//! of each Kafka partition (from the table's `kafka_offsets` projection), and the removal of
//! a crashed batch's rows; and `sink_offsets`, where the sink records which batches are
//! stored whole. How the sink combines them into exactly-once storage is described in its
//! module (`ordo_projectors::sinks::clickhouse::logs`).

use crate::insert::insert;
use crate::{ClickHouseConfig, LogRow, StoreError};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a sink stands on one partition (a row of `sink_offsets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to read: every record below it is stored whole; `None` when not known.
    pub next_offset: Option<i64>,
    /// Rows of the partition at or below this offset predate the sink's records of this log
    /// and are never removed; -1 when there are none.
    pub floor: i64,
}

impl PartitionState {
    /// The first offset whose rows may belong to a batch that is not stored whole.
    pub fn unconfirmed_from(&self) -> i64 {
        self.next_offset.unwrap_or(0).max(self.floor + 1)
    }
}

#[derive(Row, Serialize, Deserialize)]
struct OffsetRow {
    sink: String,
    topic: String,
    partition: i32,
    next_offset: i64,
    floor: i64,
}

#[derive(Row, Deserialize)]
struct MaxOffset {
    partition: i32,
    offset: i64,
}

/// `logs` and `sink_offsets` of one database.
#[derive(Clone)]
pub struct LogsTable {
    config: ClickHouseConfig,
    /// One client, so that the insert's schema is fetched once.
    client: Client,
}

impl LogsTable {
    pub fn new(config: &ClickHouseConfig) -> Self {
        Self {
            config: config.clone(),
            client: config.client(),
        }
    }

    /// Inserts `rows` as one statement, deduplicated by `token` (see [`crate::insert`]), and
    /// with them the `services` and `service_hourly` registry rows their views derive.
    pub async fn insert<R: std::borrow::Borrow<LogRow> + Sync>(
        &self,
        rows: &[R],
        token: &str,
    ) -> Result<u64, StoreError> {
        insert(&self.config, &self.client, "logs", rows, Some(token)).await
    }

    /// The highest `kafka_offset` stored per Kafka partition (the `kafka_offsets`
    /// projection answers it without reading the table).
    pub async fn max_offsets(&self) -> Result<BTreeMap<i32, i64>, StoreError> {
        let rows = self
            .config
            .bounded(
                "SELECT max(kafka_offset) FROM logs",
                self.client
                    .query(
                        "SELECT kafka_partition AS partition, max(kafka_offset) AS offset \
                         FROM logs GROUP BY kafka_partition",
                    )
                    .fetch_all::<MaxOffset>(),
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.partition, r.offset)).collect())
    }

    /// Waits until the inserts into `logs` running now have ended. An insert whose client
    /// is gone (a sink killed mid-batch) may still run on the server; its rows must have
    /// landed before a crashed batch's rows are removed, or they would outlive the removal
    /// (a mutation applies to the parts that exist when it starts). Fails if they still
    /// run after the timeout. One server's view (`system.processes`).
    pub async fn wait_for_running_inserts(&self) -> Result<(), StoreError> {
        let running = self.running_inserts().await?;
        if running.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.running_inserts().await?;
            if !running.iter().any(|id| now.contains(id)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Timeout {
                    url: self.config.url.clone(),
                    what: format!("the end of {} running inserts into logs", running.len()),
                    after: self.config.timeout,
                });
            }
        }
    }

    /// The ids of the inserts into this database's `logs` running now.
    async fn running_inserts(&self) -> Result<Vec<String>, StoreError> {
        self.config
            .bounded(
                "SELECT FROM system.processes",
                self.client
                    .query(
                        // Only sink inserts name `logs` (the views' inserts run inside them).
                        "SELECT query_id FROM system.processes WHERE query_kind = 'Insert' \
                         AND current_database = currentDatabase() \
                         AND positionCaseInsensitive(query, 'logs') > 0",
                    )
                    .fetch_all::<String>(),
            )
            .await
    }

    /// Removes the rows of Kafka partition `partition` stored from offset `from` on, and
    /// returns when they are gone. A synchronous mutation: a lightweight DELETE is refused on
    /// a table with a projection (unless the table says how to treat it), and this runs only
    /// after a crash, so its cost (rewriting the parts that hold such rows) does not matter.
    pub async fn delete_from(&self, partition: i32, from: i64) -> Result<(), StoreError> {
        self.config
            .bounded(
                "ALTER TABLE logs DELETE",
                self.client
                    .query(
                        "ALTER TABLE logs DELETE WHERE kafka_partition = ? AND kafka_offset >= ?",
                    )
                    .bind(partition)
                    .bind(from)
                    .with_setting("mutations_sync", "2")
                    .execute(),
            )
            .await
    }

    /// What `sink_offsets` holds for `sink` on these partitions of `topic` (partitions
    /// without a row are left out).
    pub async fn partition_states(
        &self,
        sink: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, PartitionState>, StoreError> {
        let rows = self
            .config
            .bounded(
                "SELECT FROM sink_offsets",
                self.client
                    .query(
                        "SELECT sink, topic, partition, \
                         argMax(next_offset, updated_at) AS next_offset, \
                         argMax(floor, updated_at) AS floor \
                         FROM sink_offsets WHERE sink = ? AND topic = ? AND partition IN ? \
                         GROUP BY sink, topic, partition",
                    )
                    .bind(sink)
                    .bind(topic)
                    .bind(partitions)
                    .fetch_all::<OffsetRow>(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let state = PartitionState {
                    next_offset: (row.next_offset >= 0).then_some(row.next_offset),
                    floor: row.floor,
                };
                (row.partition, state)
            })
            .collect())
    }

    /// Records where `sink` stands on these partitions of `topic`.
    pub async fn set_partition_states(
        &self,
        sink: &str,
        topic: &str,
        states: &BTreeMap<i32, PartitionState>,
    ) -> Result<(), StoreError> {
        let rows: Vec<OffsetRow> = states
            .iter()
            .map(|(partition, state)| OffsetRow {
                sink: sink.to_owned(),
                topic: topic.to_owned(),
                partition: *partition,
                next_offset: state.next_offset.unwrap_or(-1),
                floor: state.floor,
            })
            .collect();
        // The server stamps updated_at (see the table's migration).
        insert::<OffsetRow, _>(&self.config, &self.client, "sink_offsets", &rows, None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_rows_start_past_the_floor_and_the_confirmed_offset() {
        let state = |next_offset, floor| PartitionState { next_offset, floor };
        assert_eq!(state(Some(100), -1).unconfirmed_from(), 100);
        assert_eq!(state(None, -1).unconfirmed_from(), 0);
        assert_eq!(state(None, 5_000).unconfirmed_from(), 5_001);
        assert_eq!(state(Some(100), 5_000).unconfirmed_from(), 5_001);
        assert_eq!(state(Some(6_000), 5_000).unconfirmed_from(), 6_000);
    }
}

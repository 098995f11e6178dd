//! One replication session: stream committed outbox inserts from the slot, produce each as its
//! EventRouter record, and acknowledge a transaction's end LSN to PostgreSQL only once Kafka
//! acknowledged every record of it and of every transaction before it.
//!
//! A new slot first sweeps the rows already in the outbox (logical decoding only sees what
//! commits after the slot exists), like Debezium's initial snapshot.
//!
//! Transactions wait in commit order in a `FuturesOrdered`, so acknowledgements advance
//! monotonically even though Kafka confirms partitions out of order. Any failure ends the
//! session; the supervisor (`relay.rs`) reconnects from the slot's confirmed position, so a
//! record may be produced twice but never skipped.

use crate::metrics::{ErrorKind, RelayMetrics};
use crate::pgoutput::{self, DecodeError, Message, Value};
use crate::route::{OutboxLayout, OutboxRecord, RouteError};
use crate::slot::{self, Prepared};
use crate::RelayConfig;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use ordo_common::kafka::{self, Producer};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Bound on connecting, authenticating and starting replication.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Records of a sweep produced before waiting for their acknowledgements.
const SWEEP_CHUNK: usize = 10_000;
/// How long a sweep may read the outbox.
const SWEEP_STATEMENT_TIMEOUT: &str = "15min";
/// How long a stopping relay waits for Kafka to confirm what it already produced.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// PostgreSQL timestamps count microseconds from 2000-01-01, Unix ones from 1970-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("outbox row: {0}")]
    Decode(String),
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Postgres(_) => ErrorKind::Postgres,
            Self::Kafka(_) => ErrorKind::Kafka,
            Self::Decode(_) => ErrorKind::Decode,
        }
    }
}

impl From<pgwire_replication::PgWireError> for SessionError {
    fn from(e: pgwire_replication::PgWireError) -> Self {
        Self::Postgres(e.to_string())
    }
}

impl From<DecodeError> for SessionError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e.to_string())
    }
}

impl From<sqlx::Error> for SessionError {
    fn from(e: sqlx::Error) -> Self {
        Self::Postgres(e.to_string())
    }
}

impl From<RouteError> for SessionError {
    fn from(e: RouteError) -> Self {
        Self::Decode(e.to_string())
    }
}

/// What a session reports back when it ends.
#[derive(Debug, Default)]
pub struct Progress {
    /// Transactions acknowledged to PostgreSQL during the session.
    pub acknowledged: u64,
}

/// A transaction whose records Kafka confirmed.
struct Acked {
    end_lsn: Lsn,
    commit_time_micros: i64,
    ids: Vec<Uuid>,
}

/// The transaction being read: its records are produced as they arrive.
struct OpenTxn {
    commit_time_micros: i64,
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    ids: Vec<Uuid>,
}

pub struct Session<'a> {
    pub config: &'a RelayConfig,
    pub pool: &'a sqlx::PgPool,
    pub metrics: &'a RelayMetrics,
    /// Topics known to exist; shared across sessions so each is created once.
    pub topics: &'a mut HashSet<String>,
    /// Published event ids, for the clean-up task.
    pub published: &'a mpsc::Sender<Vec<Uuid>>,
}

impl Session<'_> {
    pub async fn run(
        &mut self,
        prepared: Prepared,
        shutdown: &CancellationToken,
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        let producer = kafka::producer(&self.config.brokers, self.config.message_timeout)?;
        if prepared.needs_sweep {
            let swept = self.sweep(&producer).await?;
            slot::mark_swept(self.pool, &self.config.slot).await?;
            tracing::info!(slot = %self.config.slot, rows = swept, "published the rows from before the slot");
        }
        let start = prepared.start;
        let replication = crate::slot::replication_config(
            &self.config.database_url,
            &self.config.slot,
            &self.config.publication,
        )
        .map_err(|e| SessionError::Postgres(e.to_string()))?
        .with_start_lsn(start);
        let mut client = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut client = ReplicationClient::connect(replication).await?;
            client.wait_started().await?;
            Ok::<_, pgwire_replication::PgWireError>(client)
        })
        .await
        .map_err(|_| SessionError::Postgres("replication did not start within 10 s".into()))??;
        tracing::info!(
            slot = %self.config.slot,
            from = %start.to_pg_string(),
            "streaming the outbox"
        );

        let result = self
            .stream(&mut client, &producer, shutdown, progress)
            .await;
        client.stop();
        result
    }

    async fn stream(
        &mut self,
        client: &mut ReplicationClient,
        producer: &Producer,
        shutdown: &CancellationToken,
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        let mut layouts: HashMap<u32, OutboxLayout> = HashMap::new();
        let mut open: Option<OpenTxn> = None;
        let mut waiting: FuturesOrdered<BoxFuture<'static, Result<Acked, KafkaError>>> =
            FuturesOrdered::new();
        let mut waiting_records = 0usize;

        loop {
            tokio::select! {
                biased;
                Some(acked) = waiting.next() => {
                    let acked = acked?;
                    waiting_records -= acked.ids.len();
                    self.acknowledge(client, acked, progress).await;
                }
                _ = shutdown.cancelled() => {
                    return self.drain(client, &mut waiting, progress).await;
                }
                event = client.recv(), if waiting_records < self.config.max_in_flight => {
                    let Some(event) = event? else {
                        return Err(SessionError::Postgres("replication stream ended".into()));
                    };
                    match event {
                        ReplicationEvent::Begin { commit_time_micros, .. } => {
                            open = Some(OpenTxn { commit_time_micros, deliveries: Vec::new(), ids: Vec::new() });
                        }
                        ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(&data)? {
                            Message::Relation(relation) => {
                                layouts.insert(relation.id, OutboxLayout::of(&relation)?);
                            }
                            Message::Insert { relation, values } => {
                                let layout = layouts.get(&relation).ok_or(DecodeError::UnknownRelation(relation))?;
                                let record = layout.record(&values, &self.config.topic_template)?;
                                let txn = open.as_mut().ok_or_else(|| SessionError::Decode("insert outside a transaction".into()))?;
                                txn.ids.push(record.event_id);
                                txn.deliveries.push(self.produce(producer, record).await?);
                            }
                            Message::Other(_) => {}
                        },
                        ReplicationEvent::Commit { end_lsn, .. } => {
                            let txn = open.take().ok_or_else(|| SessionError::Decode("commit without begin".into()))?;
                            waiting_records += txn.deliveries.len();
                            waiting.push_back(Box::pin(confirmed(txn, end_lsn)));
                        }
                        // Between transactions with nothing unconfirmed, everything the server
                        // sent is safe: confirming its position lets the slot release WAL
                        // written by tables outside the publication.
                        ReplicationEvent::KeepAlive { wal_end, .. } => {
                            if open.is_none() && waiting.is_empty() {
                                client.update_applied_lsn(wal_end);
                            }
                        }
                        ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
                    }
                }
            }
        }
    }

    /// Publishes every row in the outbox now. Rows that also commit after the slot's start are
    /// streamed too and so published twice; at-least-once allows that, a gap it does not.
    async fn sweep(&mut self, producer: &Producer) -> Result<u64, SessionError> {
        let layout = OutboxLayout::canonical();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "SET LOCAL statement_timeout = '{SWEEP_STATEMENT_TIMEOUT}'"
        ))
        .execute(&mut *tx)
        .await?;
        let mut rows = slot::existing_rows(&mut tx);
        let (mut deliveries, mut ids, mut swept) = (Vec::new(), Vec::new(), 0u64);
        loop {
            let row = rows.next().await.transpose()?;
            let done = row.is_none();
            if let Some(row) = row {
                let values: Vec<Value> = row
                    .into_iter()
                    .map(|v| v.map_or(Value::Null, |text| Value::Text(Bytes::from(text))))
                    .collect();
                let record = layout.record(&values, &self.config.topic_template)?;
                ids.push(record.event_id);
                deliveries.push(self.produce(producer, record).await?);
            }
            if deliveries.len() >= SWEEP_CHUNK || (done && !deliveries.is_empty()) {
                delivered(std::mem::take(&mut deliveries)).await?;
                swept += ids.len() as u64;
                self.record_published(std::mem::take(&mut ids)).await;
            }
            if done {
                return Ok(swept);
            }
        }
    }

    /// Produces one record, creating its topic first if this relay has not seen it yet.
    async fn produce(
        &mut self,
        producer: &Producer,
        record: OutboxRecord,
    ) -> Result<rdkafka::producer::DeliveryFuture, SessionError> {
        if !self.topics.contains(&record.topic) {
            kafka::ensure_topic(
                &self.config.brokers,
                &record.topic,
                self.config.topic_partitions,
            )
            .await?;
            self.topics.insert(record.topic.clone());
        }
        let headers =
            record
                .headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(3), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(&value[..]),
                    })
                });
        let mut future_record = FutureRecord::<[u8], [u8]>::to(&record.topic).headers(headers);
        if let Some(key) = record.key.as_deref() {
            future_record = future_record.key(key);
        }
        if let Some(value) = record.value.as_deref() {
            future_record = future_record.payload(value);
        }
        loop {
            match producer.send_result(future_record) {
                Ok(delivery) => return Ok(delivery),
                // librdkafka's queue is full: its own thread keeps delivering, so wait a moment.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    future_record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    async fn acknowledge(&self, client: &ReplicationClient, acked: Acked, progress: &mut Progress) {
        client.update_applied_lsn(acked.end_lsn);
        progress.acknowledged += 1;
        let lag_micros = chrono::Utc::now().timestamp_micros()
            - (acked.commit_time_micros + PG_EPOCH_OFFSET_MICROS);
        self.metrics
            .lag_seconds
            .observe(lag_micros.max(0) as f64 / 1e6);
        self.record_published(acked.ids).await;
    }

    /// Counts records Kafka acknowledged and hands their rows to the clean-up task.
    async fn record_published(&self, ids: Vec<Uuid>) {
        self.metrics.records_relayed.inc_by(ids.len() as u64);
        if self.config.delete_published && !ids.is_empty() {
            // The clean-up task is behind if the channel is full; waiting here slows reading,
            // which is the backpressure we want.
            let _ = self.published.send(ids).await;
        }
    }

    /// On shutdown, wait (bounded) for Kafka to confirm what was produced, and acknowledge it.
    async fn drain(
        &self,
        client: &ReplicationClient,
        waiting: &mut FuturesOrdered<BoxFuture<'static, Result<Acked, KafkaError>>>,
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(Ok(acked)) = waiting.next().await {
                self.acknowledge(client, acked, progress).await;
            }
        })
        .await;
        // Give the feedback task one status interval to tell the server.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

async fn confirmed(txn: OpenTxn, end_lsn: Lsn) -> Result<Acked, KafkaError> {
    delivered(txn.deliveries).await?;
    Ok(Acked {
        end_lsn,
        commit_time_micros: txn.commit_time_micros,
        ids: txn.ids,
    })
}

/// Waits until Kafka acknowledged every one of `deliveries`; the first failure wins.
async fn delivered(deliveries: Vec<rdkafka::producer::DeliveryFuture>) -> Result<(), KafkaError> {
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_cancelled) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

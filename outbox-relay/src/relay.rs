//! The relay's supervisor: runs replication sessions one after another, with capped exponential
//! backoff between failures, next to two helper tasks: clean-up of published outbox rows and a
//! poller of the WAL the slot retains.

use crate::metrics::{ErrorKind, RelayMetrics};
use crate::session::{Progress, Session};
use crate::slot;
use ordo_protocol::Backoff;
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const RETAINED_WAL_POLL: Duration = Duration::from_secs(5);
/// Rows per clean-up DELETE.
const DELETE_BATCH: usize = 5_000;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub database_url: String,
    /// Logical replication slot; created if missing. One active relay per slot: a second one
    /// waits and retries, which makes it a hot standby.
    pub slot: String,
    pub publication: String,
    pub brokers: String,
    /// Debezium's `route.topic.replacement`; `${routedByValue}` is the row's `aggregatetype`.
    pub topic_template: String,
    /// Partitions of topics the relay creates.
    pub topic_partitions: i32,
    /// Delete outbox rows once Kafka acknowledged them.
    pub delete_published: bool,
    /// How long a record may wait for the broker before the session restarts.
    pub message_timeout: Duration,
    /// Records produced but not yet confirmed before the relay stops reading.
    pub max_in_flight: usize,
    /// Backoff between failed sessions.
    pub backoff: Backoff,
}

impl RelayConfig {
    pub fn new(database_url: &str, brokers: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            slot: "ordo_relay".into(),
            publication: "ordo_outbox".into(),
            brokers: brokers.to_owned(),
            topic_template: crate::route::DEFAULT_TOPIC_TEMPLATE.into(),
            topic_partitions: 6,
            delete_published: true,
            message_timeout: Duration::from_secs(30),
            max_in_flight: 200_000,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        }
    }
}

/// Runs until `shutdown` is cancelled. Failures of PostgreSQL or Kafka are logged and retried;
/// only a cancelled token ends it.
pub async fn run(
    config: RelayConfig,
    pool: PgPool,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
) {
    let (published, to_delete) = mpsc::channel(1_024);
    let cleanup = tokio::spawn(delete_published(pool.clone(), to_delete, metrics.clone()));
    let poller = tokio::spawn(poll_retained_wal(
        pool.clone(),
        config.slot.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let mut topics = HashSet::new();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let mut progress = Progress::default();
        let outcome = match slot::prepare(&pool, &config.slot, &config.publication).await {
            Ok(prepared) => {
                Session {
                    config: &config,
                    pool: &pool,
                    metrics: &metrics,
                    topics: &mut topics,
                    published: &published,
                }
                .run(prepared, &shutdown, &mut progress)
                .await
            }
            Err(e) => Err(crate::session::SessionError::Postgres(format!("{e:#}"))),
        };
        let Err(error) = outcome else { break };
        metrics.error(error.kind());
        if matches!(error.kind(), ErrorKind::Kafka) {
            // A broker that lost its state (a restarted in-memory one) lost its topics too.
            topics.clear();
        }
        failures = if progress.acknowledged > 0 {
            1
        } else {
            failures.saturating_add(1)
        };
        let delay = config.backoff.delay(failures);
        tracing::warn!(
            %error,
            retry_in_ms = delay.as_millis() as u64,
            attempt = failures,
            "relay session ended; reconnecting from the last acknowledged position"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    drop(published);
    let _ = cleanup.await;
    poller.abort();
    tracing::info!("relay stopped");
}

/// Deletes acknowledged rows in batches. A failed delete leaves rows behind (they were already
/// published and are never streamed again) and is counted; it never stops the relay.
async fn delete_published(pool: PgPool, mut ids: mpsc::Receiver<Vec<Uuid>>, metrics: RelayMetrics) {
    let mut batch = Vec::with_capacity(DELETE_BATCH);
    while let Some(first) = ids.recv().await {
        batch.extend(first);
        while batch.len() < DELETE_BATCH {
            match ids.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(
            Duration::from_secs(30),
            slot::delete_published(&pool, &batch),
        )
        .await
        {
            Ok(Ok(deleted)) => metrics.rows_deleted.inc_by(deleted),
            Ok(Err(e)) => {
                metrics.error(ErrorKind::Cleanup);
                tracing::warn!(error = %e, rows = batch.len(), "could not delete published outbox rows");
            }
            Err(_) => {
                metrics.error(ErrorKind::Cleanup);
                tracing::warn!(
                    rows = batch.len(),
                    "deleting published outbox rows timed out"
                );
            }
        }
        batch.clear();
    }
}

async fn poll_retained_wal(
    pool: PgPool,
    slot_name: String,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(RETAINED_WAL_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Ok(Ok(Some(bytes))) = tokio::time::timeout(
            RETAINED_WAL_POLL,
            slot::retained_wal_bytes(&pool, &slot_name),
        )
        .await
        {
            metrics.retained_wal_bytes.set(bytes);
        }
    }
}

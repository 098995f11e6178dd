//! `ordo replay --projector clickhouse-history`: the ClickHouse `job_events` table rebuilt
//! from the PostgreSQL event store, or compared with a replay of it (`--verify`).
//!
//! Rows are made by the live sink's own mapping ([`event_row`], [`JobKinds`]), so a replayed
//! table equals what the sink built. A rebuild is blue/green, like the Redis one: every
//! event goes into a scratch table shaped like `job_events`; `EXCHANGE TABLES` then swaps
//! the two atomically (readers and the sink see the old table or the new one, never an
//! empty one); after a settle time for the sink's in-flight inserts into the old table, the
//! catch-up pass inserts what was appended around the swap (from `catch_up_margin`
//! positions back: a redelivered row is harmless in a ReplacingMergeTree), and the old table
//! is dropped. Run one rebuild at a time.

use super::passes::open;
use super::source::{EventSource, StoredEvent};
use super::{Progress, ReplayOptions, Scope, Undecodable};
use crate::sinks::clickhouse::job_rows::{event_row, JobKinds};
use anyhow::bail;
use chrono::Utc;
use ordo_clickhouse_store::{ClickHouseConfig, Difference, JobEventRow, JobEventsTable};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// What a history replay did.
#[derive(Debug, Clone, Default)]
pub struct HistorySummary {
    /// The table written (the live one after a rebuild, the scratch one of a verification).
    pub table: String,
    /// Events read by the main pass.
    pub events: u64,
    /// Rows inserted by the main pass.
    pub written: u64,
    /// Rows left without type and queue (their job's `JobSubmitted` is not in the store).
    pub unknown_kinds: u64,
    pub undecodable: Vec<Undecodable>,
    /// Rows the catch-up pass inserted again after the swap.
    pub caught_up: u64,
    pub elapsed: Duration,
}

impl HistorySummary {
    /// Events of the main pass per second of the whole run.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct HistoryVerification {
    pub summary: HistorySummary,
    /// How `job_events` differs from the replay, at most `limit` per side.
    pub differences: Vec<Difference>,
    /// How many rows differ in all.
    pub total: u64,
}

/// Rebuilds `job_events` from the event store (see the module docs).
pub async fn rebuild(
    pool: &PgPool,
    clickhouse: &ClickHouseConfig,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<HistorySummary> {
    let started = Instant::now();
    let live = JobEventsTable::live(clickhouse);
    let scratch = scratch_table(&live, "replay").await?;
    let rebuilt = async {
        let mut source = open_all(pool, options).await?;
        let mut replay = Replay::new(&scratch);
        let last = replay.main_pass(&mut source, options, progress).await?;
        live.exchange(&scratch).await?;
        progress.note(&format!(
            "swapped the replay into {}; catching up in {:?}",
            live.name(),
            options.settle
        ));
        tokio::time::sleep(options.settle).await;
        let from = (last - options.catch_up_margin).max(0);
        let until = source.last_position().await?;
        replay.target = &live;
        let main = std::mem::take(&mut replay.summary);
        replay
            .pass(&mut source, from, until, options, &super::Silent)
            .await?;
        source.close().await;
        progress.note(&format!(
            "catch-up: {} rows inserted again",
            replay.summary.written
        ));
        anyhow::Ok(HistorySummary {
            caught_up: replay.summary.written,
            ..main
        })
    }
    .await;
    // Before the swap it holds the unfinished replay; after, the old table.
    let dropped = scratch.drop_table().await;
    let mut summary = rebuilt?;
    dropped?;
    summary.table = live.name().to_owned();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Replays the event store into a scratch table and compares `job_events` with it, listing
/// at most `limit` differences per side. Events appended while it runs may show as
/// differences that are only the sink's lag.
pub async fn verify(
    pool: &PgPool,
    clickhouse: &ClickHouseConfig,
    options: &ReplayOptions,
    limit: u64,
    progress: &dyn Progress,
) -> anyhow::Result<HistoryVerification> {
    let started = Instant::now();
    let live = JobEventsTable::live(clickhouse);
    let scratch = scratch_table(&live, "verify").await?;
    let compared = async {
        let mut source = open_all(pool, options).await?;
        let mut replay = Replay::new(&scratch);
        replay.main_pass(&mut source, options, progress).await?;
        source.close().await;
        progress.note(&format!("comparing {} with the replay", live.name()));
        let (differences, total) = live.differences(&scratch, limit).await?;
        anyhow::Ok((replay.summary, differences, total))
    }
    .await;
    let table = scratch.name().to_owned();
    let dropped = scratch.drop_table().await;
    let (mut summary, differences, total) = compared?;
    dropped?;
    summary.table = table;
    summary.elapsed = started.elapsed();
    Ok(HistoryVerification {
        summary,
        differences,
        total,
    })
}

/// Reads and maps every event, writing nothing.
pub async fn dry_run(
    pool: &PgPool,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<HistorySummary> {
    let started = Instant::now();
    let mut source = open_all(pool, options).await?;
    let last = source.last_position().await?;
    progress.start(source.count(0, last).await?);
    let mut summary = HistorySummary::default();
    let mut after = 0;
    loop {
        let page = source.page(after, last).await?;
        let Some(tail) = page.last() else { break };
        after = tail.position;
        decode(&page, &mut summary);
        progress.advance(page.len() as u64);
    }
    source.close().await;
    progress.finish();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A new empty table shaped like `live`, named for its purpose and the time.
async fn scratch_table(live: &JobEventsTable, purpose: &str) -> anyhow::Result<JobEventsTable> {
    let name = format!(
        "{}_{purpose}_{}",
        live.name(),
        Utc::now().timestamp_millis()
    );
    Ok(live.create_like(&name).await?)
}

async fn open_all(pool: &PgPool, options: &ReplayOptions) -> anyhow::Result<EventSource> {
    if options.scope != Scope::All {
        bail!(
            "the job history is replayed whole: --job and --since repair the Redis read model only"
        );
    }
    open(pool, options).await
}

/// The events of the store as rows, counting what does not decode.
fn decode(page: &[StoredEvent], summary: &mut HistorySummary) -> Vec<JobEventRow> {
    summary.events += page.len() as u64;
    page.iter()
        .filter_map(|stored| {
            let row = stored.envelope().and_then(|envelope| {
                let event = envelope.event().map_err(|e| e.reason)?;
                event_row(&envelope, &event)
            });
            row.map_err(|reason| {
                summary.undecodable.push(Undecodable {
                    position: stored.position,
                    job_id: stored.aggregate_id.clone(),
                    sequence: stored.sequence,
                    event_id: stored.event_id(),
                    reason,
                })
            })
            .ok()
        })
        .collect()
}

/// Pages of events into one table.
struct Replay<'a> {
    target: &'a JobEventsTable,
    kinds: JobKinds,
    summary: HistorySummary,
}

impl<'a> Replay<'a> {
    fn new(target: &'a JobEventsTable) -> Self {
        Self {
            target,
            kinds: JobKinds::new(JobKinds::DEFAULT_CAPACITY),
            summary: HistorySummary::default(),
        }
    }

    /// Every event appended so far; returns the last position covered.
    async fn main_pass(
        &mut self,
        source: &mut EventSource,
        options: &ReplayOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<i64> {
        let last = source.last_position().await?;
        progress.start(source.count(0, last).await?);
        self.pass(source, 0, last, options, progress).await?;
        progress.finish();
        Ok(last)
    }

    /// The events in positions (`after`, `up_to`], a page read while the previous one is
    /// inserted. Rows are mapped only once the previous page is in: a job's later events
    /// may need its `JobSubmitted` from the table.
    async fn pass(
        &mut self,
        source: &mut EventSource,
        after: i64,
        up_to: i64,
        options: &ReplayOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let mut page = source.page(after, up_to).await?;
        while let Some(tail) = page.last() {
            let after = tail.position;
            let rows = decode(&page, &mut self.summary);
            let (next, inserted) =
                tokio::join!(source.page(after, up_to), self.insert(rows, options));
            inserted?;
            progress.advance(page.len() as u64);
            page = next?;
        }
        Ok(())
    }

    async fn insert(
        &mut self,
        mut rows: Vec<JobEventRow>,
        options: &ReplayOptions,
    ) -> anyhow::Result<()> {
        for chunk in rows.chunks_mut(options.batch_size) {
            self.summary.unknown_kinds += self.kinds.complete(chunk, self.target).await? as u64;
            self.summary.written += self.target.insert(chunk).await?;
        }
        Ok(())
    }
}

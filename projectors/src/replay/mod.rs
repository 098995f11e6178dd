//! Rebuilding the Redis read model from the PostgreSQL event store (`ordo replay`), not from
//! Kafka: the store holds every event forever, the topic may not.
//!
//! Events are read in append order and applied with the same sequence-checked script as the
//! live projector ([`JobViews`]), so a replayed view is exactly what the projector would
//! have built, and re-applying an event that is already there changes nothing. That is what
//! makes the catch-up passes below safe: they may re-read generously.
//!
//! - [`run`] with [`Mode::Into`]: fill a fresh namespace, switch the live pointer to it
//!   ([`namespace::switch`]), wait for the projector's in-flight batches to land, then re-apply
//!   what was appended around the switch; optionally delete the previous namespace.
//! - [`run`] with [`Mode::InPlace`]: repair some jobs in the live namespace: each job is first
//!   removed from the model (`lua/forget.lua`, counters kept exact), then its full history is
//!   re-applied.
//! - [`run`] with [`Mode::DryRun`]: read and decode, write nothing.
//! - [`verify`]: replay into a scratch namespace and list every difference from the live one
//!   (`ordo_read_model::compare`).
//! - [`JobRepair`]: the in-place repair of one job at a time, rate-limited, for the live
//!   projector when it meets a gap.
//!
//! Here are the public types and the entry points; `passes` orders the work (the main
//! pass, the switch, the catch-up), `writer` decodes stored events and applies them,
//! `source` reads them from PostgreSQL, and `repair` serves the projector. [`history`]
//! replays the same events into the ClickHouse job history.

pub mod history;
mod passes;
mod repair;
mod source;
mod writer;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
pub use ordo_read_model::Difference;
use ordo_read_model::{compare, keys, namespace, SingletonLock};
use passes::{catch_up, into, main_pass, open};
use redis::aio::ConnectionManager;
pub use repair::{JobRepair, DEFAULT_REPAIRS_PER_SECOND};
pub use source::has_job_events;
use sqlx::PgPool;
use std::fmt;
use std::time::{Duration, Instant};
use writer::Writer;

/// Which jobs a replay covers. A job is always replayed with its full history: a view needs
/// every event from sequence 1.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    All,
    Jobs(Vec<String>),
    /// The jobs with any event that occurred at or after this time.
    Since(DateTime<Utc>),
}

/// Where a replay writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Build every job into a fresh namespace (`{prefix}.r{unix-ms}` when `None`) and make it
    /// the live one. Only with [`Scope::All`].
    Into {
        namespace: Option<String>,
        /// Delete the keys of the namespace that was live before, once the switch is done.
        drop_previous: bool,
    },
    /// Repair the jobs of a [`Scope::Jobs`] or [`Scope::Since`] in the live namespace.
    InPlace,
    /// Read and decode only.
    DryRun,
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub scope: Scope,
    /// Events per PostgreSQL page; the next page is read while Redis writes this one.
    pub page_size: usize,
    /// Events per Redis pipeline.
    pub batch_size: usize,
    /// Wait after the switch before the catch-up pass, so that projector batches which
    /// resolved the old namespace just before the switch have landed.
    pub settle: Duration,
    /// How far back (in positions) from the main pass's last event the catch-up pass looks
    /// for events the main pass did not see. Positions are taken at INSERT, so an event
    /// committed late can sit below events already read; the margin covers such stragglers.
    /// Events the main pass did see are recognised and skipped, so a wide margin costs
    /// only a re-read from PostgreSQL.
    pub catch_up_margin: i64,
    /// `statement_timeout` of the replay's own PostgreSQL session.
    pub statement_timeout: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            scope: Scope::All,
            page_size: 5_000,
            batch_size: 1_000,
            settle: Duration::from_secs(2),
            catch_up_margin: 100_000,
            statement_timeout: Duration::from_secs(60),
        }
    }
}

/// Hooks for showing progress; every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// The main pass is about to read `total` events.
    fn start(&self, _total: u64) {}
    /// `events` more were read (and applied, unless a dry run).
    fn advance(&self, _events: u64) {}
    /// The main pass is over.
    fn finish(&self) {}
    /// A step worth a line of its own (the switch, the catch-up, a deletion).
    fn note(&self, _line: &str) {}
}

/// A [`Progress`] that shows nothing.
pub struct Silent;
impl Progress for Silent {}

/// An event that cannot be turned into a view update; it is skipped, and so are the later
/// events of its job (they would only meet a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    pub position: i64,
    pub job_id: String,
    pub sequence: i64,
    /// From the stored metadata, when it has one.
    pub event_id: Option<String>,
    pub reason: String,
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} (position {}, job {} #{}): {}",
            self.event_id.as_deref().unwrap_or("without id"),
            self.position,
            self.job_id,
            self.sequence,
            self.reason
        )
    }
}

/// An update refused because the job's view was not at the previous sequence. Events come
/// in sequence order, so this means a hole in a job's stored sequence, or a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub job_id: String,
    pub sequence: u64,
    /// The sequence the view stood at.
    pub last: u64,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} event #{} refused: its view stands at #{}",
            self.job_id, self.sequence, self.last
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The namespace written (or, for a dry run, the live one).
    pub namespace: String,
    /// With [`Mode::Into`]: the namespace that was live before the switch.
    pub previous: Option<String>,
    /// Keys of `previous` deleted (with `drop_previous`).
    pub dropped: Option<u64>,
    /// Events read by the main pass.
    pub events: u64,
    /// Jobs among them (events with sequence 1).
    pub jobs: u64,
    pub applied: u64,
    /// Already in the view (normal in a catch-up pass, unexpected in the main pass).
    pub duplicates: u64,
    /// Later events of jobs with an undecodable event.
    pub skipped: u64,
    pub undecodable: Vec<Undecodable>,
    pub gaps: Vec<Gap>,
    /// Events the catch-up pass found that the main pass had not seen, and how many of them
    /// were new to the view.
    pub caught_up_read: u64,
    pub caught_up_applied: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Summary {
    /// Events of the main pass per second of the whole run.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Verification {
    pub summary: Summary,
    /// The namespace compared with the replay.
    pub live: String,
    pub differences: Vec<Difference>,
}

/// How long the rebuild lock lives without a renewal: the lock of a rebuilder that died is
/// free again this soon.
const REBUILD_LOCK_TTL: Duration = Duration::from_secs(15);

/// The lock that lets one rebuild of the deployment under `prefix` run at a time.
pub(crate) fn rebuild_lock(redis: &ConnectionManager, prefix: &str) -> SingletonLock {
    SingletonLock::new(redis.clone(), prefix, keys::REBUILD_LOCK, REBUILD_LOCK_TTL)
}

/// A rebuild into a new namespace was refused: another one holds the rebuild lock.
#[derive(Debug, thiserror::Error)]
#[error("another rebuild of this read model is running (Redis key {lock} is held); run again when it has ended")]
pub struct RebuildRunning {
    pub lock: String,
}

/// Replays the events of `options.scope` from the event store of `pool` into the read model
/// under `prefix`, as `mode` says.
pub async fn run(
    pool: &PgPool,
    redis: &ConnectionManager,
    prefix: &str,
    mode: &Mode,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut redis = redis.clone();
    let live = namespace::active(&mut redis, prefix).await?;
    let mut summary = match mode {
        Mode::Into {
            namespace,
            drop_previous,
        } => {
            if options.scope != Scope::All {
                bail!("a replay into a new namespace rebuilds every job; --job and --since repair jobs in place");
            }
            let target = match namespace {
                Some(name) => name.clone(),
                None => format!("{prefix}.r{}", Utc::now().timestamp_millis()),
            };
            into(
                pool,
                &mut redis,
                prefix,
                &live,
                &target,
                *drop_previous,
                options,
                progress,
            )
            .await?
        }
        Mode::InPlace => {
            if options.scope == Scope::All {
                bail!("repairing every job in place is not supported: rebuild into a new namespace (--into) instead");
            }
            let mut source = open(pool, options).await?;
            let mut writer = Writer::new(Some((&redis, live.as_str())), true);
            let last = main_pass(&mut source, &mut writer, options, progress).await?;
            catch_up(&mut source, &mut writer, last, options, progress).await?;
            source.close().await;
            writer.summary(&live)
        }
        Mode::DryRun => {
            let mut source = open(pool, options).await?;
            let mut writer = Writer::new(None, false);
            main_pass(&mut source, &mut writer, options, progress).await?;
            source.close().await;
            writer.summary(&live)
        }
    };
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Replays `options.scope` into a scratch namespace `{prefix}.verify-{uuid}`, compares it
/// with the live namespace, and deletes it. With a scope of some jobs, only their hashes are
/// compared. Jobs that change while it runs may show differences that are only lag.
pub async fn verify(
    pool: &PgPool,
    redis: &ConnectionManager,
    prefix: &str,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    let mut redis = redis.clone();
    let live = namespace::active(&mut redis, prefix).await?;
    let scratch = format!("{prefix}.verify-{}", uuid::Uuid::new_v4().simple());
    let outcome = async {
        let mut source = open(pool, options).await?;
        let (jobs, _) = source.jobs().await?;
        let mut writer = Writer::new(Some((&redis, scratch.as_str())), false);
        main_pass(&mut source, &mut writer, options, progress).await?;
        source.close().await;
        progress.note(&format!("comparing namespace {live} with the replay"));
        let differences = match options.scope {
            Scope::All => compare::compare(&mut redis, &live, &scratch).await?,
            _ => compare::compare_jobs(&mut redis, &live, &scratch, &jobs).await?,
        };
        anyhow::Ok((writer.summary(&scratch), differences))
    }
    .await;
    let deleted = namespace::delete(&mut redis, &scratch)
        .await
        .with_context(|| format!("cannot delete the scratch namespace {scratch}"));
    let (mut summary, differences) = outcome?;
    deleted?;
    summary.elapsed = started.elapsed();
    Ok(Verification {
        summary,
        live,
        differences,
    })
}

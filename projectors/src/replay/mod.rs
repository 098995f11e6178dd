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

mod source;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
pub use ordo_read_model::Difference;
use ordo_read_model::{compare, keys, namespace, ApplyOutcome, JobViews, ViewUpdate};
use redis::aio::ConnectionManager;
use source::{EventSource, StoredEvent};
use sqlx::PgPool;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

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

/// Fills `target`, switches the pointer, catches up, and drops the previous namespace if
/// asked.
#[allow(clippy::too_many_arguments)]
async fn into(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    prefix: &str,
    live: &str,
    target: &str,
    drop_previous: bool,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Summary> {
    if target.is_empty() || target.contains([':', '*', '?', '[', ']', '\\', ' ']) {
        bail!("namespace {target:?} is not usable: it must be non-empty, without ':', spaces or glob characters (*?[]\\)");
    }
    if target == live {
        bail!("namespace {target} is the live one; name a new namespace with --into");
    }
    if namespace::has_keys(redis, target).await? {
        bail!(
            "namespace {target} already has keys; name a new namespace with --into (or leave it out for a generated one), \
             or delete them first: redis-cli --scan --pattern '{target}:*' | xargs -r redis-cli unlink"
        );
    }
    let mut source = open(pool, options).await?;
    let mut writer = Writer::new(Some((redis, target)), false);
    let last = main_pass(&mut source, &mut writer, options, progress).await?;
    let previous = namespace::switch(redis, prefix, target).await?;
    progress.note(&format!(
        "switched {} from {previous} to {target}; catching up in {:?}",
        keys::active_pointer(prefix),
        options.settle
    ));
    tokio::time::sleep(options.settle).await;
    catch_up(&mut source, &mut writer, last, options, progress).await?;
    source.close().await;
    let mut summary = writer.summary(target);
    if drop_previous && previous != target {
        let live_now = namespace::active(redis, prefix).await?;
        if live_now == previous {
            bail!("the previous namespace {previous} is live again (another switch?); not deleting it");
        }
        let dropped = namespace::delete(redis, &previous).await?;
        progress.note(&format!("deleted {dropped} keys of namespace {previous}"));
        summary.dropped = Some(dropped);
    }
    summary.previous = Some(previous);
    Ok(summary)
}

async fn open(pool: &PgPool, options: &ReplayOptions) -> anyhow::Result<EventSource> {
    if options.page_size == 0 || options.batch_size == 0 || options.catch_up_margin < 0 {
        bail!("page size and batch size must be at least 1, the catch-up margin at least 0");
    }
    let mut source = EventSource::open(
        pool,
        &options.scope,
        options.page_size,
        options.statement_timeout,
    )
    .await
    .context("cannot read the event store")?;
    if let Scope::Jobs(_) = options.scope {
        let (_, missing) = source.jobs().await?;
        if !missing.is_empty() {
            bail!(
                "no events for job {}; check the id (job ids are UUIDs)",
                missing.join(", ")
            );
        }
    }
    Ok(source)
}

/// Reads every event of the scope appended so far, applying each page while the next is
/// fetched. Returns the last position covered.
async fn main_pass(
    source: &mut EventSource,
    writer: &mut Writer,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<i64> {
    let last = source.last_position().await?;
    let seen_from = (last - options.catch_up_margin).max(0);
    writer.decoder.seen_from = seen_from;
    writer.decoder.seen = vec![false; (last - seen_from) as usize];
    progress.start(source.count(0, last).await?);
    pass(source, writer, 0, last, options, progress).await?;
    progress.finish();
    Ok(last)
}

/// Applies the scope's events that the main pass (up to position `last`) did not see: those
/// appended since, and those below `last` that committed too late for it, looked for
/// `catch_up_margin` positions back. Nothing is forgotten first; what the view already has
/// is a harmless duplicate.
async fn catch_up(
    source: &mut EventSource,
    writer: &mut Writer,
    last: i64,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let from = (last - options.catch_up_margin).max(0);
    let until = source.last_position().await?;
    writer.catch_up();
    pass(source, writer, from, until, options, &Silent).await?;
    let summary = writer.summary("");
    progress.note(&format!(
        "catch-up: {} events the main pass did not see (appended since, or committed late), {} of them new to the view",
        summary.caught_up_read, summary.caught_up_applied
    ));
    Ok(())
}

async fn pass(
    source: &mut EventSource,
    writer: &mut Writer,
    after: i64,
    up_to: i64,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let Writer { decoder, applier } = writer;
    let mut page = source.page(after, up_to).await?;
    let mut updates = decoder.decode(&page);
    // Three stages overlap: Redis applies page n while page n + 1 is fetched and decoded.
    while let Some(tail) = page.last() {
        let after = tail.position;
        let (next, applied) = tokio::join!(
            async {
                let next = source.page(after, up_to).await?;
                let updates = decoder.decode(&next);
                anyhow::Ok((next, updates))
            },
            async {
                match applier.as_mut() {
                    Some(applier) => applier.apply(&updates, options.batch_size).await,
                    None => Ok(()),
                }
            }
        );
        applied?;
        progress.advance(page.len() as u64);
        (page, updates) = next?;
    }
    Ok(())
}

struct Writer {
    decoder: Decoder,
    /// `None` for a dry run.
    applier: Option<Applier>,
}

impl Writer {
    /// Writes into the namespace of `target`, or nowhere (a dry run); with `forget`, removes
    /// each job from the model before its first event (in-place repair).
    fn new(target: Option<(&ConnectionManager, &str)>, forget: bool) -> Self {
        Self {
            decoder: Decoder {
                catching_up: false,
                seen_from: 0,
                seen: Vec::new(),
                broken: HashSet::new(),
                stats: Summary::default(),
            },
            applier: target.map(|(redis, namespace)| Applier {
                views: JobViews::new(redis.clone(), namespace),
                forget,
                catching_up: false,
                stats: Summary::default(),
            }),
        }
    }

    /// From now on, re-apply without forgetting, and count apart.
    fn catch_up(&mut self) {
        self.decoder.catching_up = true;
        if let Some(applier) = &mut self.applier {
            applier.catching_up = true;
            applier.forget = false;
        }
    }

    fn summary(&self, namespace: &str) -> Summary {
        let applied = self.applier.as_ref().map(|a| &a.stats);
        let read = &self.decoder.stats;
        Summary {
            namespace: namespace.to_owned(),
            applied: applied.map_or(0, |a| a.applied),
            duplicates: applied.map_or(0, |a| a.duplicates),
            gaps: applied.map_or_else(Vec::new, |a| a.gaps.clone()),
            caught_up_applied: applied.map_or(0, |a| a.caught_up_applied),
            ..read.clone()
        }
    }
}

/// Turns stored events into view updates, counting what it reads.
struct Decoder {
    catching_up: bool,
    /// Which positions after `seen_from` the main pass read, so that the catch-up pass
    /// decodes and applies only the events committed too late for it.
    seen_from: i64,
    seen: Vec<bool>,
    /// Jobs with an undecodable event: their later events are skipped.
    broken: HashSet<String>,
    stats: Summary,
}

impl Decoder {
    fn decode(&mut self, page: &[StoredEvent]) -> Vec<ViewUpdate> {
        let mut updates = Vec::with_capacity(page.len());
        for row in page {
            let slot = usize::try_from(row.position - self.seen_from - 1)
                .ok()
                .filter(|slot| *slot < self.seen.len());
            if self.catching_up {
                if slot.is_some_and(|slot| self.seen[slot]) {
                    continue;
                }
                self.stats.caught_up_read += 1;
            } else {
                if let Some(slot) = slot {
                    self.seen[slot] = true;
                }
                self.stats.events += 1;
                if row.sequence == 1 {
                    self.stats.jobs += 1;
                }
            }
            if self.broken.contains(&row.aggregate_id) {
                self.stats.skipped += u64::from(!self.catching_up);
                continue;
            }
            let decoded = row.envelope().and_then(|envelope| {
                let event = envelope.event().map_err(|e| e.reason)?;
                Ok(ViewUpdate::of(&envelope, &event))
            });
            match decoded {
                Ok(update) => updates.push(update),
                Err(reason) => {
                    self.broken.insert(row.aggregate_id.clone());
                    let reported = self
                        .stats
                        .undecodable
                        .iter()
                        .any(|u| u.position == row.position);
                    if !reported {
                        self.stats.undecodable.push(Undecodable {
                            position: row.position,
                            job_id: row.aggregate_id.clone(),
                            sequence: row.sequence,
                            event_id: row.event_id(),
                            reason,
                        });
                    }
                }
            }
        }
        updates
    }
}

/// Applies view updates in pipelines, counting the outcomes.
struct Applier {
    views: JobViews,
    forget: bool,
    catching_up: bool,
    stats: Summary,
}

impl Applier {
    async fn apply(&mut self, updates: &[ViewUpdate], batch_size: usize) -> anyhow::Result<()> {
        for batch in updates.chunks(batch_size) {
            if self.forget {
                self.views.forget(batch).await?;
            }
            let outcomes = self.views.apply(batch).await?;
            for (update, outcome) in batch.iter().zip(outcomes) {
                match (outcome, self.catching_up) {
                    (ApplyOutcome::Applied, false) => self.stats.applied += 1,
                    (ApplyOutcome::Applied, true) => self.stats.caught_up_applied += 1,
                    (ApplyOutcome::Duplicate, false) => self.stats.duplicates += 1,
                    (ApplyOutcome::Duplicate, true) => {}
                    (ApplyOutcome::Gap { last }, _) => self.stats.gaps.push(Gap {
                        job_id: update.job_id.clone(),
                        sequence: update.sequence,
                        last,
                    }),
                }
            }
        }
        Ok(())
    }
}

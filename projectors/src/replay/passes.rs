//! The order of a replay's work: open the source, the main pass over everything appended
//! so far, the switch of the live pointer, and the catch-up pass for what the main pass did
//! not see. Each pass reads a page while the previous one is applied.

use super::source::EventSource;
use super::writer::Writer;
use super::{Progress, ReplayOptions, Scope, Silent, Summary};
use anyhow::{bail, Context};
use ordo_read_model::lock::Held;
use ordo_read_model::{keys, namespace};
use redis::aio::ConnectionManager;
use sqlx::PgPool;

/// Under the rebuild lock (one rebuild of a deployment at a time): fills `target`, switches
/// the pointer, catches up, marks `target` complete, and drops the previous namespace if
/// asked.
#[allow(clippy::too_many_arguments)]
pub(super) async fn into(
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
    let mut lock = super::rebuild_lock(redis, prefix);
    let work = |epoch| async move {
        let mut summary = build(pool, redis, prefix, target, epoch, options, progress).await?;
        if drop_previous {
            summary.dropped =
                Some(delete_previous(redis, prefix, target, &summary, progress).await?);
        }
        anyhow::Ok(summary)
    };
    match lock.run(work).await? {
        Held::Done(summary) => summary,
        Held::Busy => Err(super::RebuildRunning {
            lock: keys::lock(prefix, keys::REBUILD_LOCK),
        }
        .into()),
        Held::Lost => bail!(
            "the rebuild lost its lock (Redis did not answer for {:?}) and stopped; run it again",
            super::REBUILD_LOCK_TTL
        ),
    }
}

/// The main pass into `target`, the switch, the catch-up, then the marker.
async fn build(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    prefix: &str,
    target: &str,
    epoch: u64,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Summary> {
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
    namespace::mark(
        redis,
        target,
        epoch,
        summary.events + summary.caught_up_read,
    )
    .await?;
    summary.previous = Some(previous);
    Ok(summary)
}

/// Deletes the namespace that was live before the switch, unless it is live again.
async fn delete_previous(
    redis: &mut ConnectionManager,
    prefix: &str,
    target: &str,
    summary: &Summary,
    progress: &dyn Progress,
) -> anyhow::Result<u64> {
    let Some(previous) = summary.previous.as_deref().filter(|p| *p != target) else {
        return Ok(0);
    };
    let live_now = namespace::active(redis, prefix).await?;
    if live_now == previous {
        bail!("the previous namespace {previous} is live again (another switch?); not deleting it");
    }
    let dropped = namespace::delete(redis, previous).await?;
    progress.note(&format!("deleted {dropped} keys of namespace {previous}"));
    Ok(dropped)
}

pub(super) async fn open(pool: &PgPool, options: &ReplayOptions) -> anyhow::Result<EventSource> {
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
pub(super) async fn main_pass(
    source: &mut EventSource,
    writer: &mut Writer,
    options: &ReplayOptions,
    progress: &dyn Progress,
) -> anyhow::Result<i64> {
    let last = source.last_position().await?;
    let seen_from = (last - options.catch_up_margin).max(0);
    writer.decoder.track_seen(seen_from, last);
    progress.start(source.count(0, last).await?);
    pass(source, writer, 0, last, options, progress).await?;
    progress.finish();
    Ok(last)
}

/// Applies the scope's events that the main pass (up to position `last`) did not see: those
/// appended since, and those below `last` that committed too late for it, looked for
/// `catch_up_margin` positions back. Nothing is forgotten first; what the view already has
/// is a harmless duplicate.
pub(super) async fn catch_up(
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

pub(super) async fn pass(
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

//! `ordo replay`: rebuild, repair, verify or dry-run a read model from the event store (the
//! work is in `ordo_projectors::replay`). Progress goes to stderr: a bar with rate and ETA on
//! a terminal, a plain line every 2 s otherwise; results go to stdout.

use crate::cli::{GlobalArgs, ProjectorName, ReplayArgs};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ordo_common::db;
use ordo_projectors::replay::history::{self, HistorySummary};
use ordo_projectors::replay::{self, Mode, Progress, ReplayOptions, Scope, Summary};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often plain progress lines are printed.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Most differences `--verify` lists per side.
const DIFFERENCES_SHOWN: u64 = 1_000;

pub async fn run(global: &GlobalArgs, args: &ReplayArgs) -> anyhow::Result<()> {
    let scope = match (&args.since, args.jobs.is_empty()) {
        (Some(since), _) => Scope::Since(*since),
        (None, false) => Scope::Jobs(args.jobs.clone()),
        (None, true) => Scope::All,
    };
    let options = ReplayOptions {
        scope,
        page_size: args.page_size,
        batch_size: args.batch,
        settle: Duration::from_millis(args.settle_ms),
        catch_up_margin: args.catch_up_margin,
        ..ReplayOptions::default()
    };
    if options.page_size == 0 || options.batch_size == 0 || options.catch_up_margin < 0 {
        bail!("--page-size and --batch must be at least 1, --catch-up-margin at least 0");
    }
    let pool = db::connect(&global.db_config())?;
    match args.projector {
        ProjectorName::RedisViews => {}
        ProjectorName::ClickhouseHistory => return history(global, args, &pool, &options).await,
        ProjectorName::ClickhouseLogs => bail!(
            "the log lines are not in the event store, so they cannot be replayed; \
             clickhouse-logs resumes from Kafka by itself"
        ),
    }
    let redis = ordo_read_model::connect(&global.redis_url)
        .await
        .with_context(|| format!("cannot reach Redis at {}", global.redis_url))?;
    let progress = Reporter::new();

    if args.verify {
        let verification =
            replay::verify(&pool, &redis, &global.redis_prefix, &options, &progress).await?;
        print_summary("verified", &verification.summary);
        for difference in &verification.differences {
            println!("{difference}");
        }
        let count = verification.differences.len();
        println!(
            "{count} difference{} between live namespace {} and the replay",
            if count == 1 { "" } else { "s" },
            verification.live
        );
        if count > 0 {
            bail!("the live read model differs from a replay in {count} places (listed above)");
        }
        return check_gaps(&verification.summary);
    }

    let mode = if args.dry_run {
        Mode::DryRun
    } else if options.scope != Scope::All {
        Mode::InPlace
    } else {
        Mode::Into {
            namespace: args.into.clone(),
            drop_previous: args.drop_previous,
        }
    };
    let summary = replay::run(
        &pool,
        &redis,
        &global.redis_prefix,
        &mode,
        &options,
        &progress,
    )
    .await?;
    let verb = match mode {
        Mode::DryRun => "read (dry run, nothing written)",
        Mode::InPlace => "repaired in place",
        Mode::Into { .. } => "rebuilt",
    };
    print_summary(verb, &summary);
    if let (Some(previous), None) = (&summary.previous, summary.dropped) {
        // When the previous namespace is the prefix itself, its pattern also matches the
        // deployment's keys (the pointer, the locks), which must survive.
        let keep_pointer = if *previous == global.redis_prefix {
            let prefix = &global.redis_prefix;
            format!(" | grep -vxF '{prefix}:active' | grep -vF '{prefix}:lock:'")
        } else {
            String::new()
        };
        println!(
            "namespace {previous} is no longer live; delete its keys with --drop-previous next time, or now with:\n  \
             redis-cli -u {} --scan --pattern '{previous}:*'{keep_pointer} | xargs -r redis-cli -u {} unlink",
            global.redis_url, global.redis_url
        );
    }
    check_gaps(&summary)
}

/// `--projector clickhouse-history`: rebuild `job_events`, verify it, or read only.
async fn history(
    global: &GlobalArgs,
    args: &ReplayArgs,
    pool: &sqlx::PgPool,
    options: &ReplayOptions,
) -> anyhow::Result<()> {
    if args.into.is_some() || args.drop_previous {
        bail!("--into and --drop-previous name Redis namespaces; a history rebuild swaps the table itself");
    }
    let clickhouse = global.clickhouse_config()?;
    let progress = Reporter::new();
    let summary = if args.verify {
        let verification =
            history::verify(pool, &clickhouse, options, DIFFERENCES_SHOWN, &progress).await?;
        print_history("verified", &verification.summary);
        for difference in &verification.differences {
            println!("{difference}");
        }
        let total = verification.total;
        println!(
            "{total} difference{} between job_events and the replay{}",
            if total == 1 { "" } else { "s" },
            if total > verification.differences.len() as u64 {
                " (the first ones listed)"
            } else {
                ""
            }
        );
        if total > 0 {
            bail!("job_events differs from a replay of the event store in {total} rows (listed above)");
        }
        verification.summary
    } else if args.dry_run {
        let summary = history::dry_run(pool, options, &progress).await?;
        print_history("read (dry run, nothing written)", &summary);
        summary
    } else {
        let summary = history::rebuild(pool, &clickhouse, options, &progress).await?;
        print_history("rebuilt", &summary);
        summary
    };
    if !summary.undecodable.is_empty() {
        bail!(
            "{} events could not be read (listed above); they are not in job_events",
            summary.undecodable.len()
        );
    }
    Ok(())
}

fn print_history(verb: &str, summary: &HistorySummary) {
    for undecodable in &summary.undecodable {
        println!("undecodable {undecodable}");
    }
    println!(
        "{verb}: {} events (table {}) in {:.2} s ({:.0} events/s); rows written {}, \
         without a known type and queue {}, undecodable {}",
        summary.events,
        summary.table,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.written,
        summary.unknown_kinds,
        summary.undecodable.len(),
    );
    if summary.caught_up > 0 {
        println!("catch-up: {} rows inserted again", summary.caught_up);
    }
}

fn print_summary(verb: &str, summary: &Summary) {
    for undecodable in &summary.undecodable {
        println!("undecodable {undecodable}");
    }
    for gap in &summary.gaps {
        println!("gap: {gap}");
    }
    println!(
        "{verb}: {} events of {} jobs (namespace {}) in {:.2} s ({:.0} events/s); \
         applied {}, duplicates {}, undecodable {}, skipped after them {}, gaps {}",
        summary.events,
        summary.jobs,
        summary.namespace,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.applied,
        summary.duplicates,
        summary.undecodable.len(),
        summary.skipped,
        summary.gaps.len(),
    );
    if summary.caught_up_read > 0 {
        println!(
            "catch-up: {} events read again, {} of them new",
            summary.caught_up_read, summary.caught_up_applied
        );
    }
}

/// A gap means a hole in a job's stored sequence or a bug; either way the command fails.
fn check_gaps(summary: &Summary) -> anyhow::Result<()> {
    if !summary.gaps.is_empty() {
        bail!(
            "{} events met a gap (listed above): a job's stored sequence has a hole, or this is a bug",
            summary.gaps.len()
        );
    }
    Ok(())
}

/// Progress on stderr: an indicatif bar on a terminal, plain lines otherwise.
enum Reporter {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

struct Lines {
    total: u64,
    done: u64,
    started: Instant,
    printed: Instant,
}

impl Reporter {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Self::Bar(bar)
        } else {
            let now = Instant::now();
            Self::Lines(Mutex::new(Lines {
                total: 0,
                done: 0,
                started: now,
                printed: now,
            }))
        }
    }
}

impl Lines {
    fn print(&self) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / seconds;
        let eta = if rate > 0.0 {
            format!(
                "{:.0} s",
                self.total.saturating_sub(self.done) as f64 / rate
            )
        } else {
            "?".into()
        };
        eprintln!(
            "replay: {}/{} events, {rate:.0} events/s, ETA {eta}",
            self.done, self.total
        );
    }
}

impl Progress for Reporter {
    fn start(&self, total: u64) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(total);
                bar.reset();
            }
            Self::Lines(lines) => {
                let mut lines = lines.lock().expect("not poisoned");
                lines.total = total;
                lines.started = Instant::now();
                lines.printed = lines.started;
                eprintln!("replay: {total} events to read");
            }
        }
    }

    fn advance(&self, events: u64) {
        match self {
            Self::Bar(bar) => bar.inc(events),
            Self::Lines(lines) => {
                let mut lines = lines.lock().expect("not poisoned");
                lines.done += events;
                if lines.printed.elapsed() >= LINE_INTERVAL {
                    lines.printed = Instant::now();
                    lines.print();
                }
            }
        }
    }

    fn finish(&self) {
        match self {
            Self::Bar(bar) => bar.finish(),
            Self::Lines(lines) => lines.lock().expect("not poisoned").print(),
        }
    }

    fn note(&self, line: &str) {
        match self {
            Self::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            Self::Lines(_) => eprintln!("replay: {line}"),
        }
    }
}

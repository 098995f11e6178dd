//! `ordo bench queue`: a queue benchmark in the shape users run a job queue, for Ordo
//! ([`ordo`]) and, measured the same way beside it, graphile-worker ([`graphile`]). Each runs
//! on a private PostgreSQL (`ordo::instances`, the same settings for both), one worker
//! process with `--slots` slots runs the jobs, and a client with `--clients` callers submits
//! one no-op job after another on each. After a warm-up of [`WARMUP_JOBS`] through the whole
//! pipeline, the measured run prints the same lines for either system ([`Report`]):
//! enqueue/s as the client saw it, lifecycle/s (first enqueue → last complete), enqueue →
//! complete latency split at the start, how often jobs started, and the CPU seconds each
//! process of the stack spent ([`cpu`]).

mod graphile;
mod ordo;

use super::lifecycle::{percentiles, Lifecycle};
use super::PhaseResult;
use crate::bench::cpu::{self, Usage, Work};
use crate::cli::{GlobalArgs, QueueBenchArgs, QueueSystem};
use anyhow::Context;
use std::time::Duration;

/// Through the whole pipeline before measuring: consumer groups form, every pool and
/// connection opens.
const WARMUP_JOBS: usize = 200;
const WARMUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a started process may take to come up (graphile-worker migrates first).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the bench looks whether every job completed.
const POLL: Duration = Duration::from_millis(250);
/// Longest a single submit may take.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(global: &GlobalArgs, args: QueueBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(
        (1..=10_000).contains(&args.clients),
        "--clients must be 1 to 10000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.slots),
        "--slots must be 1 to 10000"
    );
    anyhow::ensure!(
        args.url.is_none() || args.system == QueueSystem::Ordo,
        "--url measures a running Ordo; it does not go with --system graphile-worker"
    );
    let dir = std::env::temp_dir().join(format!(
        "ordo-bench-queue-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create the run's directory {}", dir.display()))?;
    let bench = async {
        match args.system {
            QueueSystem::Ordo => ordo::run(global, &args, &dir).await,
            QueueSystem::GraphileWorker => graphile::run(&args, &dir).await,
        }
    };
    // Ctrl-C or SIGTERM drops the bench and with it the stack: every process it started is
    // killed, the cluster stopped.
    tokio::select! {
        result = bench => result,
        _ = crate::serve::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    }
}

/// What a system's measured run printed, the same lines for every system; the labels say
/// where each figure comes from.
struct Report<'a> {
    jobs: usize,
    /// Client view: each submit from its send to its answer, jobs / time of the phase.
    enqueue: &'a PhaseResult,
    enqueue_label: &'a str,
    lifecycle: &'a Lifecycle,
    latency_label: &'a str,
    /// What one start of a job is called in this system.
    start_events: &'a str,
    usage: &'a Usage,
}

impl Report<'_> {
    fn print(&self) {
        let lifecycle = self.lifecycle;
        println!("load average at start: {}", self.usage.load_start);
        println!("{}", self.enqueue.line(self.enqueue_label, "jobs"));
        println!(
            "{:<46} {:>9.0} jobs/s ({} jobs in {:.2} s)",
            "lifecycle: first enqueue → last complete",
            lifecycle.jobs_per_second(),
            lifecycle.completed,
            lifecycle.span.as_secs_f64(),
        );
        println!("{}", percentiles(self.latency_label, &lifecycle.total_ms));
        println!("{}", percentiles("  enqueue → start", &lifecycle.queued_ms));
        println!(
            "{}",
            percentiles("  start → complete", &lifecycle.running_ms)
        );
        let once = if lifecycle.starts == lifecycle.jobs && lifecycle.started_once == lifecycle.jobs
        {
            "each started exactly once"
        } else {
            "NOT each started exactly once"
        };
        println!(
            "starts: {} {} for {} jobs ({once}); {} failed attempts",
            lifecycle.starts, self.start_events, lifecycle.jobs, lifecycle.failures
        );
        let usage = self.usage;
        let work = Work {
            count: self.jobs,
            per: 1_000,
            unit: "jobs",
        };
        cpu::print_cpu(
            usage,
            "from the first enqueue until every job completed",
            work,
        );
        println!("load average at end:   {}", usage.load_end);
    }
}

//! `ordo bench e2e`: the whole job lifecycle. `noop` jobs are submitted over HTTP to the
//! platform running in this process on scratch state ([`ScratchPlatform`]), and `--workers`
//! worker runtimes in the same process claim, start and complete them over HTTP like any
//! other worker. Without `--rate` the submits run closed-loop (`--submit-concurrency` in
//! flight) and jobs/s runs from the first JobSubmitted to the last JobCompleted; with it they
//! come at a steady rate. Either way each job's submit → complete latency is read from the
//! event store (the `occurred_at` of its JobSubmitted and JobCompleted events), the roles'
//! own metrics show where the time goes, and then, on the same database with the platform
//! stopped, the raw limit of PostgreSQL is measured as `bench submit` does: single-row
//! INSERTs of rows the size of the outbox rows.

use super::lifecycle::{ms, percentiles, Lifecycle};
use super::scratch::ScratchPlatform;
use super::submit::raw_inserts;
use super::{measure, measure_paced, registry_counter, submit_job, Buckets, PhaseResult, QUEUE};
use crate::cli::{E2eBenchArgs, GlobalArgs};
use anyhow::{bail, Context};
use ordo_common::db::{self, DbConfig};
use ordo_domain::EventEnvelope;
use ordo_protocol::tenant::DEFAULT_TENANT;
use ordo_worker::{runtime, ApiClient, Handlers, WorkerConfig, WorkerMetrics};
use prometheus::Registry;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const SCRATCH_DB: &str = "ordo_bench_e2e";
const JOB_TYPE: &str = "noop";
/// Run through the whole pipeline before measuring, so the projector's consumer group has
/// formed and every pool and connection is open.
const WARMUP_JOBS: usize = 500;
/// The warm-up includes the consumer group's join, about half its session timeout.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(30);
/// Short, so the workers stop soon after the run; a job that arrives ends a wait within the
/// server's own poll interval anyway.
const CLAIM_WAIT: Duration = Duration::from_secs(1);
const WORKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the wait for the last jobs looks again (see [`wait_completed`]).
const POLL: Duration = Duration::from_millis(50);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A job's lifecycle is three commands: submit, start (by the claim), complete.
const COMMANDS_PER_JOB: f64 = 3.0;
const TARGET_JOBS_PER_SECOND: f64 = 1_400.0;
const TARGET_RATE: u32 = 500;
const TARGET_P50_MS: f64 = 25.0;
const TARGET_P99_MS: f64 = 100.0;

/// A histogram that shows where a job's time goes.
struct Stage {
    label: &'static str,
    metric: &'static str,
    /// The series of the metric that count, by their labels.
    labels: &'static [(&'static str, &'static str)],
}

const STAGES: [Stage; 5] = [
    Stage {
        label: "relay: commit → Kafka ack",
        metric: "ordo_outbox_relay_lag_seconds",
        labels: &[],
    },
    Stage {
        label: "projector: occurred_at → in Redis",
        metric: "ordo_projection_lag_seconds",
        labels: &[],
    },
    Stage {
        label: "HTTP POST /api/v1/jobs (submit)",
        metric: "ordo_http_request_duration_seconds",
        labels: &[("route", "/api/v1/jobs"), ("method", "POST")],
    },
    Stage {
        label: "HTTP POST /api/v1/workers/claim (+ reports)",
        metric: "ordo_http_request_duration_seconds",
        labels: &[("route", "/api/v1/workers/claim")],
    },
    Stage {
        label: "HTTP POST /api/v1/workers/reports",
        metric: "ordo_http_request_duration_seconds",
        labels: &[("route", "/api/v1/workers/reports")],
    },
];

pub async fn run(args: &GlobalArgs, bench: E2eBenchArgs) -> anyhow::Result<()> {
    if bench.jobs == 0 || bench.workers == 0 || bench.concurrency == 0 {
        bail!("--jobs, --workers and --concurrency must be at least 1");
    }
    if bench.submit_concurrency == 0 || bench.rate == Some(0) || bench.seconds == Some(0) {
        bail!("--submit-concurrency, --rate and --seconds must be at least 1");
    }
    let jobs = match (bench.rate, bench.seconds) {
        (Some(rate), Some(seconds)) => rate as usize * seconds as usize,
        _ => bench.jobs,
    };
    let pace = match bench.rate {
        Some(rate) => format!("at {rate} submits/s"),
        None => format!(
            "closed loop, {} submits in flight",
            bench.submit_concurrency
        ),
    };
    println!(
        "ordo bench e2e: {jobs} {JOB_TYPE} jobs {pace}; {} workers × {} concurrent, claim wait {} ms, lease {} s; \
         payload {} B; platform in-process on the scratch database {SCRATCH_DB}, pool {}",
        bench.workers,
        bench.concurrency,
        CLAIM_WAIT.as_millis(),
        LEASE.as_secs(),
        bench.payload_bytes,
        args.database_pool_size,
    );

    let platform = ScratchPlatform::start(args, SCRATCH_DB).await?;
    let scratch_url = platform.args.database_url.clone();
    // Its own connection, beside the platform's pool: watching must not take a connection
    // a command is waiting for.
    let pool = db::connect(&DbConfig {
        max_connections: 1,
        ..DbConfig::new(&scratch_url)
    })?;
    let workers = Workers::start(&platform, &bench)?;
    let measured = measure_lifecycle(&platform, &pool, &bench, jobs).await;
    workers.stop().await;
    platform.stop().await?;
    let measured = measured?;
    let lifecycle = Lifecycle::query(&pool, measured.after_position).await?;

    // The raw limit on the same database and the same cores, with nothing else running.
    let sample = submitted_envelope(&pool).await?;
    pool.close().await;
    let raw_pool = db::connect(&DbConfig {
        max_connections: bench.submit_concurrency as u32,
        ..DbConfig::new(&scratch_url)
    })?;
    let raw = raw_inserts(&raw_pool, sample, jobs, bench.submit_concurrency).await?;
    raw_pool.close().await;
    db::drop_database(&args.database_url, SCRATCH_DB).await?;

    report(&bench, &measured, &lifecycle, &raw);
    Ok(())
}

/// The worker runtimes, all in this process, sharing one set of worker metrics.
struct Workers {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Workers {
    fn start(platform: &ScratchPlatform, bench: &E2eBenchArgs) -> anyhow::Result<Self> {
        let metrics = WorkerMetrics::register(platform.registry())?;
        let handlers = Arc::new(Handlers::builtin());
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for worker in 0..bench.workers {
            let config = WorkerConfig {
                worker_id: format!("bench-e2e-{worker}"),
                queues: vec![QUEUE.to_owned()],
                concurrency: bench.concurrency,
                lease: LEASE,
                claim_wait: CLAIM_WAIT,
                shutdown_grace: LEASE,
            };
            let client =
                ApiClient::new(&platform.base_url, DEFAULT_TENANT, WORKER_REQUEST_TIMEOUT)?;
            tasks.spawn(runtime::run(
                config,
                client,
                handlers.clone(),
                Some(metrics.clone()),
                shutdown.clone(),
            ));
        }
        Ok(Self { shutdown, tasks })
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What the measured run left besides its events.
struct Measured {
    /// The events of the measured jobs are those after this position (the warm-up's are not).
    after_position: i64,
    submits: PhaseResult,
    /// Each of [`STAGES`], as observed during the measured run.
    stages: Vec<Buckets>,
    /// Start commands the claims ran during the measured run, by outcome.
    starts: Vec<(&'static str, f64)>,
}

async fn measure_lifecycle(
    platform: &ScratchPlatform,
    pool: &PgPool,
    bench: &E2eBenchArgs,
    jobs: usize,
) -> anyhow::Result<Measured> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base_url: Arc<str> = platform.base_url.as_str().into();
    let padding: Arc<str> = "x".repeat(bench.payload_bytes).into();
    let submit = Arc::new(move |i: usize| {
        let (client, base_url, padding) = (client.clone(), base_url.clone(), padding.clone());
        async move {
            submit_job(&client, &base_url, JOB_TYPE, &padding, i).await?;
            Ok(())
        }
    });

    let registry = platform.registry();
    let warm = submit.clone();
    measure(WARMUP_JOBS, bench.submit_concurrency, move |i| warm(i)).await?;
    wait_completed(pool, registry, 0, 0.0, WARMUP_JOBS, WARMUP_TIMEOUT)
        .await
        .context("warm-up")?;
    let after_position: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(pool)
        .await?;

    let handled_before = completes_handled(registry);
    let stages_before = gather_stages(registry);
    let starts_before = start_commands(registry);
    let submits = match bench.rate {
        Some(rate) => measure_paced(rate, jobs, move |i| submit(i)).await?,
        None => measure(jobs, bench.submit_concurrency, move |i| submit(i)).await?,
    };
    wait_completed(
        pool,
        registry,
        after_position,
        handled_before,
        jobs,
        Duration::from_secs(bench.timeout_secs),
    )
    .await?;
    let stages = (gather_stages(registry).iter())
        .zip(&stages_before)
        .map(|(after, before)| after.since(before))
        .collect();
    let starts = (start_commands(registry).into_iter())
        .zip(starts_before)
        .map(|((outcome, after), (_, before))| (outcome, after - before))
        .collect();
    Ok(Measured {
        after_position,
        submits,
        stages,
        starts,
    })
}

fn gather_stages(registry: &Registry) -> Vec<Buckets> {
    STAGES
        .iter()
        .map(|stage| Buckets::gather(registry, stage.metric, stage.labels))
        .collect()
}

/// Start commands the claims ran so far, by outcome (a claim the aggregate refuses is not
/// started, and its job waits for the reaper).
fn start_commands(registry: &Registry) -> Vec<(&'static str, f64)> {
    ["ok", "rejected", "not_found", "conflict", "error"]
        .into_iter()
        .map(|outcome| {
            let labels = [("command", "start"), ("outcome", outcome)];
            (
                outcome,
                registry_counter(registry, "ordo_commands_handled_total", &labels),
            )
        })
        .collect()
}

/// Waits until `expected` jobs have a JobCompleted event after `after_position`. The event
/// store decides, but counting the run's events costs tens of ms at 60k rows, so it is only
/// asked once the process's own count of completes handled since `handled_before` says the
/// jobs should all be there: polling it all along would compete with the platform for the
/// same 2 cores.
async fn wait_completed(
    pool: &PgPool,
    registry: &Registry,
    after_position: i64,
    handled_before: f64,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started_waiting = Instant::now();
    let mut reported = started_waiting;
    loop {
        let handled = completes_handled(registry) - handled_before;
        if handled >= expected as f64 && completed_events(pool, after_position).await?.0 >= expected
        {
            return Ok(());
        }
        if started_waiting.elapsed() >= timeout {
            let (completed, started, failed) = completed_events(pool, after_position).await?;
            bail!(
                "only {completed} of {expected} jobs completed within {} s after the last submit \
                 ({started} started, {failed} failed attempts); see the log for the role that stalled",
                timeout.as_secs()
            );
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            tracing::info!(
                completed = handled,
                expected,
                "waiting for the jobs to complete"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn completes_handled(registry: &Registry) -> f64 {
    let labels = [("command", "complete"), ("outcome", "ok")];
    registry_counter(registry, "ordo_commands_handled_total", &labels)
}

/// (JobCompleted, JobStarted, JobFailed) events after `after_position`.
async fn completed_events(pool: &PgPool, after_position: i64) -> anyhow::Result<(usize, i64, i64)> {
    let (completed, started, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'JobCompleted'), \
                count(*) FILTER (WHERE event_type = 'JobStarted'), \
                count(*) FILTER (WHERE event_type = 'JobFailed') \
         FROM events WHERE position > $1",
    )
    .bind(after_position)
    .fetch_one(pool)
    .await?;
    Ok((completed as usize, started, failed))
}

/// A JobSubmitted event of the run as its outbox row carried it (the relay deleted those
/// rows once Kafka had them), to size the raw rows by.
async fn submitted_envelope(pool: &PgPool) -> anyhow::Result<Value> {
    let (job_id, sequence, event_type, version, payload, metadata): (
        String,
        i64,
        String,
        String,
        Value,
        Value,
    ) = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata \
         FROM events WHERE event_type = 'JobSubmitted' LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    let envelope = EventEnvelope::from_stored(
        &job_id,
        sequence as u64,
        &event_type,
        &version,
        &payload,
        &metadata,
    )?;
    Ok(serde_json::to_value(envelope)?)
}

fn report(bench: &E2eBenchArgs, measured: &Measured, lifecycle: &Lifecycle, raw: &PhaseResult) {
    let jobs_per_second = lifecycle.jobs_per_second();
    println!(
        "{}",
        measured
            .submits
            .line("submit over HTTP (workers running)", "submits")
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let target = match bench.rate {
        None => format!(
            "target ≥ {TARGET_JOBS_PER_SECOND:.0} jobs/s: {}",
            verdict(jobs_per_second >= TARGET_JOBS_PER_SECOND)
        ),
        Some(rate) => format!("paced at {rate} submits/s"),
    };
    println!(
        "{:<46} {:>9.0} jobs/s = {:.0} commands/s ({} jobs in {:.2} s)   {target}",
        "whole lifecycle: first submit → last complete",
        jobs_per_second,
        jobs_per_second * COMMANDS_PER_JOB,
        lifecycle.completed,
        lifecycle.span.as_secs_f64(),
    );
    let (p50, p99) = (ms(&lifecycle.total_ms, 0), ms(&lifecycle.total_ms, 2));
    let target = match bench.rate {
        Some(rate) => format!(
            "target at a steady {TARGET_RATE} jobs/s: p50 ≤ {TARGET_P50_MS:.0} ms {}, p99 ≤ {TARGET_P99_MS:.0} ms {}{}",
            verdict(p50 <= TARGET_P50_MS),
            verdict(p99 <= TARGET_P99_MS),
            if rate == TARGET_RATE {
                String::new()
            } else {
                format!(" (this run: {rate} jobs/s)")
            },
        ),
        None => format!(
            "(latency target: p50 ≤ {TARGET_P50_MS:.0} ms, p99 ≤ {TARGET_P99_MS:.0} ms at a steady {TARGET_RATE} jobs/s; use --rate)"
        ),
    };
    println!(
        "{}   {target}",
        percentiles("submit → complete (event store)", &lifecycle.total_ms)
    );
    println!(
        "{}",
        percentiles(
            "  submit → start (relay, projector, claim)",
            &lifecycle.queued_ms
        )
    );
    println!(
        "{}",
        percentiles("  start → complete (run, report)", &lifecycle.running_ms)
    );
    println!("where the time goes (the process's own metrics, measured run only):");
    for (Stage { label, .. }, buckets) in STAGES.iter().zip(&measured.stages) {
        let q = |q| buckets.quantile(q).map_or(f64::NAN, |s| s * 1e3);
        println!(
            "  {label:<44} p50 {:>7.1} ms   p95 {:>7.1} ms   p99 {:>7.1} ms   ({} observed)",
            q(0.5),
            q(0.95),
            q(0.99),
            buckets.count(),
        );
    }
    let once = if lifecycle.starts == lifecycle.jobs && lifecycle.started_once == lifecycle.jobs {
        "each started exactly once"
    } else {
        "NOT each started exactly once"
    };
    let commands = (measured.starts.iter())
        .filter(|&&(outcome, count)| outcome == "ok" || count > 0.0)
        .map(|(outcome, count)| format!("{count:.0} {outcome}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "starts: {} JobStarted events for {} jobs ({once}); start commands: {commands}; {} failed attempts",
        lifecycle.starts, lifecycle.jobs, lifecycle.failures,
    );
    println!(
        "{}",
        raw.line("raw single-row INSERT (same row size)", "inserts")
    );
    println!(
        "ordo/raw: jobs/s {:.2} of raw inserts/s; commands/s (3 per job) {:.2} of raw inserts/s",
        jobs_per_second / raw.per_second(),
        jobs_per_second * COMMANDS_PER_JOB / raw.per_second(),
    );
}

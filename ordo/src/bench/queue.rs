//! `ordo bench queue`: a queue benchmark in the shape users run Ordo (and compare it with
//! graphile-worker). The platform runs as `ordo dev --no-worker` in a process of its own, on a
//! private PostgreSQL, Redis and broker ([`ordo::instances`]); one `ordo serve worker`
//! process with `--slots` slots runs the jobs; this process is the client: `--clients` tasks,
//! each submitting one `noop` job after another (`POST /api/v1/jobs` over keep-alive HTTP).
//! With `--url` the platform is one already running (`ordo dev --no-worker`, its event store
//! at `--database-url`) and only the worker is started here.
//!
//! It prints enqueue/s as the client saw it, lifecycle/s (first JobSubmitted → last
//! JobCompleted), enqueue → complete latency from the event store (the `occurred_at` of each
//! job's JobSubmitted and JobCompleted events), and the CPU seconds each process of the stack
//! spent during the measured run (utime + stime from `/proc/<pid>/stat`).

use super::e2e::{percentiles, Lifecycle};
use super::{measure, submit_job, QUEUE};
use crate::cli::{GlobalArgs, QueueBenchArgs};
use anyhow::{bail, Context};
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo::instances::{free_port, Services};
use ordo_common::db::{self, DbConfig};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOB_TYPE: &str = "noop";
/// Through the whole pipeline before measuring: the projector's consumer group forms, every
/// pool and connection opens.
const WARMUP_JOBS: usize = 200;
const WARMUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a started process may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the event store is asked whether every job completed.
const POLL: Duration = Duration::from_millis(250);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
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
    let dir = std::env::temp_dir().join(format!(
        "ordo-bench-queue-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create the run's directory {}", dir.display()))?;
    // Ctrl-C or SIGTERM drops the stack: every process it started is killed, the cluster
    // stopped.
    tokio::select! {
        result = queue(global, &args, &dir) => result,
        _ = crate::serve::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    }
}

async fn queue(global: &GlobalArgs, args: &QueueBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("find this executable")?;
    let mut stack = match &args.url {
        Some(url) => Stack::external(url, &global.database_url),
        None => Stack::private(global, &binary, dir).await?,
    };
    let worker = stack.start_worker(&binary, dir, args.slots).await?;
    println!(
        "ordo bench queue: {} noop jobs, {} client(s) each submitting one after another over \
         keep-alive HTTP, 1 worker process × {} slots; platform: {}; logs in {}",
        args.jobs,
        args.clients,
        args.slots,
        stack.describe(),
        dir.display()
    );

    let pool = db::connect(&DbConfig {
        max_connections: 2,
        ..DbConfig::new(&stack.database_url)
    })?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients.max(8))
        .timeout(SUBMIT_TIMEOUT)
        .build()?;
    let base_url: Arc<str> = stack.api_url.as_str().into();
    let submit = move |i: usize| {
        let (client, base_url) = (client.clone(), base_url.clone());
        async move {
            submit_job(&client, &base_url, JOB_TYPE, "", i).await?;
            Ok(())
        }
    };
    let submit = Arc::new(submit);

    // Warm-up: through the whole pipeline once.
    let start_position = last_position(&pool).await?;
    let warm = submit.clone();
    measure(WARMUP_JOBS, args.clients, move |i| warm(i)).await?;
    wait_completed(&pool, start_position, WARMUP_JOBS, WARMUP_TIMEOUT)
        .await
        .context("warm-up")?;

    // The measured run.
    let after_position = last_position(&pool).await?;
    let load_start = loadavg();
    let processes = stack.processes(&worker);
    let cpu_before = cpu_seconds(&processes);
    let wall = Instant::now();
    let run = submit.clone();
    let submits = measure(args.jobs, args.clients, move |i| run(i)).await?;
    wait_completed(
        &pool,
        after_position,
        args.jobs,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    let wall = wall.elapsed();
    let cpu_after = cpu_seconds(&stack.processes(&worker));
    let lifecycle = Lifecycle::query(&pool, after_position).await?;
    pool.close().await;

    println!("load average at start: {load_start}");
    println!("{}", submits.line("enqueue (client: send → 201)", "jobs"));
    println!(
        "{:<46} {:>9.0} jobs/s ({} jobs in {:.2} s)",
        "lifecycle: first enqueue → last complete",
        lifecycle.jobs_per_second(),
        lifecycle.completed,
        lifecycle.span.as_secs_f64(),
    );
    println!(
        "{}",
        percentiles("enqueue → complete (event store)", &lifecycle.total_ms)
    );
    println!("{}", percentiles("  enqueue → start", &lifecycle.queued_ms));
    println!(
        "{}",
        percentiles("  start → complete", &lifecycle.running_ms)
    );
    let once = if lifecycle.starts == lifecycle.jobs && lifecycle.started_once == lifecycle.jobs {
        "each started exactly once"
    } else {
        "NOT each started exactly once"
    };
    println!(
        "starts: {} JobStarted events for {} jobs ({once}); {} failed attempts",
        lifecycle.starts, lifecycle.jobs, lifecycle.failures
    );
    print_cpu(&cpu_before, &cpu_after, wall, args.jobs);
    println!("load average at end:   {}", loadavg());

    tokio::task::block_in_place(|| {
        stop(worker, "worker");
        if let Some(platform) = stack.platform.take() {
            stop(platform, "platform");
        }
    });
    Ok(())
}

/// SIGTERM and a bounded wait; a process that does not stop is killed.
fn stop(mut process: OrdoProcess, name: &str) {
    if let Err(e) = process.terminate(STOP_TIMEOUT) {
        tracing::warn!(process = name, error = %format!("{e:#}"), "did not stop cleanly");
    }
}

/// Where the platform runs and what belongs to it.
struct Stack {
    api_url: String,
    database_url: String,
    /// `ordo dev --no-worker`, when started here.
    platform: Option<OrdoProcess>,
    /// The private services (none with `--url`). Dropped after the platform.
    services: Option<Services>,
}

impl Stack {
    fn external(url: &str, database_url: &str) -> Self {
        Self {
            api_url: url.trim_end_matches('/').to_owned(),
            database_url: database_url.to_owned(),
            platform: None,
            services: None,
        }
    }

    /// A private PostgreSQL, Redis and broker, and `ordo dev --no-worker` on them.
    async fn private(global: &GlobalArgs, binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let services = tokio::task::block_in_place(|| Services::start_in(dir))?;
        let database_url = services.cluster.url("ordo");
        let port = free_port()?;
        let api_url = format!("http://127.0.0.1:{port}");
        let spec = ProcessSpec::new(binary, &["dev", "--no-worker"])
            .clean_env()
            .log(&dir.join("platform.log"))
            .env("ORDO_LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .env("ORDO_DATABASE_URL", &database_url)
            .env(
                "ORDO_DATABASE_POOL_SIZE",
                global.database_pool_size.to_string(),
            )
            .env("ORDO_REDIS_URL", services.redis.url())
            .env("ORDO_KAFKA_BROKERS", services.broker.address())
            .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"));
        let mut platform = OrdoProcess::spawn(spec).context("start ordo dev --no-worker")?;
        platform
            .wait_ok(&format!("{api_url}/healthz"), READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "ordo dev --no-worker did not come up (log: {})",
                    dir.join("platform.log").display()
                )
            })?;
        Ok(Self {
            api_url,
            database_url,
            platform: Some(platform),
            services: Some(services),
        })
    }

    fn describe(&self) -> String {
        match self.platform {
            Some(_) => "`ordo dev --no-worker` on a private PostgreSQL, Redis and broker".into(),
            None => format!("the running one at {}", self.api_url),
        }
    }

    /// `ordo serve worker` with `slots` slots, claiming from the benchmark's queue.
    async fn start_worker(
        &self,
        binary: &Path,
        dir: &Path,
        slots: usize,
    ) -> anyhow::Result<OrdoProcess> {
        let metrics_port = free_port()?;
        let spec = ProcessSpec::new(binary, &["serve", "worker"])
            .clean_env()
            .log(&dir.join("worker.log"))
            .env("ORDO_LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .env("ORDO_API_URL", &self.api_url)
            .env("ORDO_WORKER_ID", "bench-queue")
            .env("ORDO_WORKER_QUEUES", QUEUE)
            .env("ORDO_WORKER_CONCURRENCY", slots.to_string())
            .env("ORDO_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"));
        let mut worker = OrdoProcess::spawn(spec).context("start ordo serve worker")?;
        worker
            .wait_ok(
                &format!("http://127.0.0.1:{metrics_port}/healthz"),
                READY_TIMEOUT,
            )
            .await
            .with_context(|| {
                format!(
                    "ordo serve worker did not come up (log: {})",
                    dir.join("worker.log").display()
                )
            })?;
        Ok(worker)
    }

    /// The processes whose CPU time is reported, by row of the table.
    fn processes(&self, worker: &OrdoProcess) -> Vec<(String, Vec<Counted>)> {
        let me = std::process::id();
        let mut rows = Vec::new();
        let Some(services) = &self.services else {
            // A platform started elsewhere: every process of the machine by its name.
            let by_name = |comm: &str| -> Vec<Counted> {
                processes_named(comm)
                    .into_iter()
                    .filter(|&pid| pid != me && pid != worker.pid())
                    .map(Counted::Own)
                    .collect()
            };
            rows.push(("ordo (all other ordo*)".to_owned(), by_name("ordo")));
            rows.push((
                "ordo serve worker".to_owned(),
                vec![Counted::Own(worker.pid())],
            ));
            rows.push(("client (this process)".to_owned(), vec![Counted::Own(me)]));
            // Live processes only: backends that exit during the run are not counted.
            rows.push(("PostgreSQL (all postgres)".to_owned(), by_name("postgres")));
            rows.push((
                "Redis (all redis-server)".to_owned(),
                by_name("redis-server"),
            ));
            rows.push(("broker (all nisshi)".to_owned(), by_name("nisshi")));
            return rows;
        };
        if let Some(platform) = &self.platform {
            rows.push((
                "ordo dev --no-worker".to_owned(),
                vec![Counted::Own(platform.pid())],
            ));
        }
        rows.push((
            "ordo serve worker".to_owned(),
            vec![Counted::Own(worker.pid())],
        ));
        rows.push(("client (this process)".to_owned(), vec![Counted::Own(me)]));
        let postgres = match services.cluster.postmaster_pid() {
            // The postmaster with the children it reaped, and every live child.
            Ok(postmaster) => std::iter::once(Counted::WithReaped(postmaster))
                .chain(children(postmaster).into_iter().map(Counted::Own))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "PostgreSQL's CPU time not counted");
                Vec::new()
            }
        };
        rows.push(("PostgreSQL (postmaster + backends)".to_owned(), postgres));
        rows.push((
            "Redis".to_owned(),
            services.redis.pid().map(Counted::Own).into_iter().collect(),
        ));
        rows.push((
            "broker (nisshi)".to_owned(),
            services
                .broker
                .pid()
                .ok()
                .map(Counted::Own)
                .into_iter()
                .collect(),
        ));
        rows
    }
}

/// Which CPU time of a process counts.
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// Its own utime + stime.
    Own(u32),
    /// Also the cutime + cstime of the children it reaped (PostgreSQL's exited backends).
    WithReaped(u32),
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds of each row, keyed by pid so a process present at only one end shows.
type CpuSnapshot = Vec<(String, BTreeMap<u32, f64>)>;

fn cpu_seconds(rows: &[(String, Vec<Counted>)]) -> CpuSnapshot {
    let ticks = clock_ticks();
    rows.iter()
        .map(|(label, processes)| {
            let per_pid = processes
                .iter()
                .filter_map(|&counted| {
                    let (pid, reaped) = match counted {
                        Counted::Own(pid) => (pid, false),
                        Counted::WithReaped(pid) => (pid, true),
                    };
                    let f = stat_fields(pid)?;
                    // utime, stime, cutime, cstime are fields 14–17.
                    let mut t = f.get(11)? + f.get(12)?;
                    if reaped {
                        t += f.get(13)? + f.get(14)?;
                    }
                    Some((pid, t as f64 / ticks))
                })
                .collect();
            (label.clone(), per_pid)
        })
        .collect()
}

/// Live children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1).copied()) == Some(parent as u64))
        .collect()
}

/// Processes whose command name (`/proc/<pid>/comm`) starts with `prefix` (a copied
/// `ordo-…` binary is still Ordo).
fn processes_named(prefix: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .collect()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn print_cpu(before: &CpuSnapshot, after: &CpuSnapshot, wall: Duration, jobs: usize) {
    println!(
        "CPU seconds during the measured run ({:.2} s from the first enqueue until every job \
         completed; utime + stime from /proc):",
        wall.as_secs_f64()
    );
    println!(
        "  {:<36} {:>6} {:>9} {:>16} {:>11}",
        "process", "procs", "CPU s", "CPU s/1000 jobs", "% of 1 core"
    );
    let mut total = 0.0;
    for ((label, start), (_, end)) in before.iter().zip(after) {
        // A process that started during the run counts from zero; one that ended is lost
        // (PostgreSQL's reaped backends are in the postmaster's count).
        // `+ 0.0`: an empty sum is -0.0.
        let seconds: f64 = end
            .iter()
            .map(|(pid, &t)| t - start.get(pid).copied().unwrap_or(0.0))
            .sum::<f64>()
            + 0.0;
        total += seconds;
        let pids = end.len();
        println!(
            "  {label:<36} {pids:>6} {seconds:>9.2} {:>16.3} {:>10.0}%",
            seconds / jobs as f64 * 1_000.0,
            seconds / wall.as_secs_f64() * 100.0,
        );
    }
    println!(
        "  {:<36} {:>6} {total:>9.2} {:>16.3} {:>10.0}%",
        "total",
        "",
        total / jobs as f64 * 1_000.0,
        total / wall.as_secs_f64() * 100.0,
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn last_position(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until `expected` jobs have a JobCompleted event after `after_position`.
async fn wait_completed(
    pool: &PgPool,
    after_position: i64,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let completed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE position > $1 AND event_type = 'JobCompleted'",
        )
        .bind(after_position)
        .fetch_one(pool)
        .await?;
        if completed as usize >= expected {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "only {completed} of {expected} jobs completed within {} s after the last submit; \
                 see the logs of the platform and the worker",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

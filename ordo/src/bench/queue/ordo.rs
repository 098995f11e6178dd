//! Ordo in `ordo bench queue`: the platform runs as `ordo dev --no-worker --no-clickhouse`
//! (the job side, without the ClickHouse sinks) in a process of its own, on a private PostgreSQL, Redis and broker ([`Services`]); one `ordo serve worker`
//! process with `--slots` slots runs the jobs; this process is the client: `--clients`
//! tasks, each submitting one `noop` job after another (`POST /api/v1/jobs` over keep-alive
//! HTTP). With `--url` the platform is one already running (`ordo dev --no-worker`, its event
//! store at `--database-url`) and only the worker is started here.
//!
//! Enqueue → complete latency comes from the event store: the `occurred_at` of each job's
//! JobSubmitted, JobStarted and JobCompleted events.

use super::{Report, POLL, READY_TIMEOUT, SUBMIT_TIMEOUT, WARMUP_JOBS, WARMUP_TIMEOUT};
use crate::bench::cpu::{self, Counted, Rows, Window};
use crate::bench::lifecycle::Lifecycle;
use crate::bench::stop;
use crate::bench::{measure, submit_job, QUEUE};
use crate::cli::{GlobalArgs, QueueBenchArgs};
use anyhow::{bail, Context};
use ordo::instances::postgres::Durability;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo::instances::{free_port, Services};
use ordo_common::db::{self, DbConfig};
use sqlx::PgPool;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOB_TYPE: &str = "noop";

pub(super) async fn run(
    global: &GlobalArgs,
    args: &QueueBenchArgs,
    dir: &Path,
) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("find this executable")?;
    let mut stack = match &args.url {
        Some(url) => Stack::external(url, &global.database_url),
        None => Stack::private(global, &binary, dir, args.durability()).await?,
    };
    let worker = stack.start_worker(&binary, dir, args.slots).await?;
    println!(
        "ordo bench queue: {} noop jobs, {} client(s) each submitting one after another over \
         keep-alive HTTP, 1 worker process × {} slots; platform: {}; logs in {}",
        args.jobs,
        args.clients,
        args.slots,
        stack.describe(args.durability()),
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
    let window = Window::open(&stack.processes(&worker));
    let run = submit.clone();
    let submits = measure(args.jobs, args.clients, move |i| run(i)).await?;
    wait_completed(
        &pool,
        after_position,
        args.jobs,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    let usage = window.close(&stack.processes(&worker));
    let lifecycle = Lifecycle::query(&pool, after_position).await?;
    pool.close().await;

    Report {
        jobs: args.jobs,
        enqueue: &submits,
        enqueue_label: "enqueue (client: send → 201)",
        lifecycle: &lifecycle,
        latency_label: "enqueue → complete (event store)",
        start_events: "JobStarted events",
        usage: &usage,
    }
    .print();

    tokio::task::block_in_place(|| {
        stop(worker, "worker");
        if let Some(platform) = stack.platform.take() {
            stop(platform, "platform");
        }
    });
    Ok(())
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

    /// A private PostgreSQL, Redis and broker, and `ordo dev --no-worker --no-clickhouse` on them.
    async fn private(
        global: &GlobalArgs,
        binary: &Path,
        dir: &Path,
        durability: Durability,
    ) -> anyhow::Result<Self> {
        let services = tokio::task::block_in_place(|| Services::start_in(dir, durability))?;
        let database_url = services.cluster.url("ordo");
        let port = free_port()?;
        let api_url = format!("http://127.0.0.1:{port}");
        let spec = ProcessSpec::new(binary, &["dev", "--no-worker", "--no-clickhouse"])
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

    fn describe(&self, durability: Durability) -> String {
        match self.platform {
            Some(_) => format!(
                "`ordo dev --no-worker --no-clickhouse` on a private PostgreSQL ({}), Redis and broker",
                durability.describe()
            ),
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
    fn processes(&self, worker: &OrdoProcess) -> Rows {
        let me = std::process::id();
        let mut rows = Vec::new();
        let Some(services) = &self.services else {
            // A platform started elsewhere: every process of the machine by its name.
            let by_name = |comm: &str| -> Vec<Counted> {
                cpu::processes_named(comm)
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
        rows.push(cpu::postgres_row(&services.cluster));
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

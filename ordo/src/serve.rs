//! Long-running roles: the command API, the query API, the log ingest, the outbox relay, the
//! projector, the worker, the lease reaper, and `dev`, which runs them all in one process with both APIs on
//! one port. Every process
//! serves `/metrics`: the APIs on their own port, other roles on `--metrics-addr`.

use crate::cli::{
    GlobalArgs, IngestArgs, ProjectorArgs, ProjectorName, QueryArgs, RelayArgs, WorkerArgs,
};
use anyhow::Context;
use axum::routing::get;
use axum::Router;
use ordo_command_api::reaper::{self, ReaperConfig};
use ordo_command_api::{http::api_routes, router, AppState, CommandMetrics, JobCommandBus};
use ordo_common::db;
use ordo_common::health::Readiness;
use ordo_common::http::{finish, render_metrics, HttpMetrics};
use ordo_common::logs::LogMetrics;
use ordo_common::logs::LogSink;
use ordo_common::Problem;
use ordo_domain::JobServices;
use ordo_ingest::{IngestConfig, IngestService};
use ordo_outbox_relay::{RelayConfig, RelayMetrics};
use ordo_projectors::rebuild::{self, RebuildConfig};
use ordo_projectors::replay::JobRepair;
use ordo_projectors::sinks::clickhouse;
use ordo_projectors::{LogSinkMetrics, ProjectorConfig, ProjectorMetricFamilies, RebuildMetrics};
use ordo_query_api::logs::LogSearchConfig;
use ordo_query_api::{QueryConfig, QueryState};
use prometheus::Registry;
use sqlx::PgPool;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Applies the PostgreSQL migrations, then ClickHouse's (`ordo migrate`, `ordo dev`).
pub async fn migrate(args: &GlobalArgs) -> anyhow::Result<()> {
    let clickhouse = args.clickhouse_config()?;
    migrate_postgres(args).await?;
    let report = ordo_clickhouse_store::migrate(&clickhouse)
        .await
        .context("ClickHouse migrations failed (is ClickHouse up? `make services` starts it)")?;
    tracing::info!(
        database = %clickhouse.database,
        applied = ?report.applied,
        retention_changed = ?report.retention_changed,
        "ClickHouse migrations applied"
    );
    Ok(())
}

/// Creates the database if needed and applies the PostgreSQL migrations.
pub async fn migrate_postgres(args: &GlobalArgs) -> anyhow::Result<()> {
    db::ensure_database(&args.database_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", args.database_url))?;
    let pool = db::connect(&args.db_config())?;
    db::migrate(&pool).await.context("migrations failed")?;
    tracing::info!("migrations applied");
    Ok(())
}

/// What `ordo dev` runs beside the API: each role's settings, `None` for a role left out.
pub struct DevRoles<'a> {
    pub relay: Option<&'a RelayArgs>,
    pub projector: &'a ProjectorArgs,
    pub query: &'a QueryArgs,
    pub worker: Option<&'a WorkerArgs>,
    pub ingest: &'a IngestArgs,
    /// ClickHouse's migrations and sinks (log lines, job history).
    pub clickhouse: bool,
}

pub async fn dev(args: &GlobalArgs, roles: DevRoles<'_>) -> anyhow::Result<()> {
    let DevRoles {
        relay: relay_args,
        projector: projector_args,
        query: query_args,
        worker: worker_args,
        ingest: ingest_args,
        clickhouse,
    } = roles;
    if clickhouse {
        migrate(args).await?;
    } else {
        migrate_postgres(args).await?;
    }
    let shutdown = shutdown_token();
    let mut platform = Platform::start(
        args,
        relay_args.map(|r| r.config(args)).transpose()?,
        projector_args.config_of(args, ProjectorName::RedisViews, true)?,
        query_args.config(args)?,
        ingest_args.config(args)?,
        &shutdown,
    )
    .await?;
    // Beside the platform's redis-views: the log lines and the job history into ClickHouse.
    let sinks = if clickhouse {
        &[
            ProjectorName::ClickhouseLogs,
            ProjectorName::ClickhouseHistory,
        ][..]
    } else {
        &[]
    };
    for &name in sinks {
        let config = projector_args.config_of(args, name, false)?;
        let sink = spawn_clickhouse_sink(args, name, config, &platform.roles, &shutdown)?;
        platform.tasks.push(sink);
    }
    // Bound before the worker starts, so that its first claim finds the API listening.
    let listener = bind(args.http_addr).await?;
    if let Some(worker_args) = worker_args {
        // It claims from this process's own API, over HTTP like any other worker.
        let client = worker_args.client(&format!("http://{}", args.http_addr))?;
        let worker = spawn_worker(worker_args, client, &platform.registry, &shutdown)?;
        platform.tasks.push(worker);
    }
    let served = serve_on(listener, platform.router.clone(), shutdown.clone()).await;
    shutdown.cancel();
    platform.stopped().await?;
    served
}

/// Every role in this process: the command and query APIs and the log ingest on one router
/// (one set of fallbacks and HTTP metrics over all), the relay (unless Debezium does its job), the
/// projector and the lease reaper as tasks, all metrics in one registry. `ordo dev` serves it; the read-back
/// benchmark runs it on a scratch database.
pub struct Platform {
    pub router: Router,
    pub registry: Registry,
    /// What more roles of the process register with: metrics and readiness.
    roles: Roles,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// Where a role of a process reports: the process's registry, the projector metric
/// families registered in it once, and the readiness `/readyz` answers from.
#[derive(Clone)]
struct Roles {
    registry: Registry,
    projectors: ProjectorMetricFamilies,
    readiness: Readiness,
}

impl Roles {
    fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        Ok(Self {
            projectors: ProjectorMetricFamilies::register(&registry)?,
            registry,
            readiness: Readiness::default(),
        })
    }
}

impl Platform {
    pub async fn start(
        args: &GlobalArgs,
        relay: Option<RelayConfig>,
        projector: ProjectorConfig,
        query: QueryConfig,
        ingest: IngestConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let roles = Roles::new()?;
        let registry = roles.registry.clone();
        let readiness = roles.readiness.clone();
        let mut tasks = Vec::new();
        if let Some(relay) = relay {
            tasks.push(spawn_relay(relay, &registry, shutdown)?);
        }
        let pool = db::connect(&args.db_config())?;
        let projector = spawn_redis_views(args, projector, &pool, &roles, shutdown);
        tasks.push(projector.await?);
        let redis = connect_redis(args).await?;
        let sink = log_sink(args).await?;
        let state = AppState::with_registry(
            pool,
            args.api_config()?,
            JobServices::system(),
            registry.clone(),
        )
        .with_dispatch(
            redis.clone(),
            redis_client(args)?,
            &args.redis_prefix,
            shutdown.clone(),
        )
        .with_logs(sink.clone())
        .with_readiness(readiness);
        let state = write_through(state, args, &redis);
        // The worker endpoint's and the ingest role's lines count into the same metrics.
        let ingest = IngestService::new(
            sink,
            redis.clone(),
            &args.redis_prefix,
            state.metrics.logs().clone(),
            ingest,
        );
        tasks.push(spawn_reaper(args, state.bus.clone(), redis, shutdown));
        let http_metrics = state.metrics.http().clone();
        let query = query_state(args, query).await?;
        let router = finish(
            api_routes(state)
                .merge(ordo_query_api::routes(query))
                .merge(ordo_ingest::routes(ingest)),
            http_metrics,
        );
        Ok(Self {
            router,
            registry,
            roles,
            tasks,
        })
    }

    /// Waits for the background roles after the shutdown token was cancelled.
    pub async fn stopped(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

pub async fn worker(args: &WorkerArgs, metrics_addr: SocketAddr) -> anyhow::Result<()> {
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let worker = spawn_worker(args, args.client(&args.api_url)?, &registry, &shutdown)?;
    let (served, worked) = tokio::join!(
        serve_metrics(
            metrics_addr,
            registry,
            Readiness::default(),
            shutdown.clone()
        ),
        worker
    );
    worked??;
    served
}

pub async fn reaper(args: &GlobalArgs, metrics_addr: SocketAddr) -> anyhow::Result<()> {
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let pool = db::connect(&args.db_config())?;
    // Only the bus: this role serves no API, so it exports no HTTP metrics.
    let bus = std::sync::Arc::new(JobCommandBus::new(
        pool,
        JobServices::system(),
        CommandMetrics::register(&registry)?,
    ));
    let reaper = spawn_reaper(args, bus, connect_redis(args).await?, &shutdown);
    let (served, reaped) = tokio::join!(
        serve_metrics(
            metrics_addr,
            registry,
            Readiness::default(),
            shutdown.clone()
        ),
        reaper
    );
    reaped??;
    served
}

pub async fn api(args: &GlobalArgs) -> anyhow::Result<()> {
    let pool = db::connect(&args.db_config())?;
    let shutdown = shutdown_token();
    let redis = connect_redis(args).await?;
    let state = AppState::new(pool, args.api_config()?, JobServices::system())
        .with_dispatch(
            redis.clone(),
            redis_client(args)?,
            &args.redis_prefix,
            shutdown.clone(),
        )
        .with_logs(log_sink(args).await?);
    let state = write_through(state, args, &redis);
    serve_http(args.http_addr, router(state), shutdown).await
}

/// The log aggregator alone: its routes with `/healthz`, `/readyz` and `/metrics` on
/// `ORDO_HTTP_ADDR`.
pub async fn ingest(args: &GlobalArgs, ingest_args: &IngestArgs) -> anyhow::Result<()> {
    let registry = Registry::new();
    let service = IngestService::new(
        log_sink(args).await?,
        connect_redis(args).await?,
        &args.redis_prefix,
        LogMetrics::register(&registry)?,
        ingest_args.config(args)?,
    );
    let health = health_routes(registry.clone(), Readiness::default());
    let app = finish(
        ordo_ingest::routes(service).merge(health),
        HttpMetrics::register(&registry)?,
    );
    serve_http(args.http_addr, app, shutdown_token()).await
}

pub async fn query(args: &GlobalArgs, query_args: &QueryArgs) -> anyhow::Result<()> {
    let state = query_state(args, query_args.config(args)?).await?;
    let app = ordo_query_api::app(state, Registry::new())?;
    serve_http(args.http_addr, app, shutdown_token()).await
}

pub async fn relay(
    args: &GlobalArgs,
    relay_args: &RelayArgs,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let relay = spawn_relay(relay_args.config(args)?, &registry, &shutdown)?;
    let (served, relayed) = tokio::join!(
        serve_metrics(
            metrics_addr,
            registry,
            Readiness::default(),
            shutdown.clone()
        ),
        relay
    );
    relayed??;
    served
}

pub async fn projector(
    args: &GlobalArgs,
    projector_args: &ProjectorArgs,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    let roles = Roles::new()?;
    let shutdown = shutdown_token();
    let config = projector_args.config(args)?;
    let projector = match projector_args.projector {
        ProjectorName::RedisViews => {
            let pool = db::connect(&args.db_config())?;
            spawn_redis_views(args, config, &pool, &roles, &shutdown).await?
        }
        name => spawn_clickhouse_sink(args, name, config, &roles, &shutdown)?,
    };
    let (served, projected) = tokio::join!(
        serve_metrics(
            metrics_addr,
            roles.registry,
            roles.readiness,
            shutdown.clone()
        ),
        projector
    );
    projected??;
    served
}

/// The API state, writing committed events through to the read model unless configured not
/// to (`ORDO_WRITE_THROUGH=false`).
fn write_through(
    state: AppState,
    args: &GlobalArgs,
    redis: &redis::aio::ConnectionManager,
) -> AppState {
    if args.write_through {
        state.with_write_through(redis.clone(), &args.redis_prefix)
    } else {
        state
    }
}

async fn serve_http(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(bind(addr).await?, app, shutdown).await
}

/// Serves `app` on `listener` until `shutdown`, letting in-flight requests finish.
async fn serve_on(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// `/metrics`, `/healthz` and `/readyz` (503 naming each role that is not ready, e.g. a
/// stalled projector) of a role without an API of its own.
async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_http(addr, health_routes(registry, readiness), shutdown).await
}

/// `/healthz`, `/readyz` (503 naming each role of `readiness` that is not ready) and
/// `/metrics` (all of `registry`).
fn health_routes(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                match readiness.check() {
                    Ok(()) => Ok(axum::Json(
                        serde_json::json!({"status": "ready", "roles": readiness.report()}),
                    )),
                    Err(reason) => Err(Problem::unavailable(reason)),
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move { render_metrics(&registry) }),
        )
}

async fn query_state(args: &GlobalArgs, config: QueryConfig) -> anyhow::Result<QueryState> {
    // Its own connection: reads must not queue behind the projector's large pipelines.
    let logs = LogSearchConfig {
        service_retire_days: args.service_retire_days,
        ..LogSearchConfig::new(args.clickhouse_config()?)
    };
    Ok(QueryState::new(connect_redis(args).await?, config).with_logs(logs))
}

async fn log_sink(args: &GlobalArgs) -> anyhow::Result<LogSink> {
    LogSink::connect(
        &args.kafka_brokers,
        &args.logs_topic,
        args.topic_partitions()?,
    )
    .await
    .with_context(|| {
        format!(
            "cannot reach Kafka at {} for the job logs",
            args.kafka_brokers
        )
    })
}

fn redis_client(args: &GlobalArgs) -> anyhow::Result<redis::Client> {
    redis::Client::open(args.redis_url.as_str())
        .with_context(|| format!("invalid Redis URL {}", args.redis_url))
}

async fn connect_redis(args: &GlobalArgs) -> anyhow::Result<redis::aio::ConnectionManager> {
    ordo_read_model::connect(&args.redis_url)
        .await
        .with_context(|| format!("cannot reach Redis at {}", args.redis_url))
}

fn spawn_relay(
    config: RelayConfig,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    // The relay's own small pool: slot management, clean-up and lag polling.
    let pool = db::connect(&db::DbConfig {
        max_connections: 4,
        ..db::DbConfig::new(&config.database_url)
    })?;
    let metrics = RelayMetrics::register(registry)?;
    let relay = ordo_outbox_relay::run(config, pool, metrics, shutdown.clone());
    Ok(spawn_role(relay))
}

fn spawn_reaper(
    args: &GlobalArgs,
    bus: std::sync::Arc<JobCommandBus>,
    redis: redis::aio::ConnectionManager,
    shutdown: &CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let reaper = reaper::run(
        bus,
        redis,
        ReaperConfig::new(&args.redis_prefix),
        shutdown.clone(),
    );
    spawn_role(reaper)
}

fn spawn_worker(
    args: &WorkerArgs,
    client: ordo_worker::ApiClient,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let metrics = ordo_worker::WorkerMetrics::register(registry)?;
    let worker = ordo_worker::runtime::run(
        args.config()?,
        client,
        std::sync::Arc::new(ordo_worker::Handlers::builtin()),
        Some(metrics),
        shutdown.clone(),
    );
    Ok(spawn_role(worker))
}

/// A role that runs until shutdown and handles its own errors, as a task joined like the
/// ones that can fail.
fn spawn_role(
    role: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        role.await;
        Ok(())
    })
}

/// The redis-views projector, repairing gaps from the event store of `pool` (unless
/// configured not to), and beside it the watch that rebuilds the read model from the same
/// store when Redis lost it (see `ordo_projectors::rebuild`).
async fn spawn_redis_views(
    args: &GlobalArgs,
    config: ProjectorConfig,
    pool: &PgPool,
    roles: &Roles,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let (registry, readiness) = (&roles.registry, &roles.readiness);
    let health = readiness.role(&format!("projector {}", config.name));
    let redis = connect_redis(args).await?;
    let metrics = roles.projectors.projector(&config.name);
    let repair = match config.gap_repairs_per_second {
        0 => None,
        per_second => Some(JobRepair::new(
            pool.clone(),
            redis.clone(),
            &config.prefix,
            per_second,
        )),
    };
    let rebuild = rebuild::watch(
        pool.clone(),
        redis.clone(),
        RebuildConfig::new(&config.prefix),
        RebuildMetrics::register(registry)?,
        readiness.role("read model"),
        shutdown.clone(),
    );
    let projector =
        ordo_projectors::run_redis_views(config, redis, repair, metrics, health, shutdown.clone());
    Ok(tokio::spawn(
        async move { tokio::join!(projector, rebuild).0 },
    ))
}

/// A ClickHouse projector (`name`: clickhouse-logs or clickhouse-history) into the tables of
/// `ORDO_CLICKHOUSE_*`.
fn spawn_clickhouse_sink(
    args: &GlobalArgs,
    name: ProjectorName,
    config: ProjectorConfig,
    roles: &Roles,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let clickhouse = args.clickhouse_config()?;
    let health = roles.readiness.role(&format!("projector {}", config.name));
    let metrics = roles.projectors.projector(&config.name);
    let shutdown = shutdown.clone();
    Ok(match name {
        ProjectorName::ClickhouseLogs => {
            let log_metrics = LogSinkMetrics::register(&roles.registry)?;
            tokio::spawn(async move {
                clickhouse::logs::run(config, &clickhouse, metrics, log_metrics, health, shutdown)
                    .await
            })
        }
        ProjectorName::ClickhouseHistory => tokio::spawn(async move {
            clickhouse::history::run(config, &clickhouse, metrics, health, shutdown).await
        }),
        ProjectorName::RedisViews => {
            anyhow::bail!("redis-views is not a ClickHouse projector")
        }
    })
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A token cancelled by Ctrl-C or SIGTERM, which every task of the process watches.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before the process exits.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

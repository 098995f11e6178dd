//! Command-line interface. Every setting has an `ORDO_*` environment variable; flags win.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ordo_clickhouse_store::ClickHouseConfig;
use ordo_command_api::ApiConfig;
use ordo_common::db::DbConfig;
use ordo_domain::RetryPolicy;
use ordo_ingest::line::LineRules;
use ordo_ingest::{IngestConfig, TenantLimits};
use ordo_outbox_relay::RelayConfig;
use ordo_projectors::ProjectorConfig;
use ordo_protocol::worker::{LEASE_MS, MAX_CLAIM_WAIT_MS};
use ordo_query_api::QueryConfig;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "ordo", version, about = "Event-sourced job orchestration")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL event store.
    #[arg(
        long,
        global = true,
        env = "ORDO_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ordo"
    )]
    pub database_url: String,
    /// Connections in the PostgreSQL pool of each process.
    #[arg(
        long,
        global = true,
        env = "ORDO_DATABASE_POOL_SIZE",
        default_value_t = 32
    )]
    pub database_pool_size: u32,
    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(
        long,
        global = true,
        env = "ORDO_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,
    /// Redis of the read model.
    #[arg(
        long,
        global = true,
        env = "ORDO_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// HTTP interface of the ClickHouse that holds the log and job history read models.
    #[arg(long, global = true, env = "ORDO_CLICKHOUSE_URL", default_value = ordo_clickhouse_store::DEFAULT_URL)]
    pub clickhouse_url: String,
    /// ClickHouse user.
    #[arg(
        long,
        global = true,
        env = "ORDO_CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub clickhouse_user: String,
    /// ClickHouse password (none by default).
    #[arg(
        long,
        global = true,
        env = "ORDO_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    pub clickhouse_password: Option<String>,
    /// ClickHouse database of Ordo's tables; `ordo migrate` creates it.
    #[arg(long, global = true, env = "ORDO_CLICKHOUSE_DATABASE", default_value = ordo_clickhouse_store::DEFAULT_DATABASE)]
    pub clickhouse_database: String,
    /// Bound of every ClickHouse call, client and server side (`max_execution_time`).
    #[arg(
        long,
        global = true,
        env = "ORDO_CLICKHOUSE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub clickhouse_timeout_ms: u64,
    /// Days log lines are kept in ClickHouse; `ordo migrate` (and `ordo dev`) apply a change.
    #[arg(long, global = true, env = "ORDO_LOG_RETENTION_DAYS", default_value_t = ordo_clickhouse_store::DEFAULT_LOG_RETENTION_DAYS)]
    pub log_retention_days: u32,
    /// Days of silence after which a service leaves the registry's listings (`ordo services`,
    /// `GET /api/v1/services`).
    #[arg(long, global = true, env = "ORDO_SERVICE_RETIRE_DAYS", default_value_t = ordo_clickhouse_store::DEFAULT_SERVICE_RETIRE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub service_retire_days: u32,
    /// Key prefix of the read model in Redis; `{prefix}:active` names the live namespace.
    #[arg(long, global = true, env = "ORDO_REDIS_PREFIX", default_value = ordo_read_model::keys::DEFAULT_PREFIX)]
    pub redis_prefix: String,
    /// The API writes the events of each command it commits into the read model itself, so a
    /// job is claimable within a Redis round trip of its commit; the projector remains the
    /// source of the model (`false`: dispatch waits for the projector).
    #[arg(
        long,
        global = true,
        env = "ORDO_WRITE_THROUGH",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub write_through: bool,
    /// Partitions of the job topic, when the relay or a projector has to create it.
    #[arg(
        long,
        global = true,
        env = "ORDO_KAFKA_TOPIC_PARTITIONS",
        default_value_t = 6
    )]
    pub topic_partitions: i32,
    /// Topic of the log lines the API takes from workers and the ingest role from services.
    #[arg(long, global = true, env = "ORDO_LOGS_TOPIC", default_value = ordo_common::logs::DEFAULT_TOPIC)]
    pub logs_topic: String,
    /// Address of the HTTP API.
    #[arg(
        long,
        global = true,
        env = "ORDO_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, global = true, env = "ORDO_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Largest accepted body of a bulk submit (`POST /api/v1/jobs/batch`, up to 1,000 jobs).
    #[arg(long, global = true, env = "ORDO_MAX_BATCH_BODY_BYTES", default_value_t = ordo_command_api::DEFAULT_BATCH_BODY_LIMIT_BYTES)]
    pub max_batch_body_bytes: usize,
    /// Default attempts per job when a submit does not say.
    #[arg(
        long,
        global = true,
        env = "ORDO_RETRY_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub retry_max_attempts: u32,
    /// Default backoff before the first retry, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "ORDO_RETRY_INITIAL_DELAY_MS",
        default_value_t = 1_000
    )]
    pub retry_initial_delay_ms: u64,
    /// Default growth factor of the backoff per attempt.
    #[arg(
        long,
        global = true,
        env = "ORDO_RETRY_MULTIPLIER",
        default_value_t = 2.0
    )]
    pub retry_multiplier: f64,
    /// Default cap of the backoff, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "ORDO_RETRY_MAX_DELAY_MS",
        default_value_t = 300_000
    )]
    pub retry_max_delay_ms: u64,
    /// Log output: one JSON object per line, or human-readable text.
    #[arg(long, global = true, env = "ORDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    pub fn topic_partitions(&self) -> anyhow::Result<i32> {
        anyhow::ensure!(
            self.topic_partitions >= 1,
            "--topic-partitions must be at least 1"
        );
        Ok(self.topic_partitions)
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            max_connections: self.database_pool_size,
            ..DbConfig::new(&self.database_url)
        }
    }

    pub fn clickhouse_config(&self) -> anyhow::Result<ClickHouseConfig> {
        let config = ClickHouseConfig {
            url: self.clickhouse_url.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
            database: self.clickhouse_database.clone(),
            timeout: Duration::from_millis(self.clickhouse_timeout_ms),
            log_retention_days: self.log_retention_days,
        };
        config.validate()?;
        Ok(config)
    }

    /// The API settings, with the retry defaults checked like a submitted policy.
    pub fn api_config(&self) -> anyhow::Result<ApiConfig> {
        let retry_defaults = RetryPolicy {
            max_attempts: self.retry_max_attempts,
            initial_delay_ms: self.retry_initial_delay_ms,
            multiplier: self.retry_multiplier,
            max_delay_ms: self.retry_max_delay_ms,
        }
        .validate()
        .map_err(|e| {
            anyhow::anyhow!("invalid retry default ({e}); fix the ORDO_RETRY_* setting")
        })?;
        Ok(ApiConfig {
            body_limit_bytes: self.max_body_bytes,
            batch_body_limit_bytes: self.max_batch_body_bytes,
            retry_defaults,
        })
    }
}

/// The log-aggregator role's settings (`ordo serve ingest`, and `ordo dev` on its port).
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Largest log request body, before and after decompression; larger ones get 413.
    #[arg(long, env = "ORDO_LOG_MAX_BODY_BYTES", default_value_t = IngestConfig::DEFAULT_MAX_BODY_BYTES)]
    pub log_max_body_bytes: usize,
    /// Most log lines in one request; more get 413.
    #[arg(long, env = "ORDO_LOG_MAX_LINES", default_value_t = IngestConfig::DEFAULT_MAX_LINES)]
    pub log_max_lines: usize,
    /// Longer messages are cut to this many bytes (attribute `ordo.truncated`).
    #[arg(long, env = "ORDO_LOG_MAX_MESSAGE_BYTES", default_value_t = LineRules::DEFAULT_MAX_MESSAGE_BYTES)]
    pub log_max_message_bytes: usize,
    /// Log requests in progress at once; more answer 503 with Retry-After.
    #[arg(long, env = "ORDO_INGEST_MAX_IN_FLIGHT", default_value_t = IngestConfig::DEFAULT_MAX_IN_FLIGHT)]
    pub ingest_max_in_flight: usize,
    /// Log lines per second each tenant may send, over all ingest instances (0: no limit).
    #[arg(long, env = "ORDO_INGEST_TENANT_LINES_PER_SEC", default_value_t = TenantLimits::DEFAULT.lines_per_sec)]
    pub ingest_tenant_lines_per_sec: u64,
    /// Lines a tenant may send at once above its rate.
    #[arg(long, env = "ORDO_INGEST_TENANT_LINES_BURST", default_value_t = TenantLimits::DEFAULT.lines_burst)]
    pub ingest_tenant_lines_burst: u64,
    /// Request bytes (decompressed) per second each tenant may send (0: no limit).
    #[arg(long, env = "ORDO_INGEST_TENANT_BYTES_PER_SEC", default_value_t = TenantLimits::DEFAULT.bytes_per_sec)]
    pub ingest_tenant_bytes_per_sec: u64,
    /// Bytes a tenant may send at once above its rate.
    #[arg(long, env = "ORDO_INGEST_TENANT_BYTES_BURST", default_value_t = TenantLimits::DEFAULT.bytes_burst)]
    pub ingest_tenant_bytes_burst: u64,
}

impl IngestArgs {
    /// The settings; lines older than the logs' retention (`--log-retention-days`) are
    /// stamped with their arrival time, their own kept in the attribute `ordo.original_ts`.
    pub fn config(&self, global: &GlobalArgs) -> anyhow::Result<IngestConfig> {
        anyhow::ensure!(
            self.log_max_body_bytes >= 1024,
            "--log-max-body-bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.log_max_lines >= 1,
            "--log-max-lines must be at least 1"
        );
        anyhow::ensure!(
            global.log_retention_days >= 1,
            "--log-retention-days must be at least 1"
        );
        anyhow::ensure!(
            self.log_max_message_bytes >= 256,
            "--log-max-message-bytes must be at least 256"
        );
        anyhow::ensure!(
            self.ingest_max_in_flight >= 1,
            "--ingest-max-in-flight must be at least 1"
        );
        let defaults = LineRules::default();
        Ok(IngestConfig {
            max_body_bytes: self.log_max_body_bytes,
            max_lines: self.log_max_lines,
            max_in_flight: self.ingest_max_in_flight,
            rules: LineRules {
                retention: chrono::TimeDelta::days(global.log_retention_days.into()),
                max_message_bytes: self.log_max_message_bytes,
                ..defaults
            },
            limits: TenantLimits {
                lines_per_sec: self.ingest_tenant_lines_per_sec,
                lines_burst: self.ingest_tenant_lines_burst,
                bytes_per_sec: self.ingest_tenant_bytes_per_sec,
                bytes_burst: self.ingest_tenant_bytes_burst,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process against the local stack: migrate (PostgreSQL and
    /// ClickHouse), then serve the command and query APIs and the log ingest on one port,
    /// relay the outbox to Kafka, project it into Redis, reap expired leases and run a worker.
    Dev {
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        projector: Box<ProjectorArgs>,
        #[command(flatten)]
        query: QueryArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        // Boxed (and the projector's): the variant would otherwise outgrow the others by
        // far (clippy).
        #[command(flatten)]
        ingest: Box<IngestArgs>,
        /// Run no worker in this process (run `ordo serve worker` beside it instead).
        #[arg(long, env = "ORDO_DEV_NO_WORKER")]
        no_worker: bool,
        /// Leave the outbox to Debezium (`make setup-debezium`) instead of the built-in relay.
        #[arg(long, env = "ORDO_DEV_NO_RELAY")]
        no_relay: bool,
        /// Run the job side only: no ClickHouse migrations and no ClickHouse sinks (job
        /// history and log lines stay in Kafka). Benchmarks of the job side use it.
        #[arg(long, env = "ORDO_DEV_NO_CLICKHOUSE")]
        no_clickhouse: bool,
    },
    /// Run one role of the platform.
    #[command(subcommand)]
    Serve(ServeRole),
    /// Create the databases if needed and apply the migrations: PostgreSQL's, then
    /// ClickHouse's (and the log retention).
    Migrate,
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Work with jobs through a running command API.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Search log lines through a running query API (`GET /api/v1/logs`).
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Rebuild a read model from the event store: into a new namespace and switch to it (the
    /// default), repair some jobs in place (--job, --since), diff the live model against a
    /// replay (--verify; exit code 1 on any difference), or just read (--dry-run).
    /// `--projector clickhouse-history` rebuilds (or verifies) the ClickHouse job history.
    Replay(ReplayArgs),
    /// The services seen in the logs (ClickHouse's registry): first and last seen, lines,
    /// errors and ingestion delay over the last 24 hours; services silent for longer than
    /// --service-retire-days are retired.
    Services(ServicesArgs),
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only this tenant's services.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServeRole {
    /// The command API.
    Api,
    /// The query API over the Redis read model (`/api/v1/jobs`, `/queues`, `/stats`) and
    /// log search over ClickHouse (`/api/v1/logs`).
    Query {
        #[command(flatten)]
        query: QueryArgs,
    },
    /// The log aggregator: log lines from any service (Ordo's JSON API, OTLP/HTTP, the
    /// Elasticsearch bulk API, Loki's push API) to Kafka, on ORDO_HTTP_ADDR with `/metrics`.
    Ingest {
        #[command(flatten)]
        ingest: IngestArgs,
    },
    /// Stream the outbox to Kafka over logical replication (what Debezium's EventRouter does).
    Relay {
        #[command(flatten)]
        relay: RelayArgs,
        /// Where `/metrics` and `/healthz` of this process are served.
        #[arg(long, env = "ORDO_METRICS_ADDR", default_value = "127.0.0.1:9464")]
        metrics_addr: SocketAddr,
    },
    /// Build a read model from the job topic (one Kafka consumer group per projector name;
    /// run several processes with the same name to share the partitions).
    Projector {
        #[command(flatten)]
        projector: ProjectorArgs,
        /// Where `/metrics` and `/healthz` of this process are served.
        #[arg(long, env = "ORDO_METRICS_ADDR", default_value = "127.0.0.1:9465")]
        metrics_addr: SocketAddr,
    },
    /// Claim jobs from the command API and run them with the built-in handlers (`noop`,
    /// `sleep`, `fail`, `http`); run one per node, or several.
    Worker {
        #[command(flatten)]
        worker: WorkerArgs,
        /// Where `/metrics` and `/healthz` of this process are served.
        #[arg(long, env = "ORDO_METRICS_ADDR", default_value = "127.0.0.1:9466")]
        metrics_addr: SocketAddr,
    },
    /// The lease reaper alone: expired leases become `ExpireLease` commands (retry or dead
    /// letter). Any number may run; a Redis lock lets one sweep at a time.
    Reaper {
        /// Where `/metrics` and `/healthz` of this process are served.
        #[arg(long, env = "ORDO_METRICS_ADDR", default_value = "127.0.0.1:9467")]
        metrics_addr: SocketAddr,
    },
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The command API the worker claims from (`ordo dev` serves it on ORDO_HTTP_ADDR).
    #[arg(long, env = "ORDO_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// The tenant whose jobs this worker runs.
    #[arg(long, env = "ORDO_TENANT", default_value = ordo_protocol::tenant::DEFAULT_TENANT)]
    pub tenant: String,
    /// Names the worker in start events and job views; `{hostname}-{pid}` by default.
    #[arg(long, env = "ORDO_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Queues to claim from, in order of preference (comma-separated).
    #[arg(
        long,
        env = "ORDO_WORKER_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub queues: Vec<String>,
    /// Jobs run at once.
    #[arg(long, env = "ORDO_WORKER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Lease of each attempt; heartbeats renew it every third of it.
    #[arg(long, env = "ORDO_WORKER_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: u64,
    /// How long a claim waits in the server when no job is ready (long-poll).
    #[arg(long, env = "ORDO_WORKER_CLAIM_WAIT_MS", default_value_t = 5_000)]
    pub claim_wait_ms: u64,
    /// On SIGTERM: how long running jobs may take to finish before they are released.
    #[arg(long, env = "ORDO_WORKER_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Bound of every call to the API (a claim adds its wait).
    #[arg(long, env = "ORDO_WORKER_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

impl WorkerArgs {
    pub fn config(&self) -> anyhow::Result<ordo_worker::WorkerConfig> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.concurrency),
            "--concurrency must be 1 to 10000"
        );
        anyhow::ensure!(
            LEASE_MS.contains(&self.lease_ms),
            "--lease-ms must be {} to {} (the protocol's bounds)",
            LEASE_MS.start(),
            LEASE_MS.end()
        );
        anyhow::ensure!(
            self.claim_wait_ms <= MAX_CLAIM_WAIT_MS,
            "--claim-wait-ms must be at most {MAX_CLAIM_WAIT_MS} (the protocol's bound)"
        );
        anyhow::ensure!(!self.queues.is_empty(), "--queues must name a queue");
        let worker_id = self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(ordo_worker::WorkerConfig {
            worker_id,
            queues: self.queues.clone(),
            concurrency: self.concurrency,
            lease: Duration::from_millis(self.lease_ms),
            claim_wait: Duration::from_millis(self.claim_wait_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        })
    }

    /// A client of `api_url` (`--api-url`, or the process's own API in `ordo dev`).
    pub fn client(&self, api_url: &str) -> anyhow::Result<ordo_worker::ApiClient> {
        anyhow::ensure!(
            api_url.starts_with("http://") || api_url.starts_with("https://"),
            "--api-url must be an http(s) URL, got {api_url:?}"
        );
        Ok(ordo_worker::ApiClient::new(
            api_url,
            &self.tenant,
            Duration::from_millis(self.request_timeout_ms.max(1)),
        )?)
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// How long a read with `min_sequence` waits for the view when it names no `wait_ms`.
    #[arg(long, env = "ORDO_QUERY_DEFAULT_WAIT_MS", default_value_t = 2_000)]
    pub query_default_wait_ms: u64,
    /// The longest a read with `min_sequence` waits, whatever it asks.
    #[arg(long, env = "ORDO_QUERY_MAX_WAIT_MS", default_value_t = 10_000)]
    pub query_max_wait_ms: u64,
    /// Bound of each Redis call of a query; a slower Redis answers 503.
    #[arg(long, env = "ORDO_QUERY_REDIS_TIMEOUT_MS", default_value_t = 2_000)]
    pub query_redis_timeout_ms: u64,
}

impl QueryArgs {
    pub fn config(&self, global: &GlobalArgs) -> anyhow::Result<QueryConfig> {
        anyhow::ensure!(
            self.query_default_wait_ms <= self.query_max_wait_ms,
            "--query-default-wait-ms must not exceed --query-max-wait-ms"
        );
        anyhow::ensure!(
            self.query_redis_timeout_ms >= 1,
            "--query-redis-timeout-ms must be at least 1"
        );
        Ok(QueryConfig {
            prefix: global.redis_prefix.clone(),
            default_wait: Duration::from_millis(self.query_default_wait_ms),
            max_wait: Duration::from_millis(self.query_max_wait_ms),
            redis_timeout: Duration::from_millis(self.query_redis_timeout_ms),
        })
    }
}

/// The read models Ordo can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProjectorName {
    /// Job views, indexes, counters and dispatch queues in Redis.
    RedisViews,
    /// Log lines of `ordo.logs` in the ClickHouse `logs` table, exactly once.
    ClickhouseLogs,
    /// Every job event in the ClickHouse `job_events` table.
    ClickhouseHistory,
}

impl ProjectorName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RedisViews => "redis-views",
            Self::ClickhouseLogs => "clickhouse-logs",
            Self::ClickhouseHistory => "clickhouse-history",
        }
    }

    /// Rows per batch and the wait for more after a batch's first record, unless set: Redis
    /// takes what is ready (latency: claims wait on it), ClickHouse wants few large inserts
    /// (each makes parts that merges must fold).
    fn batching(self) -> (usize, Duration) {
        match self {
            Self::RedisViews => (2_000, Duration::ZERO),
            Self::ClickhouseLogs | Self::ClickhouseHistory => (
                ordo_projectors::sinks::clickhouse::DEFAULT_MAX_BATCH_ROWS,
                ordo_projectors::sinks::clickhouse::DEFAULT_MAX_WAIT,
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct ProjectorArgs {
    /// Which read model to build.
    #[arg(long = "name", env = "ORDO_PROJECTOR", value_enum, default_value_t = ProjectorName::RedisViews)]
    pub projector: ProjectorName,
    /// The topic it consumes: the job topic (`outbox.event.job`), or for clickhouse-logs the
    /// logs topic (ORDO_LOGS_TOPIC).
    #[arg(long, env = "ORDO_PROJECTOR_TOPIC")]
    pub projector_topic: Option<String>,
    /// Consumer group; `ordo-projector-{name}` by default.
    #[arg(long, env = "ORDO_PROJECTOR_GROUP")]
    pub projector_group: Option<String>,
    /// Where records the projector cannot apply go; `ordo.parked.{name}` by default.
    #[arg(long, env = "ORDO_PROJECTOR_PARKING_TOPIC")]
    pub parking_topic: Option<String>,
    /// Most rows written in one batch (a Redis pipeline, a ClickHouse insert): 2000 for
    /// redis-views, 50000 for the ClickHouse sinks.
    #[arg(long, env = "ORDO_PROJECTOR_MAX_BATCH")]
    pub projector_max_batch: Option<usize>,
    /// How long a batch waits for more records after its first: 0 for redis-views (it takes
    /// what is ready), 1000 for the ClickHouse sinks.
    #[arg(long, env = "ORDO_PROJECTOR_MAX_WAIT_MS")]
    pub projector_max_wait_ms: Option<u64>,
    /// Kafka session timeout of the consumer; a new member waits about half of it.
    #[arg(
        long,
        env = "ORDO_PROJECTOR_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub projector_session_timeout_ms: u64,
    /// Gaps repaired per second at most, each by rebuilding the job's view from the event
    /// store (`ordo replay --job`); 0 leaves gaps waiting for a manual repair.
    #[arg(
        long,
        env = "ORDO_PROJECTOR_GAP_REPAIRS_PER_SECOND",
        default_value_t = ordo_projectors::replay::DEFAULT_REPAIRS_PER_SECOND
    )]
    pub gap_repairs_per_second: u32,
    /// With records to read and the group's offsets standing still this long, the projector
    /// is stalled: `/readyz` answers 503 with the reason and the consumer is recreated.
    #[arg(
        long,
        env = "ORDO_PROJECTOR_STALL_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub projector_stall_timeout_ms: u64,
    /// Leave the consumer group on shutdown (LeaveGroup) instead of committing and going, to
    /// be evicted after the session timeout. Off by default: the local broker wedges a group
    /// whose leader leaves during a rebalance (see the README); on Apache Kafka leaving
    /// hands the partitions over at once.
    #[arg(long, env = "ORDO_PROJECTOR_LEAVE_GROUP_ON_STOP")]
    pub projector_leave_group_on_stop: bool,
}

impl ProjectorArgs {
    /// The settings of the projector `--name` names.
    pub fn config(&self, global: &GlobalArgs) -> anyhow::Result<ProjectorConfig> {
        self.config_of(global, self.projector, true)
    }

    /// The settings of projector `name`. The one the flags are for (`primary`) takes them as
    /// given; the others of the same process (`ordo dev` runs all three, redis-views being
    /// the primary) keep their own topic, batching and names, and an explicit group or
    /// parking topic gets `.{name}` appended, so that no two share one.
    pub fn config_of(
        &self,
        global: &GlobalArgs,
        name: ProjectorName,
        primary: bool,
    ) -> anyhow::Result<ProjectorConfig> {
        anyhow::ensure!(
            self.projector_session_timeout_ms >= 1_000,
            "--projector-session-timeout-ms must be at least 1000"
        );
        anyhow::ensure!(
            self.projector_stall_timeout_ms >= 1_000,
            "--projector-stall-timeout-ms must be at least 1000"
        );
        let defaults =
            ProjectorConfig::new(name.as_str(), &global.kafka_brokers, &global.redis_prefix);
        let own = |explicit: &Option<String>, default: String| match explicit {
            Some(value) if primary => value.clone(),
            Some(value) => format!("{value}.{}", name.as_str()),
            None => default,
        };
        let job_topic = self
            .projector_topic
            .clone()
            .unwrap_or_else(|| ordo_projectors::projector::DEFAULT_TOPIC.to_owned());
        let topic = match name {
            ProjectorName::ClickhouseLogs => match (&self.projector_topic, primary) {
                (Some(topic), true) => topic.clone(),
                _ => global.logs_topic.clone(),
            },
            ProjectorName::RedisViews | ProjectorName::ClickhouseHistory => job_topic,
        };
        let (default_batch, default_wait) = name.batching();
        let (max_batch, max_wait) = if primary {
            (
                self.projector_max_batch.unwrap_or(default_batch),
                self.projector_max_wait_ms
                    .map_or(default_wait, Duration::from_millis),
            )
        } else {
            (default_batch, default_wait)
        };
        anyhow::ensure!(max_batch >= 1, "--projector-max-batch must be at least 1");
        Ok(ProjectorConfig {
            topic,
            group: own(&self.projector_group, defaults.group.clone()),
            parking_topic: own(&self.parking_topic, defaults.parking_topic.clone()),
            topic_partitions: global.topic_partitions()?,
            max_batch,
            max_wait,
            session_timeout: Duration::from_millis(self.projector_session_timeout_ms),
            gap_repairs_per_second: self.gap_repairs_per_second,
            stall_timeout: Duration::from_millis(self.projector_stall_timeout_ms),
            leave_group_on_stop: self.projector_leave_group_on_stop,
            ..defaults
        })
    }
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Logical replication slot of the relay; created if missing.
    #[arg(long, env = "ORDO_RELAY_SLOT", default_value = "ordo_relay")]
    pub relay_slot: String,
    /// Publication of the outbox table (created by the migrations).
    #[arg(long, env = "ORDO_RELAY_PUBLICATION", default_value = "ordo_outbox")]
    pub relay_publication: String,
    /// Topic of each record, as Debezium's `route.topic.replacement`: `${routedByValue}` is
    /// the row's aggregatetype.
    #[arg(
        long,
        env = "ORDO_RELAY_TOPIC_TEMPLATE",
        default_value = ordo_outbox_relay::route::DEFAULT_TOPIC_TEMPLATE
    )]
    pub relay_topic_template: String,
    /// Keep outbox rows after Kafka acknowledged them (by default they are deleted).
    #[arg(long, env = "ORDO_RELAY_KEEP_PUBLISHED")]
    pub relay_keep_published: bool,
    /// Seconds a record may wait for the broker before the relay reconnects and retries.
    #[arg(long, env = "ORDO_RELAY_MESSAGE_TIMEOUT_SECS", default_value_t = 30)]
    pub relay_message_timeout_secs: u64,
}

impl RelayArgs {
    pub fn config(&self, global: &GlobalArgs) -> anyhow::Result<RelayConfig> {
        anyhow::ensure!(
            self.relay_message_timeout_secs >= 1,
            "--relay-message-timeout-secs must be at least 1"
        );
        Ok(RelayConfig {
            slot: self.relay_slot.clone(),
            publication: self.relay_publication.clone(),
            topic_template: self.relay_topic_template.clone(),
            topic_partitions: global.topic_partitions()?,
            delete_published: !self.relay_keep_published,
            message_timeout: Duration::from_secs(self.relay_message_timeout_secs),
            ..RelayConfig::new(&global.database_url, &global.kafka_brokers)
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit the jobs of an NDJSON file in batches (`POST /api/v1/jobs/batch`); prints one
    /// JSON result per job, in input order, and fails if any job was refused.
    Submit(JobsSubmitArgs),
}

#[derive(Debug, Args)]
pub struct JobsSubmitArgs {
    /// One job per line: the body of `POST /api/v1/jobs`, plus an optional `idempotency_key`
    /// (blank lines are skipped); `-` reads standard input.
    #[arg(long, short)]
    pub file: std::path::PathBuf,
    /// The command API.
    #[arg(long, env = "ORDO_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// The tenant the jobs belong to.
    #[arg(long, env = "ORDO_TENANT", default_value = ordo_protocol::tenant::DEFAULT_TENANT)]
    pub tenant: String,
    /// Jobs per request (at most 1000).
    #[arg(long, default_value_t = ordo_protocol::jobs::MAX_BATCH_JOBS)]
    pub batch_size: usize,
    /// Bound of each request.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print the lines matching QUERY, newest first: time, level, service and message, or one
    /// JSON object per line. QUERY is the query language of the README's "Log search"
    /// (`timeout level:>=warn service:api`, `"exact phrase"`, `a OR b`, `-word`, `conn*`).
    Search(LogsSearchArgs),
}

#[derive(Debug, Args)]
pub struct LogsSearchArgs {
    /// The query (empty: every line of the window).
    #[arg(default_value = "")]
    pub query: String,
    /// How far back to search: 15m, 24h, 7d (the API's default is 24h).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    /// A level (`error`) or a range (`>=warn`).
    #[arg(long)]
    pub level: Option<String>,
    /// Lines of one job (its id).
    #[arg(long)]
    pub job: Option<String>,
    /// Most lines printed (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long, short, value_enum, default_value_t = LogsOutput::Text)]
    pub output: LogsOutput,
    /// The query API (`ordo dev` serves it with the command API).
    #[arg(long, env = "ORDO_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// The tenant whose lines are searched.
    #[arg(long, env = "ORDO_TENANT", default_value = ordo_protocol::tenant::DEFAULT_TENANT)]
    pub tenant: String,
    /// Bound of the request.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogsOutput {
    /// One line per log line: time, level, service, message.
    Text,
    /// One JSON object per log line, as the API answers it.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Submit throughput and latency through the HTTP API, next to plain INSERTs.
    Submit(SubmitBenchArgs),
    /// Outbox → Kafka throughput and commit→ack latency of the relay.
    Relay(RelayBenchArgs),
    /// Events/s a projector applies from Kafka to the Redis read model.
    Project(ProjectBenchArgs),
    /// The whole job lifecycle (submit, claim and start, complete) with in-process workers:
    /// jobs/s and submit → complete latency, next to plain INSERTs.
    E2e(E2eBenchArgs),
    /// Faults under load on a private stack: every role as its own process, killed (-9) and
    /// restarted in turn, PostgreSQL, Redis (empty) and the broker restarted; then checks
    /// from the event store and `ordo replay --verify`. Exit code 1 if a check fails.
    Chaos(ChaosBenchArgs),
    /// A queue benchmark as users run Ordo: this process is the client (--clients callers,
    /// each submitting one job after another over HTTP), the platform is `ordo dev
    /// --no-worker` and one `ordo serve worker` process with --slots slots runs the jobs.
    /// Prints enqueue/s, lifecycle/s, enqueue → complete latency and the CPU seconds of
    /// every process of the stack. `--system graphile-worker` measures that job queue the
    /// same way on the same private PostgreSQL.
    Queue(QueueBenchArgs),
    /// Log ingestion end to end, as services ship logs: this process sends pre-encoded
    /// requests of --batch lines by --protocol from --concurrency senders to `ordo serve
    /// ingest`, and `ordo serve projector --name clickhouse-logs` stores them in ClickHouse,
    /// all on a private Redis and broker and a ClickHouse database of the run's own. Prints
    /// lines/s acknowledged and stored, ack → stored latency, bytes on disk per raw byte, the
    /// raw INSERT limit of the same rows and the CPU seconds of every process.
    Ingest(IngestBenchArgs),
}

#[derive(Debug, Args)]
pub struct IngestBenchArgs {
    /// How the lines are sent.
    #[arg(long, value_enum, default_value_t = LogProtocol::Otlp)]
    pub protocol: LogProtocol,
    /// Lines to send (rounded up to whole requests); 1,000,000 without --seconds.
    #[arg(long, conflicts_with = "seconds")]
    pub lines: Option<usize>,
    /// Send for this many seconds instead of a number of lines.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Senders, each sending one request after another over keep-alive HTTP.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Lines per request (1 to 10,000).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Lines per second to send, in whole requests on a steady schedule (the senders catch
    /// up when behind); as fast as the senders go without. A sustained run measures ack →
    /// stored at a rate the sink keeps up with.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Longest wait, after the last acknowledgement, for every line to be visible in
    /// ClickHouse.
    #[arg(long, default_value_t = 120)]
    pub store_timeout_secs: u64,
}

/// How `ordo bench ingest` sends its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogProtocol {
    /// Ordo's own API: `POST /api/v1/logs`, NDJSON.
    Native,
    /// OTLP/HTTP: `POST /v1/logs`, protobuf.
    Otlp,
    /// Elasticsearch's bulk API: `POST /es/_bulk`, NDJSON.
    Bulk,
    /// Loki's push API: `POST /loki/api/v1/push`, snappy-compressed protobuf.
    Loki,
}

#[derive(Debug, Args)]
pub struct QueueBenchArgs {
    /// The job queue measured: Ordo, or graphile-worker (its `addJob` from a Node client,
    /// one graphile-worker process; installed with `npm ci` on first use).
    #[arg(long, value_enum, default_value_t = QueueSystem::Ordo)]
    pub system: QueueSystem,
    /// Jobs of the measured run (after a warm-up of 200).
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Concurrent callers of the client, each awaiting its submit before the next.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Slots of the one worker process (ORDO_WORKER_CONCURRENCY, graphile-worker's
    /// concurrency).
    #[arg(long, default_value_t = 32)]
    pub slots: usize,
    /// Use the platform already running at this URL (`ordo dev --no-worker`, its event store
    /// at --database-url) instead of starting one on a private PostgreSQL, Redis and broker.
    /// CPU time is then counted for every ordo, postgres, redis-server and nisshi process of
    /// the machine. Ordo only.
    #[arg(long)]
    pub url: Option<String>,
    /// The graphile-worker project (package.json, lock file, scripts); by default
    /// bench/peers/graphile-worker of the source tree this binary was built from.
    #[arg(long)]
    pub peer_dir: Option<std::path::PathBuf>,
    /// Longest wait, after the last submit, for every job to complete; for graphile-worker
    /// also the longest its client may take for the submits of the measured run.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run the private PostgreSQL as production does, every commit flushed to disk
    /// (`fsync=on`); by default it runs with `fsync=off`, which measures the systems' own
    /// costs rather than the disk's.
    #[arg(long)]
    pub durable: bool,
}

impl QueueBenchArgs {
    pub fn durability(&self) -> ordo::instances::postgres::Durability {
        if self.durable {
            ordo::instances::postgres::Durability::Durable
        } else {
            ordo::instances::postgres::Durability::Scratch
        }
    }
}

/// What `ordo bench queue` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueSystem {
    Ordo,
    GraphileWorker,
}

/// What `ordo bench chaos` can do to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// kill -9 of the command API process, then a new one on the same port.
    Api,
    /// kill -9 of the outbox relay, then a new one on the same slot.
    Relay,
    /// kill -9 of the projector, then a new member of the same consumer group.
    Projector,
    /// kill -9 of one worker process (in turn), then a new one; its leases run out.
    Worker,
    /// kill -9 of the lease reaper, then a new one.
    Reaper,
    /// PostgreSQL stopped (fast shutdown) and started again.
    Postgres,
    /// Redis killed and started again empty (no persistence): the read model is gone.
    Redis,
    /// The broker killed and started again empty (memory storage): topics, records and
    /// consumer groups are gone.
    Broker,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Api,
        Fault::Relay,
        Fault::Projector,
        Fault::Worker,
        Fault::Reaper,
        Fault::Postgres,
        Fault::Redis,
        Fault::Broker,
    ];
}

#[derive(Debug, Args)]
pub struct ChaosBenchArgs {
    /// Length of the load, in seconds; by default one interval before the first fault plus
    /// one per fault of --faults, so each happens once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: Option<u64>,
    /// Seconds from one fault to the next (the next also waits until the platform recovered
    /// from the last, up to --recovery-timeout-secs).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub interval_secs: u64,
    /// The faults, in the order the schedule injects them, cycling (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Fault::ALL)]
    pub faults: Vec<Fault>,
    /// Submits per second (a mix of noop, fail-then-succeed, dead-letter and cancelled jobs).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub rate: u32,
    /// `ordo serve worker` processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub workers: u32,
    /// Longest wait for jobs to complete again after a fault; the fault fails the run if
    /// they do not.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub recovery_timeout_secs: u64,
    /// Longest wait, after the load stopped, for every job to reach a final state.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub settle_timeout_secs: u64,
    /// Directory for the run's logs (one file per process, the PostgreSQL and Redis logs);
    /// created, and must not exist. A new one under the temporary directory by default.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct E2eBenchArgs {
    /// Jobs to run: as fast as they go, or at `--rate` when `--seconds` is not given.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Worker runtimes in this process, each with its own client and worker id.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Submits in flight at once without `--rate`; also the inserts in flight of the raw
    /// PostgreSQL phase.
    #[arg(long, default_value_t = 32)]
    pub submit_concurrency: usize,
    /// Submit at this steady rate (jobs per second) instead of as fast as possible.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Length of the paced run (`--rate` × `--seconds` jobs, instead of `--jobs`).
    #[arg(long, requires = "rate")]
    pub seconds: Option<u64>,
    /// Size of each job's payload string, in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Longest wait, after the last submit, for every job to complete.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ProjectBenchArgs {
    /// Events to project (sample job histories of 3 or 7 events).
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Most records per Redis pipeline (the projector's `--projector-max-batch`).
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct RelayBenchArgs {
    /// Events of the throughput phase.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Outbox rows per inserting transaction in the throughput phase.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Steady rate of the latency phase, one event per transaction.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Length of the latency phase, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct SubmitBenchArgs {
    /// Jobs to submit.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Size of each job's payload string, in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Benchmark a running API at this URL instead of one started in-process on a scratch
    /// database.
    #[arg(long)]
    pub url: Option<String>,
    /// Measure submit → visible in the query API instead: each job is submitted, then read
    /// with `min_sequence` until its view exists, at a steady `--rate` (the whole platform
    /// runs in-process unless `--url` names a running `ordo dev`).
    #[arg(long)]
    pub read_back: bool,
    /// Submit through `POST /api/v1/jobs/batch`, this many jobs per request (1 to 1000),
    /// instead of one job per `POST /api/v1/jobs`.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Submits per second of the read-back measurement.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Length of the read-back measurement, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Which read model to rebuild.
    #[arg(long, env = "ORDO_REPLAY_PROJECTOR", value_enum)]
    pub projector: ProjectorName,
    /// Repair only this job in place (repeat the flag, or separate ids with commas).
    #[arg(
        long = "job",
        env = "ORDO_REPLAY_JOB",
        value_name = "ID",
        value_delimiter = ',',
        conflicts_with = "since"
    )]
    pub jobs: Vec<String>,
    /// Repair in place every job with an event at or after this time (RFC 3339); each is
    /// replayed with its full history.
    #[arg(long, env = "ORDO_REPLAY_SINCE", value_name = "TIME", value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Build every job into this new namespace, then make it the live one. Without --job,
    /// --since, --verify or --dry-run a replay does this, into `{prefix}.r{unix-ms}`.
    #[arg(
        long,
        env = "ORDO_REPLAY_INTO",
        value_name = "NAMESPACE",
        conflicts_with_all = ["jobs", "since"]
    )]
    pub into: Option<String>,
    /// After the switch, delete the keys of the namespace that was live before.
    #[arg(long, env = "ORDO_REPLAY_DROP_PREVIOUS", conflicts_with_all = ["jobs", "since"])]
    pub drop_previous: bool,
    /// Replay into a scratch namespace and print every difference from the live one.
    #[arg(long, env = "ORDO_REPLAY_VERIFY", conflicts_with_all = ["into", "drop_previous", "dry_run"])]
    pub verify: bool,
    /// Read and decode the events, report what a replay would do, write nothing.
    #[arg(long, env = "ORDO_REPLAY_DRY_RUN", conflicts_with_all = ["into", "drop_previous"])]
    pub dry_run: bool,
    /// Events per PostgreSQL page.
    #[arg(long, env = "ORDO_REPLAY_PAGE_SIZE", default_value_t = 5_000)]
    pub page_size: usize,
    /// Events per Redis pipeline.
    #[arg(long, env = "ORDO_REPLAY_BATCH", default_value_t = 1_000)]
    pub batch: usize,
    /// Wait after the switch before the catch-up pass, for in-flight projector batches.
    #[arg(long, env = "ORDO_REPLAY_SETTLE_MS", default_value_t = 2_000)]
    pub settle_ms: u64,
    /// How many positions back from the replay's last event the catch-up pass looks for
    /// events committed too late for the main pass.
    #[arg(long, env = "ORDO_REPLAY_CATCH_UP_MARGIN", default_value_t = 100_000)]
    pub catch_up_margin: i64,
}

fn parse_time(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-01-02T03:04:05Z"))
}

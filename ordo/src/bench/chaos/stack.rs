//! The private stack of a chaos run: a PostgreSQL cluster, a Redis and a broker of its own on
//! free loopback ports, and every role of the platform as its own `ordo` process (this very
//! executable) configured only by the environment given here. Nothing of the shared local
//! stack is touched. Every process logs into the run's directory.

use crate::cli::{Fault, GlobalArgs};
use anyhow::Context;
use ordo::instances::broker::Broker;
use ordo::instances::postgres::PrivateCluster;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo::instances::redis::PrivateRedis;
use ordo::instances::{free_port, Services};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The queue every chaos job goes to, and the only one the workers claim from.
pub const QUEUE: &str = "chaos";
/// Short leases, so the jobs of a killed worker run out (and are retried) within seconds.
const WORKER_LEASE_MS: &str = "5000";
const WORKER_CONCURRENCY: &str = "16";
/// A new projector gets its partitions once the killed one's session ran out.
const PROJECTOR_SESSION_TIMEOUT_MS: &str = "3000";
/// A record the broker does not acknowledge within this makes the relay reconnect.
const RELAY_MESSAGE_TIMEOUT_SECS: &str = "5";
/// How long a (re)started role may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A role of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Api,
    Relay,
    Projector,
    Worker,
    Reaper,
}

impl RoleKind {
    fn serve(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Relay => "relay",
            Self::Projector => "projector",
            Self::Worker => "worker",
            Self::Reaper => "reaper",
        }
    }
}

/// One role process and where it says it is alive.
struct Role {
    kind: RoleKind,
    name: String,
    process: OrdoProcess,
    health_url: String,
}

pub struct Stack {
    pub dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    pub brokers: String,
    pub api_url: String,
    /// This executable: every role runs the same build.
    binary: PathBuf,
    // Dropped in this order: the roles first, then the services they use.
    roles: Vec<Role>,
    /// Which worker the next worker fault kills.
    next_worker: usize,
    /// Roles that exited by themselves, when and how ([`Stack::supervise`]).
    exits: Vec<String>,
    broker: Broker,
    redis: PrivateRedis,
    cluster: PrivateCluster,
}

impl Stack {
    /// Starts the services, applies the migrations and starts every role, each ready.
    pub async fn start(global: &GlobalArgs, dir: &Path, workers: u32) -> anyhow::Result<Self> {
        let started = Instant::now();
        let Services {
            broker,
            redis,
            cluster,
        } = tokio::task::block_in_place(|| Services::start_in(dir))?;
        let database_url = cluster.url("ordo");
        let migrate = GlobalArgs {
            database_url: database_url.clone(),
            database_pool_size: 2,
            ..global.clone()
        };
        // Its own PostgreSQL only: the chaos run involves no ClickHouse.
        crate::serve::migrate_postgres(&migrate).await?;
        let api_port = free_port()?;
        let binary = std::env::current_exe().context("find this executable")?;
        let mut stack = Self {
            binary,
            dir: dir.to_path_buf(),
            database_url,
            redis_url: redis.url(),
            brokers: broker.address(),
            api_url: format!("http://127.0.0.1:{api_port}"),
            roles: Vec::new(),
            next_worker: 0,
            exits: Vec::new(),
            broker,
            redis,
            cluster,
        };
        stack.spawn(RoleKind::Api, "api", api_port)?;
        stack.spawn(RoleKind::Relay, "relay", free_port()?)?;
        stack.spawn(RoleKind::Projector, "projector", free_port()?)?;
        stack.spawn(RoleKind::Reaper, "reaper", free_port()?)?;
        for n in 1..=workers {
            stack.spawn(RoleKind::Worker, &format!("worker-{n}"), free_port()?)?;
        }
        for i in 0..stack.roles.len() {
            stack.wait_ready(i).await?;
        }
        tracing::info!(elapsed = ?started.elapsed(), "private stack up");
        Ok(stack)
    }

    /// The environment every role shares: the private services, and nothing of the caller's.
    fn spec(&self, kind: RoleKind, name: &str, port: u16) -> ProcessSpec {
        let address = format!("127.0.0.1:{port}");
        let spec = ProcessSpec::new(&self.binary, &["serve", kind.serve()])
            .clean_env()
            .log(&self.dir.join(format!("{name}.log")))
            .env("ORDO_LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("ORDO_DATABASE_URL", &self.database_url)
            .env("ORDO_REDIS_URL", &self.redis_url)
            .env("ORDO_KAFKA_BROKERS", &self.brokers)
            // PostgreSQL's 100 connections are shared by every process of the stack; the API
            // runs most of the commands.
            .env(
                "ORDO_DATABASE_POOL_SIZE",
                if kind == RoleKind::Api { "24" } else { "8" },
            );
        match kind {
            RoleKind::Api => spec.env("ORDO_HTTP_ADDR", address),
            RoleKind::Relay => spec.env("ORDO_METRICS_ADDR", address).env(
                "ORDO_RELAY_MESSAGE_TIMEOUT_SECS",
                RELAY_MESSAGE_TIMEOUT_SECS,
            ),
            RoleKind::Projector => spec.env("ORDO_METRICS_ADDR", address).env(
                "ORDO_PROJECTOR_SESSION_TIMEOUT_MS",
                PROJECTOR_SESSION_TIMEOUT_MS,
            ),
            RoleKind::Reaper => spec.env("ORDO_METRICS_ADDR", address),
            RoleKind::Worker => spec
                .env("ORDO_METRICS_ADDR", address)
                .env("ORDO_API_URL", &self.api_url)
                .env("ORDO_WORKER_ID", format!("chaos-{name}"))
                .env("ORDO_WORKER_QUEUES", QUEUE)
                .env("ORDO_WORKER_CONCURRENCY", WORKER_CONCURRENCY)
                .env("ORDO_WORKER_LEASE_MS", WORKER_LEASE_MS)
                .env("ORDO_WORKER_CLAIM_WAIT_MS", "1000"),
        }
    }

    fn spawn(&mut self, kind: RoleKind, name: &str, port: u16) -> anyhow::Result<()> {
        let process = OrdoProcess::spawn(self.spec(kind, name, port))
            .with_context(|| format!("start the {name} process"))?;
        self.roles.push(Role {
            kind,
            name: name.to_owned(),
            process,
            health_url: format!("http://127.0.0.1:{port}/healthz"),
        });
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let role = &mut self.roles[i];
        role.process
            .wait_ok(&role.health_url, READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "the {} process did not come up (log: {})",
                    role.name,
                    self.dir.join(format!("{}.log", role.name)).display()
                )
            })
    }

    /// Injects `fault`: the blow and the restart. Answers what was done, for the report.
    pub async fn inject(&mut self, fault: Fault) -> anyhow::Result<String> {
        let role = match fault {
            Fault::Api => RoleKind::Api,
            Fault::Relay => RoleKind::Relay,
            Fault::Projector => RoleKind::Projector,
            Fault::Worker => RoleKind::Worker,
            Fault::Reaper => RoleKind::Reaper,
            Fault::Postgres => {
                tokio::task::block_in_place(|| {
                    self.cluster.stop_server()?;
                    self.cluster.start_server()
                })?;
                return Ok("PostgreSQL stopped (fast) and started".into());
            }
            Fault::Redis => {
                tokio::task::block_in_place(|| self.redis.restart_empty())?;
                return Ok("Redis killed (-9) and started empty".into());
            }
            Fault::Broker => {
                tokio::task::block_in_place(|| self.broker.restart())?;
                return Ok("broker killed (-9) and started empty".into());
            }
        };
        let candidates: Vec<usize> = (0..self.roles.len())
            .filter(|&i| self.roles[i].kind == role)
            .collect();
        let i = *candidates
            .get(self.next_worker % candidates.len().max(1))
            .with_context(|| format!("no {} process in the stack", role.serve()))?;
        if role == RoleKind::Worker {
            self.next_worker += 1;
        }
        let name = self.roles[i].name.clone();
        tokio::task::block_in_place(|| self.roles[i].process.respawn())?;
        self.wait_ready(i).await?;
        Ok(format!("{name} killed (-9) and restarted"))
    }

    /// Starts every role that exited by itself again at once, as a supervisor would, so the
    /// run goes on; each exit is kept for the report (none should happen: a role rides out
    /// every fault).
    pub fn supervise(&mut self) {
        for i in 0..self.roles.len() {
            let Some(status) = self.roles[i].process.exited() else {
                continue;
            };
            let name = self.roles[i].name.clone();
            tracing::warn!(role = %name, %status, "role exited by itself; starting it again");
            // Wall-clock time, as in the role's log.
            let at = chrono::Utc::now().format("%H:%M:%S%.3f UTC");
            let mut crash = format!("{name} at {at} ({status})");
            if let Err(e) = tokio::task::block_in_place(|| self.roles[i].process.respawn()) {
                crash.push_str(&format!(", not restarted: {e:#}"));
            }
            self.exits.push(crash);
        }
    }

    /// The roles that exited by themselves during the run.
    pub fn exits(&self) -> &[String] {
        &self.exits
    }

    /// `ordo replay --projector redis-views --verify` against the private stack, its output
    /// in `replay-verify-{n}.log`; answers whether it succeeded, and its output.
    pub async fn replay_verify(&self, n: u32, timeout: Duration) -> anyhow::Result<(bool, String)> {
        let binary = std::env::current_exe().context("find this executable")?;
        let log = self.dir.join(format!("replay-verify-{n}.log"));
        let spec = ProcessSpec::new(
            binary,
            &["replay", "--projector", "redis-views", "--verify"],
        )
        .clean_env()
        .log(&log)
        .env("ORDO_LOG_FORMAT", "text")
        .env("ORDO_DATABASE_URL", &self.database_url)
        .env("ORDO_REDIS_URL", &self.redis_url)
        .env("ORDO_DATABASE_POOL_SIZE", "4");
        let mut replay = OrdoProcess::spawn(spec)?;
        let status =
            tokio::task::block_in_place(|| replay.wait(timeout)).context("ordo replay --verify")?;
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        Ok((status.success(), output))
    }
}

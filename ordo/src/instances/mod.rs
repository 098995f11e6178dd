//! Private instances on loopback ports of their own, which a caller may stop, kill and
//! restart without touching the shared local stack: a PostgreSQL cluster ([`postgres`]), a
//! Redis without persistence ([`redis`]), a Nisshi broker with memory storage ([`broker`]),
//! a ClickHouse (chDB behind the local stack's HTTP front, [`clickhouse`]) and `ordo`
//! processes ([`process`]). Everything here blocks (process spawns, `pg_ctl`);
//! async callers wrap it in `block_in_place` or `spawn_blocking`.

pub mod broker;
pub mod clickhouse;
pub mod postgres;
pub mod process;
pub mod redis;

use anyhow::{bail, Context};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The services Ordo runs on, each private: what a chaos run or a benchmark starts under `dir`
/// (the cluster's data, the logs). Dropped in this order: the broker, Redis, the cluster.
pub struct Services {
    pub broker: broker::Broker,
    pub redis: redis::PrivateRedis,
    pub cluster: postgres::PrivateCluster,
}

impl Services {
    pub fn start_in(dir: &Path, durability: postgres::Durability) -> anyhow::Result<Self> {
        let cluster = postgres::PrivateCluster::start_in(&dir.join("postgres"), durability)
            .context("start the private PostgreSQL cluster")?;
        let redis = redis::PrivateRedis::start(free_port()?, dir, &dir.join("redis.log"))
            .context("start the private Redis")?;
        let broker = broker::Broker::start_on(free_port()?, Some(&dir.join("broker.log")))
            .context("start the private broker")?;
        Ok(Self {
            broker,
            redis,
            cluster,
        })
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`...) to `pid` with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// A program found on `PATH`, else in one of `fallbacks`.
pub fn find_program(name: &str, fallbacks: &[PathBuf]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain(fallbacks.iter().cloned())
        .find(|candidate| candidate.is_file())
}

/// Waits until 127.0.0.1:`port` accepts connections, failing early if `child` exits.
pub fn wait_listening(
    what: &str,
    port: u16,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} on port {port} exited at start: {status}");
        }
        if Instant::now() >= deadline {
            bail!("{what} not listening on 127.0.0.1:{port} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Kills `child` with SIGKILL (which also ends a stopped process) and reaps it.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

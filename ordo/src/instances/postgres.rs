//! A private PostgreSQL 15 cluster (`initdb` into a directory of its own), which its owner
//! may stop and start without touching the shared one of the local stack.

use super::free_port;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where PostgreSQL's server binaries live: `ORDO_PG_BIN`, else Debian's PostgreSQL 15.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("ORDO_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    if !(dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()) {
        bail!(
            "PostgreSQL 15 server binaries not found in {} (set ORDO_PG_BIN, or run `make services`)",
            dir.display()
        );
    }
    Ok(dir)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether a cluster flushes its commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fsync=off`: tests and quick benchmarks, whose data may die with the machine.
    #[default]
    Scratch,
    /// PostgreSQL's defaults (`fsync`, `synchronous_commit` on): every commit waits for its
    /// WAL flush, as in production.
    Durable,
}

impl Durability {
    /// How a report names it.
    pub fn describe(self) -> &'static str {
        match self {
            Durability::Scratch => "fsync off",
            Durability::Durable => "fsync on",
        }
    }
}

/// A throw-away cluster with logical replication, trust authentication on loopback and its
/// socket in its own directory. Stopped when dropped (also when a test panics), and its data
/// removed. PostgreSQL refuses to run as root, so under root the cluster belongs to, and runs
/// as, the `postgres` OS user.
pub struct PrivateCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// Whether dropping removes `dir` itself (it was made for the cluster) or only the data.
    remove_dir: bool,
    durability: Durability,
}

impl PrivateCluster {
    /// `initdb` into a new temporary directory, then start on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ordo-pg-{}", uuid::Uuid::new_v4().simple()));
        Self::init(dir, true, Durability::Scratch)
    }

    /// `initdb` into `dir` (created; it must not exist), then start on a free port. Dropping
    /// the cluster removes its data but leaves `dir` with the server log, `postgres.log`.
    pub fn start_in(dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        Self::init(dir.to_path_buf(), false, durability)
    }

    fn init(dir: PathBuf, remove_dir: bool, durability: Durability) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root();
        std::fs::create_dir(&dir)
            .with_context(|| format!("create the cluster directory {}", dir.display()))?;
        let cluster = Self {
            port: free_port()?,
            dir,
            bin,
            as_postgres,
            remove_dir,
            durability,
        };
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir)
                .status()
                .context("run chown")?;
            if !status.success() {
                bail!(
                    "chown postgres {} failed: is there a postgres OS user?",
                    cluster.dir.display()
                );
            }
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        // The `postgres` user may not be allowed into the caller's working directory.
        command.current_dir(&self.dir);
        command
    }

    /// Runs one of the server binaries (as `postgres` under root); fails with its output and
    /// the tail of the server log.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("run {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} {args:?} failed ({}):\n{}{}\nserver log: {}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_tail(),
            );
        }
        Ok(output)
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `pg_ctl start`, waiting (up to 60 s) until the server accepts connections.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 \
             -c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync={}",
            self.port,
            self.dir.display(),
            match self.durability {
                Durability::Scratch => "off",
                Durability::Durable => "on",
            }
        );
        let log = self.log_path().display().to_string();
        let data = self.data_dir();
        let args = [
            "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options,
        ];
        self.run("pg_ctl", &args).map(drop)
    }

    /// `pg_ctl stop -m fast`: sessions are ended, a shutdown checkpoint is written.
    pub fn stop_server(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let args = ["stop", "-D", &data, "-m", "fast", "-w", "-t", "60"];
        self.run("pg_ctl", &args).map(drop)
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The postmaster's process id, from `postmaster.pid`, while the server runs.
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let path = self.dir.join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {} (is the server running?)", path.display()))?;
        let first = text.lines().next().unwrap_or_default().trim();
        first
            .parse()
            .with_context(|| format!("no pid on the first line of {}", path.display()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        // Fails harmlessly when the server is already down.
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-D", data.as_str(), "-m", "immediate", "-w"])
            .output();
        let _ = if self.remove_dir {
            std::fs::remove_dir_all(&self.dir)
        } else {
            std::fs::remove_dir_all(&data)
        };
    }
}

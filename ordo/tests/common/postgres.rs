//! A private PostgreSQL 15 cluster per test, which the test may stop and start without
//! touching the shared one of the local stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where PostgreSQL's server binaries live: `ORDO_PG_BIN`, else Debian's PostgreSQL 15.
fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("ORDO_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    assert!(
        dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(),
        "PostgreSQL 15 server binaries not found in {} (set ORDO_PG_BIN, or run `make services`)",
        dir.display()
    );
    dir
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throw-away cluster (`initdb` into a temporary directory) with logical replication, trust
/// authentication on loopback and its socket in its own directory. Stopped and removed when
/// dropped, also when the test panics. PostgreSQL refuses to run as root, so under root the
/// cluster belongs to, and runs as, the `postgres` OS user.
pub struct PrivateCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivateCluster {
    /// `initdb`, then start on a free port.
    pub fn start() -> Self {
        let bin = bin_dir();
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(super::unique("ordo-pg-"));
        std::fs::create_dir(&dir).expect("create the cluster directory");
        let cluster = Self {
            port: super::broker::free_port(),
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir)
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown postgres {} failed: is there a postgres OS user?",
                cluster.dir.display()
            );
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
        );
        cluster.start_server();
        cluster
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of the server binaries, as `postgres` under root, from the cluster directory
    /// (the `postgres` user may not be allowed into the test's working directory).
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}{}\nserver log: {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(),
        );
        output
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 \
             -c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.log_path().display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
            ],
        );
    }

    /// `pg_ctl stop -m fast`: sessions are ended, a shutdown checkpoint is written.
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                &self.data_dir(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
            ],
        );
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let args = ["stop", "-D", data.as_str(), "-m", "immediate", "-w"];
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        // Fails harmlessly when the server is already down.
        let _ = command.args(args).current_dir(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A private Redis: `redis-server` on a loopback port with no persistence (no RDB, no AOF),
//! so a restart ([`PrivateRedis::restart_empty`]) is a Redis that lost every key.

use super::{find_program, kill_child, wait_listening};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `redis-server` on 127.0.0.1:`port`, killed when dropped.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    /// Its working directory (nothing is saved there; Redis insists on having one).
    dir: PathBuf,
    log: PathBuf,
}

impl PrivateRedis {
    /// Starts `redis-server` on `port`, working in `dir`, logging to `log`.
    pub fn start(port: u16, dir: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut redis = Self {
            child: None,
            port,
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
        };
        redis.restart_empty()?;
        Ok(redis)
    }

    /// SIGKILL (if running), then a fresh server on the same port: every key is gone.
    pub fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.kill();
        let binary = find_program("redis-server", &[PathBuf::from("/usr/bin/redis-server")])
            .context("redis-server is not installed (run `make services`)")?;
        let mut child = Command::new(binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server")?;
        let listening = wait_listening("redis-server", self.port, &mut child, START_TIMEOUT);
        self.child = Some(child);
        listening
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A private ClickHouse: `scripts/clickhouse-http.py` (the ClickHouse engine as chDB, behind
//! ClickHouse's HTTP interface) on a loopback port with a data directory of its own, run by
//! the Python of the venv `scripts/services.sh` installs. Its data is on disk: stopped
//! ([`PrivateClickHouse::stop`]) and started again ([`PrivateClickHouse::restart`]) on the
//! same port, it is a ClickHouse that went away and came back with everything it had.

use super::{kill_child, send_signal, wait_listening};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the front may take to listen (importing chDB takes a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The front script of the source tree this binary was built from.
fn front_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/clickhouse-http.py")
}

/// The Python of the venv `scripts/services.sh` installs chDB into
/// (`${XDG_STATE_HOME:-~/.local/state}/ordo/clickhouse/venv`).
pub fn chdb_python() -> anyhow::Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set")?;
    let python = state.join("ordo/clickhouse/venv/bin/python");
    if !python.is_file() {
        bail!(
            "chDB is not installed ({} is missing): run `make services`",
            python.display()
        );
    }
    Ok(python)
}

/// The front on 127.0.0.1:`port`, killed when dropped.
pub struct PrivateClickHouse {
    child: Option<Child>,
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
}

impl PrivateClickHouse {
    /// Starts a front on `port` with its data in `dir/data`, logging to `dir/front.log`,
    /// and waits until it answers.
    pub fn start_in(dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut clickhouse = Self {
            child: None,
            port,
            data: dir.join("data"),
            log: dir.join("front.log"),
        };
        clickhouse.restart()?;
        Ok(clickhouse)
    }

    /// Starts it again on its port, with the data it had (after [`PrivateClickHouse::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let mut child = Command::new(chdb_python()?)
            .arg(front_script())
            .args(["--port", &self.port.to_string()])
            .arg("--path")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(super::process::append(&self.log)?)
            .stderr(super::process::append(&self.log)?)
            .spawn()
            .context("spawn the ClickHouse front")?;
        // The front binds its port once the engine is loaded: listening means answering.
        let listening =
            wait_listening("the ClickHouse front", self.port, &mut child, START_TIMEOUT);
        self.child = Some(child);
        listening.with_context(|| format!("see {}", self.log.display()))
    }

    /// Stops it (SIGTERM, SIGKILL if it lingers); its data stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if send_signal(child.id(), "TERM").is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        kill_child(&mut child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

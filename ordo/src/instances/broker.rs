//! A private Kafka-protocol broker: `nisshi broker` with memory storage, on a loopback port.
//! Its topics, records and consumer groups live only as long as the process, so a restart
//! ([`Broker::kill`], then [`Broker::start_on`] the same port) is a broker that lost
//! everything.

use super::{find_program, free_port, kill_child, send_signal, wait_listening};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a fresh broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nisshi` binary `scripts/services.sh` installs: on `PATH`, or in `~/.cargo/bin`.
pub fn nisshi_binary() -> anyhow::Result<PathBuf> {
    let in_cargo_home: Vec<PathBuf> = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/nisshi"))
        .into_iter()
        .collect();
    find_program("nisshi", &in_cargo_home).context(
        "the nisshi broker is not installed (not on PATH nor in ~/.cargo/bin): run `make services`",
    )
}

/// `nisshi broker` on 127.0.0.1:`port`, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    log: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()?, None)
    }

    /// Starts a broker on `port` (a fresh, empty one after [`Broker::kill`]), its output
    /// appended to `log` (discarded without one).
    pub fn start_on(port: u16, log: Option<&Path>) -> anyhow::Result<Self> {
        let mut broker = Self {
            child: None,
            port,
            log: log.map(Path::to_path_buf),
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Starts the broker again on its port after [`Broker::kill`]: empty.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let (stdout, stderr) = match &self.log {
            Some(path) => (super::process::append(path)?, super::process::append(path)?),
            None => (Stdio::null(), Stdio::null()),
        };
        let mut command = Command::new(nisshi_binary()?);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://nisshi/"]);
        if self.log.is_none() {
            command.arg("--silent");
        }
        let mut child = command
            // Nisshi at the caller's `RUST_LOG=info` writes every span it closes: gigabytes
            // a minute under load.
            .env("RUST_LOG", "warn")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("spawn nisshi broker")?;
        let listening = wait_listening("nisshi", self.port, &mut child, START_TIMEOUT);
        self.child = Some(child);
        listening
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> anyhow::Result<u32> {
        Ok(self
            .child
            .as_ref()
            .context("the broker is not running")?
            .id())
    }

    /// SIGSTOP: the broker keeps its sockets and state but answers nothing.
    pub fn pause(&self) -> anyhow::Result<()> {
        send_signal(self.pid()?, "STOP")
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        send_signal(self.pid()?, "CONT")
    }

    /// SIGKILL: the broker and everything it stored are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

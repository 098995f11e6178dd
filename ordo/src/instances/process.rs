//! `ordo` processes: one role of the platform (`ordo serve …`, `ordo dev`), spawned from a
//! given binary with its settings in the environment, and killed when dropped. A benchmark
//! runs a peer system's programs (`node …`) the same way.

use super::send_signal;
use anyhow::{bail, Context};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What to run: the binary, its arguments and environment, and where its output goes.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Output appended to this file; inherited from the caller without one.
    pub log: Option<PathBuf>,
    /// Drop every `ORDO_*` variable of the caller's environment first, so only `env`
    /// configures the process (a caller's settings must not leak into a private stack).
    pub clean_env: bool,
    /// Stdin and stdout are pipes to the caller ([`OrdoProcess::take_pipes`]), for a
    /// line protocol with it; only stderr goes to the log.
    pub pipes: bool,
}

impl ProcessSpec {
    pub fn new(binary: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            binary: binary.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            log: None,
            clean_env: false,
            pipes: false,
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn envs<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.env
            .extend(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        self
    }

    pub fn log(mut self, path: &Path) -> Self {
        self.log = Some(path.to_path_buf());
        self
    }

    pub fn clean_env(mut self) -> Self {
        self.clean_env = true;
        self
    }

    pub fn pipes(mut self) -> Self {
        self.pipes = true;
        self
    }
}

/// Opens `path` for appending (created if missing), for a child's output.
pub fn append(path: &Path) -> anyhow::Result<Stdio> {
    let file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open the log {}", path.display()))?;
    Ok(file.into())
}

/// A running process, killed (SIGKILL) when dropped.
pub struct OrdoProcess {
    child: Child,
    pub spec: ProcessSpec,
}

impl OrdoProcess {
    pub fn spawn(spec: ProcessSpec) -> anyhow::Result<Self> {
        let mut command = Command::new(&spec.binary);
        command.args(&spec.args);
        if spec.clean_env {
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("ORDO_") {
                    command.env_remove(key);
                }
            }
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(log) = &spec.log {
            command.stdout(append(log)?).stderr(append(log)?);
        }
        if spec.pipes {
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            command.stdin(Stdio::null());
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawn {} {:?}", spec.binary.display(), spec.args))?;
        Ok(Self { child, spec })
    }

    /// The same process again (after a kill), with the same settings.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        self.kill_hard();
        *self = Self::spawn(self.spec.clone())?;
        Ok(())
    }

    /// Its stdin and stdout, once, when spawned with [`ProcessSpec::pipes`].
    pub fn take_pipes(&mut self) -> Option<(ChildStdin, ChildStdout)> {
        Some((self.child.stdin.take()?, self.child.stdout.take()?))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: no drain, no report, no clean-up; then reaps it.
    pub fn kill_hard(&mut self) {
        if self.exited().is_none() {
            let _ = send_signal(self.child.id(), "KILL");
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        send_signal(self.child.id(), "TERM")?;
        self.wait(timeout)
            .context("the process did not stop after SIGTERM")
    }

    /// Waits up to `timeout` for the process to exit (it is left running if it does not;
    /// dropping it kills it).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                self.kill_hard();
                bail!(
                    "{:?} did not exit within {timeout:?}; killed",
                    self.spec.args
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `url` answers 2xx, failing early if the process exits.
    pub async fn wait_ok(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        loop {
            if client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                bail!(
                    "{:?} exited ({status}) before {url} answered",
                    self.spec.args
                );
            }
            if started.elapsed() >= timeout {
                bail!(
                    "{:?}: {url} did not answer 2xx within {timeout:?}",
                    self.spec.args
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OrdoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

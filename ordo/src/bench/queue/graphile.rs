//! graphile-worker in `ordo bench queue --system graphile-worker`, measured as Ordo is: on a
//! private PostgreSQL started by the same code with the same settings, one graphile-worker
//! process (`worker.js`, concurrency = `--slots`) runs the jobs, and a Node client
//! (`client.js`) has `--clients` callers, each adding one `noop` job after another with
//! graphile-worker's own `addJob`. Both scripts live in the Node project of `--peer-dir`
//! (bench/peers/graphile-worker), installed with `npm ci` on first use.
//!
//! graphile-worker keeps no history (a completed job's row is deleted), so the instants come
//! from the scripts: the client's send and answer of each `addJob`, the worker's start of each
//! job and the moment its completion was committed (see worker.js for which moment that is).
//! Both scripts stamp epoch milliseconds from the same machine clock, keyed by an id the
//! client put in the job's payload. This process talks to them with one line each way over
//! their stdin and stdout, and reads the worker's records as it appends them.

use super::{Report, POLL, READY_TIMEOUT, SUBMIT_TIMEOUT, WARMUP_JOBS, WARMUP_TIMEOUT};
use crate::bench::cpu::{self, Counted, Rows, Window};
use crate::bench::lifecycle::{JobTimes, Lifecycle};
use crate::bench::PhaseResult;
use crate::bench::{stop, STOP_TIMEOUT};
use crate::cli::QueueBenchArgs;
use anyhow::{anyhow, bail, Context};
use ordo::instances::find_program;
use ordo::instances::postgres::PrivateCluster;
use ordo::instances::process::{append, OrdoProcess, ProcessSpec};
use ordo_common::db;
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const DATABASE: &str = "graphile";
/// `npm ci` downloads graphile-worker and its dependencies (about 70 packages).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Written into node_modules after a successful `npm ci`: the lock file it installed.
const INSTALLED_STAMP: &str = ".ordo-bench-installed-lock";
/// The engines of the project's package.json: what the scripts were written and measured with.
const NODE_MAJOR: u32 = 20;

pub(super) async fn run(args: &QueueBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let project = match &args.peer_dir {
        Some(dir) => dir.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/graphile-worker"),
    };
    let project = std::fs::canonicalize(&project).unwrap_or(project);
    let node = node()?;
    install(&project, &dir.join("npm.log")).await?;

    let cluster = tokio::task::block_in_place(|| {
        PrivateCluster::start_in(&dir.join("postgres"), args.durability())
    })
    .context("start the private PostgreSQL cluster")?;
    let database_url = cluster.url(DATABASE);
    db::ensure_database(&database_url)
        .await
        .with_context(|| format!("create the database {DATABASE} on the private cluster"))?;

    let worker_records = dir.join("graphile-worker.ndjson");
    File::create(&worker_records)
        .with_context(|| format!("create {}", worker_records.display()))?;
    let script = |name: &str| project.join(name).display().to_string();
    let worker_spec = ProcessSpec::new(&node, &[&script("worker.js")])
        .env("PEER_DATABASE_URL", &database_url)
        .env("PEER_SLOTS", args.slots.to_string())
        .env("PEER_OUT", worker_records.display().to_string());
    let mut worker = Peer::spawn("graphile-worker", worker_spec, dir)?;
    // It migrates the database first.
    worker.expect("ready", READY_TIMEOUT).await?;
    let mut completions = Completions::open(&worker_records)?;

    println!(
        "ordo bench queue --system graphile-worker: {} noop jobs, {} client(s) each adding one \
         after another with addJob (node), 1 graphile-worker process × {} concurrency \
         (graphile-worker {}, node {}); on a private PostgreSQL ({}); logs in {}",
        args.jobs,
        args.clients,
        args.slots,
        installed_version(&project),
        node_version(&node).unwrap_or_else(|e| format!("unknown: {e:#}")),
        args.durability().describe(),
        dir.display()
    );

    let client_records = dir.join("client.ndjson");
    let client_spec = ProcessSpec::new(&node, &[&script("client.js")])
        .env("PEER_DATABASE_URL", &database_url)
        .env("PEER_CLIENTS", args.clients.to_string())
        .env("PEER_JOBS", args.jobs.to_string())
        .env("PEER_WARMUP_JOBS", WARMUP_JOBS.to_string())
        .env(
            "PEER_SUBMIT_TIMEOUT_MS",
            SUBMIT_TIMEOUT.as_millis().to_string(),
        )
        .env("PEER_OUT", client_records.display().to_string());
    let mut client = Peer::spawn("client", client_spec, dir)?;

    // Warm-up: through the whole pipeline once.
    client.expect("warm", WARMUP_TIMEOUT).await?;
    completions
        .wait(Phase::Warmup, WARMUP_JOBS, WARMUP_TIMEOUT, &mut worker)
        .await
        .context("warm-up")?;

    // The measured run.
    let timeout = Duration::from_secs(args.timeout_secs);
    let processes = |worker: &Peer, client: &Peer| -> Rows {
        vec![
            (
                "graphile-worker (node)".to_owned(),
                vec![Counted::Own(worker.process.pid())],
            ),
            (
                "client (node)".to_owned(),
                vec![Counted::Own(client.process.pid())],
            ),
            cpu::postgres_row(&cluster),
        ]
    };
    let window = Window::open(&processes(&worker, &client));
    client.send("go")?;
    let done = client.expect("done ", timeout).await?;
    let submit_ms: f64 = done
        .parse()
        .with_context(|| format!("the client's phase duration {done:?}"))?;
    completions
        .wait(Phase::Run, args.jobs, timeout, &mut worker)
        .await?;
    let usage = window.close(&processes(&worker, &client));

    // Its CPU time read, the client writes its records and exits.
    let client_times = client.finish(&client_records)?;
    let enqueue = PhaseResult::from_latencies(
        Duration::from_secs_f64(submit_ms / 1e3),
        (client_times.values())
            .map(|&(send, ack)| Duration::from_secs_f64((ack - send).max(0.0) / 1e3))
            .collect(),
    );
    let jobs: Vec<JobTimes> = (client_times.iter())
        .map(|(id, &(send, _))| JobTimes {
            enqueued: send,
            ..completions.run.get(id).cloned().unwrap_or_default()
        })
        .collect();
    let lifecycle = Lifecycle::from_times(&jobs);

    Report {
        jobs: args.jobs,
        enqueue: &enqueue,
        enqueue_label: "enqueue (client: addJob → answer)",
        lifecycle: &lifecycle,
        latency_label: "enqueue → complete (send → committed)",
        start_events: "job:start events",
        usage: &usage,
    }
    .print();

    tokio::task::block_in_place(|| stop(worker.process, "graphile-worker"));
    Ok(())
}

/// `node` from PATH, recent enough for the scripts.
fn node() -> anyhow::Result<PathBuf> {
    let node = find_program("node", &[]).ok_or_else(|| {
        anyhow!("node not found on PATH: install Node.js {NODE_MAJOR} or later with npm")
    })?;
    let version = node_version(&node)?;
    let major: u32 = (version.trim_start_matches('v').split('.').next())
        .and_then(|major| major.parse().ok())
        .with_context(|| format!("{} --version printed {version:?}", node.display()))?;
    if major < NODE_MAJOR {
        bail!(
            "{} is Node.js {version}; graphile-worker's bench needs {NODE_MAJOR} or later",
            node.display()
        );
    }
    Ok(node)
}

fn node_version(node: &Path) -> anyhow::Result<String> {
    let output = std::process::Command::new(node)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", node.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Installs the Node project at `project` from its lock file (`npm ci`, output appended to
/// `log`), unless node_modules already holds what this very lock file installed.
async fn install(project: &Path, log: &Path) -> anyhow::Result<()> {
    let lock_path = project.join("package-lock.json");
    let lock = std::fs::read(&lock_path).with_context(|| {
        format!(
            "read {} (is --peer-dir the graphile-worker project of the source tree?)",
            lock_path.display()
        )
    })?;
    let stamp = project.join("node_modules").join(INSTALLED_STAMP);
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    let npm = find_program("npm", &[]).ok_or_else(|| {
        anyhow!("npm not found on PATH: install Node.js {NODE_MAJOR} or later with npm")
    })?;
    println!(
        "installing graphile-worker in {} (npm ci; output in {})",
        project.display(),
        log.display()
    );
    let mut npm_ci = tokio::process::Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(append(log)?)
        .stderr(append(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {} ci", npm.display()))?;
    let status = tokio::time::timeout(INSTALL_TIMEOUT, npm_ci.wait())
        .await
        .map_err(|_| anyhow!("npm ci did not finish within {INSTALL_TIMEOUT:?}"))?
        .context("wait for npm ci")?;
    if !status.success() {
        bail!(
            "npm ci in {} failed ({status}):\n{}",
            project.display(),
            tail(log, 20)
        );
    }
    std::fs::write(&stamp, &lock).with_context(|| format!("write {}", stamp.display()))
}

/// The installed graphile-worker's version, from its package.json.
fn installed_version(project: &Path) -> String {
    let path = project.join("node_modules/graphile-worker/package.json");
    std::fs::read(&path)
        .ok()
        .and_then(|text| serde_json::from_slice::<Value>(&text).ok())
        .and_then(|package| Some(package.get("version")?.as_str()?.to_owned()))
        .unwrap_or_else(|| "unknown".into())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Node script of the peer: killed when dropped ([`OrdoProcess`]), its stderr in
/// `<name>.log` of the run's directory, a line protocol over its stdin and stdout.
struct Peer {
    name: &'static str,
    process: OrdoProcess,
    log: PathBuf,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Peer {
    fn spawn(name: &'static str, spec: ProcessSpec, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let mut process = OrdoProcess::spawn(spec.log(&log).pipes())
            .with_context(|| format!("start the {name} (node)"))?;
        let (stdin, stdout) = process.take_pipes().context("the pipes of a node script")?;
        // std's pipes block: a thread reads them and hands each line over; the channel
        // closes when the script exits.
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name,
            process,
            log,
            stdin: Some(stdin),
            lines,
        })
    }

    /// Waits up to `timeout` for a line that starts with `prefix`; answers the rest of it.
    async fn expect(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => match line.strip_prefix(prefix) {
                    Some(rest) => return Ok(rest.to_owned()),
                    None => tracing::debug!(process = self.name, line, "ignored"),
                },
                Ok(None) => {
                    let status = self.process.wait(Duration::from_secs(1)).ok();
                    bail!(
                        "the {} exited ({}) before it printed {prefix:?}; its log {}:\n{}",
                        self.name,
                        status.map_or("still running".into(), |s| s.to_string()),
                        self.log.display(),
                        tail(&self.log, 20)
                    );
                }
                Err(_) => bail!(
                    "the {} did not print {prefix:?} within {timeout:?}; its log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                ),
            }
        }
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        writeln!(stdin, "{line}").with_context(|| format!("tell the {} {line:?}", self.name))
    }

    /// Closes the client's stdin, waits for it to write its records and exit, and reads
    /// them: (send, ack) in epoch ms by job id.
    fn finish(&mut self, records: &Path) -> anyhow::Result<HashMap<String, (f64, f64)>> {
        drop(self.stdin.take());
        let status = tokio::task::block_in_place(|| self.process.wait(STOP_TIMEOUT))
            .with_context(|| format!("the {} did not exit", self.name))?;
        if !status.success() {
            bail!(
                "the {} failed ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        let text = std::fs::read_to_string(records)
            .with_context(|| format!("read the {}'s records {}", self.name, records.display()))?;
        text.lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line)?;
                let number = |key| record.get(key).and_then(Value::as_f64);
                let id = record.get("id").and_then(Value::as_str);
                match (id, number("send"), number("ack")) {
                    (Some(id), Some(send), Some(ack)) => Ok((id.to_owned(), (send, ack))),
                    _ => bail!("no id, send and ack"),
                }
            })
            .collect::<anyhow::Result<_>>()
            .with_context(|| format!("parse {}", records.display()))
    }
}

/// The client's phases, told apart by the ids it puts in the payloads.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Warmup,
    Run,
}

impl Phase {
    fn of(id: &str) -> Option<Self> {
        if id.starts_with("warmup-") {
            Some(Self::Warmup)
        } else if id.starts_with("run-") {
            Some(Self::Run)
        } else {
            None
        }
    }
}

/// The worker's records, read as it appends them: one line per job whose completion was
/// committed.
struct Completions {
    reader: BufReader<File>,
    /// The end of a line still being written.
    partial: String,
    warmup: usize,
    /// The measured run's jobs by their id.
    run: HashMap<String, JobTimes>,
}

impl Completions {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        Ok(Self {
            reader: BufReader::new(file),
            partial: String::new(),
            warmup: 0,
            run: HashMap::new(),
        })
    }

    fn read_new(&mut self) -> anyhow::Result<()> {
        loop {
            let read = self.reader.read_line(&mut self.partial)?;
            if read == 0 || !self.partial.ends_with('\n') {
                return Ok(());
            }
            let line = std::mem::take(&mut self.partial);
            let (id, times) = parse_completion(&line)
                .with_context(|| format!("the worker's record {:?}", line.trim_end()))?;
            match Phase::of(&id) {
                Some(Phase::Warmup) => self.warmup += 1,
                Some(Phase::Run) => drop(self.run.insert(id, times)),
                None => bail!("the worker completed a job of no phase: {id:?}"),
            }
        }
    }

    fn completed(&self, phase: Phase) -> usize {
        match phase {
            Phase::Warmup => self.warmup,
            Phase::Run => self.run.len(),
        }
    }

    /// Waits until `expected` jobs of `phase` completed.
    async fn wait(
        &mut self,
        phase: Phase,
        expected: usize,
        timeout: Duration,
        worker: &mut Peer,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.read_new()?;
            let completed = self.completed(phase);
            if completed >= expected {
                return Ok(());
            }
            if let Some(status) = worker.process.exited() {
                bail!(
                    "graphile-worker exited ({status}) with {completed} of {expected} jobs \
                     completed; its log {}:\n{}",
                    worker.log.display(),
                    tail(&worker.log, 20)
                );
            }
            if started.elapsed() >= timeout {
                bail!(
                    "only {completed} of {expected} jobs completed within {} s after the last \
                     submit; see the log of graphile-worker in {}",
                    timeout.as_secs(),
                    worker.log.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `{"id", "start", "complete", "starts", "failures"}` of worker.js.
fn parse_completion(line: &str) -> anyhow::Result<(String, JobTimes)> {
    let record: Value = serde_json::from_str(line)?;
    let id = (record.get("id").and_then(Value::as_str)).context("no id")?;
    let count = |key| record.get(key).and_then(Value::as_i64).unwrap_or(0);
    Ok((
        id.to_owned(),
        JobTimes {
            // The client's send, joined in at the end.
            enqueued: f64::NAN,
            started: record.get("start").and_then(Value::as_f64),
            completed: record.get("complete").and_then(Value::as_f64),
            starts: count("starts"),
            failures: count("failures"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_completion;

    #[test]
    fn reads_the_worker_record() {
        let (id, times) = parse_completion(
            r#"{"id":"run-7","start":1700000000001.25,"starts":1,"failures":0,"complete":1700000000002.5}"#,
        )
        .unwrap();
        assert_eq!(id, "run-7");
        assert_eq!(times.started, Some(1700000000001.25));
        assert_eq!(times.completed, Some(1700000000002.5));
        assert_eq!((times.starts, times.failures), (1, 0));
        assert!(parse_completion(r#"{"start":1}"#).is_err());
    }
}

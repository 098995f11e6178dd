//! The platform of `ordo bench ingest`, run as users run it: `ordo serve ingest` and `ordo
//! serve projector --name clickhouse-logs`, each a process of this binary configured only by
//! its environment, on a private Redis (the tenant limits) and broker (`ordo::instances`, as
//! `bench queue` starts them) and the ClickHouse of `ORDO_CLICKHOUSE_URL` with the run's own
//! database. Neither role uses PostgreSQL. Every process is killed when the stack is dropped
//! (Ctrl-C included).

use crate::bench::cpu::{self, Counted, Rows};
use crate::bench::stop;
use anyhow::Context;
use ordo::instances::broker::Broker;
use ordo::instances::free_port;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo::instances::redis::PrivateRedis;
use ordo_clickhouse_store::ClickHouseConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a started role may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The projector the bench measures the storing with.
pub const SINK: &str = "clickhouse-logs";
const LOGS_TOPIC: &str = ordo_common::logs::DEFAULT_TOPIC;

pub struct Stack {
    pub ingest_url: String,
    ingest: OrdoProcess,
    /// The sink's process, or why there is none.
    pub sink: Result<OrdoProcess, String>,
    /// Dropped after the processes above (fields drop in order).
    broker: Broker,
    redis: PrivateRedis,
}

impl Stack {
    /// The private Redis and broker, the ingest role (at least `in_flight` requests at once, no
    /// tenant limit) and the sink; a sink that this build does not have is reported in
    /// [`Stack::sink`], not as an error.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        clickhouse: &ClickHouseConfig,
        in_flight: usize,
    ) -> anyhow::Result<Self> {
        let (redis, broker) = tokio::task::block_in_place(|| {
            let redis = PrivateRedis::start(free_port()?, dir, &log_path(dir, "redis"))
                .context("start the private Redis")?;
            let broker = Broker::start_on(free_port()?, Some(&log_path(dir, "broker")))
                .context("start the private broker")?;
            anyhow::Ok((redis, broker))
        })?;
        let port = free_port()?;
        let ingest_url = format!("http://127.0.0.1:{port}");
        let spec = role(binary, &["serve", "ingest"], dir, "ingest", &broker)
            .env("ORDO_REDIS_URL", redis.url())
            .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ORDO_INGEST_MAX_IN_FLIGHT", in_flight.max(32).to_string())
            // 0 lifts a limit: the bench measures the pipeline, not the tenant's quota.
            .env("ORDO_INGEST_TENANT_LINES_PER_SEC", "0")
            .env("ORDO_INGEST_TENANT_BYTES_PER_SEC", "0");
        let mut ingest = OrdoProcess::spawn(spec).context("start ordo serve ingest")?;
        ingest
            .wait_ok(&format!("{ingest_url}/readyz"), READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "ordo serve ingest did not come up (log: {})",
                    log_path(dir, "ingest").display()
                )
            })?;
        let sink = start_sink(binary, dir, clickhouse, &broker).await?;
        Ok(Self {
            ingest_url,
            ingest,
            sink,
            broker,
            redis,
        })
    }

    /// The processes whose CPU time is reported, by row of the table; ClickHouse is the
    /// process listening on `clickhouse_port`.
    pub fn processes(&self, clickhouse_port: Option<u16>) -> Rows {
        let own = |pid: Option<u32>| pid.map(Counted::Own).into_iter().collect::<Vec<_>>();
        let mut rows = vec![("ordo serve ingest".to_owned(), own(Some(self.ingest.pid())))];
        if let Ok(sink) = &self.sink {
            rows.push((
                format!("ordo serve projector {SINK}"),
                own(Some(sink.pid())),
            ));
        }
        rows.push(("broker (nisshi)".to_owned(), own(self.broker.pid().ok())));
        rows.push(("Redis".to_owned(), own(self.redis.pid())));
        let port = clickhouse_port.map_or_else(|| "?".to_owned(), |p| p.to_string());
        rows.push((
            format!("ClickHouse (:{port}, shared)"),
            own(clickhouse_port.and_then(cpu::listening_on)),
        ));
        rows.push((
            "client (this process)".to_owned(),
            own(Some(std::process::id())),
        ));
        rows
    }

    /// Whether the sink's process is still running (`None` without one).
    pub fn sink_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.sink.as_mut().ok()?.exited()
    }

    /// SIGTERM to each role, with a bounded wait.
    pub fn stop(self) {
        tokio::task::block_in_place(|| {
            stop(self.ingest, "ingest");
            if let Ok(sink) = self.sink {
                stop(sink, "projector");
            }
        });
    }
}

pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// A role of the platform on the private broker, its output in `{name}.log`.
fn role(binary: &Path, args: &[&str], dir: &Path, name: &str, broker: &Broker) -> ProcessSpec {
    ProcessSpec::new(binary, args)
        .clean_env()
        .log(&log_path(dir, name))
        .env("ORDO_LOG_FORMAT", "text")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .env("ORDO_KAFKA_BROKERS", broker.address())
        .env("ORDO_LOGS_TOPIC", LOGS_TOPIC)
}

/// `ordo serve projector --name clickhouse-logs` into the run's database, once it answers
/// its health check; `Err` says why there is none when it exits at start (a build without
/// that sink refuses the name).
async fn start_sink(
    binary: &Path,
    dir: &Path,
    clickhouse: &ClickHouseConfig,
    broker: &Broker,
) -> anyhow::Result<Result<OrdoProcess, String>> {
    let metrics_port = free_port()?;
    let mut spec = role(binary, &["serve", "projector"], dir, "projector", broker)
        .env("ORDO_PROJECTOR", SINK)
        .env("ORDO_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("ORDO_CLICKHOUSE_URL", &clickhouse.url)
        .env("ORDO_CLICKHOUSE_USER", &clickhouse.user)
        .env("ORDO_CLICKHOUSE_DATABASE", &clickhouse.database);
    if let Some(password) = &clickhouse.password {
        spec = spec.env("ORDO_CLICKHOUSE_PASSWORD", password);
    }
    let mut sink = OrdoProcess::spawn(spec).context("start ordo serve projector")?;
    let health = format!("http://127.0.0.1:{metrics_port}/healthz");
    match sink.wait_ok(&health, READY_TIMEOUT).await {
        Ok(()) => Ok(Ok(sink)),
        Err(e) => match sink.exited() {
            Some(status) => Ok(Err(format!(
                "`ordo serve projector --name {SINK}` exited at start ({status}): {}",
                first_error(&log_path(dir, "projector"))
            ))),
            None => Err(e.context(format!(
                "ordo serve projector --name {SINK} did not come up (log: {})",
                log_path(dir, "projector").display()
            ))),
        },
    }
}

/// The first line of a log that names an error, else its last line.
fn first_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = (lines.iter())
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(lines.last())
        .copied()
        .unwrap_or("no output");
    line.chars().take(300).collect()
}

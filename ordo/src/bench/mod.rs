//! `ordo bench …`: benchmarks that print numbers. Each one runs against real services and
//! measures Ordo beside the raw limit of the storage underneath, in the same run.

mod chaos;
mod cpu;
mod e2e;
mod ingest;
mod lifecycle;
mod project;
mod queue;
mod read_back;
mod relay;
mod scratch;
mod submit;

use crate::cli::{BenchCommand, GlobalArgs};
use ordo::instances::process::OrdoProcess;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(args: &GlobalArgs, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Submit(bench) if bench.read_back => read_back::run(args, &bench).await,
        BenchCommand::Submit(bench) => submit::run(args, bench).await,
        BenchCommand::Relay(bench) => relay::run(args, bench).await,
        BenchCommand::Project(bench) => project::run(args, bench).await,
        BenchCommand::E2e(bench) => e2e::run(args, bench).await,
        BenchCommand::Chaos(bench) => chaos::run(args, bench).await,
        BenchCommand::Queue(bench) => queue::run(args, bench).await,
        BenchCommand::Ingest(bench) => ingest::run(args, bench).await,
    }
}

/// How long a process started by a benchmark may take to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// SIGTERM and a bounded wait; a process that does not stop is killed.
pub fn stop(mut process: OrdoProcess, name: &str) {
    if let Err(e) = process.terminate(STOP_TIMEOUT) {
        tracing::warn!(process = name, error = %format!("{e:#}"), "did not stop cleanly");
    }
}

/// The queue every benchmark job goes to.
pub const QUEUE: &str = "bench";

/// Submits job `i` of `job_type` to [`QUEUE`] over the API at `base_url`, its payload carrying
/// `padding`; answers the 201's body (`job_id`, `status`, `sequence`), any other answer is
/// an error.
pub async fn submit_job(
    client: &reqwest::Client,
    base_url: &str,
    job_type: &str,
    padding: &str,
    i: usize,
) -> anyhow::Result<serde_json::Value> {
    let response = client
        .post(format!("{base_url}/api/v1/jobs"))
        .json(&serde_json::json!({
            "type": job_type,
            "queue": QUEUE,
            "payload": {"n": i, "data": padding},
        }))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        anyhow::bail!(
            "submit answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(response.json().await?)
}

/// Throughput and latency distribution of one measured phase.
pub struct PhaseResult {
    pub ops: usize,
    pub elapsed: Duration,
    latencies: Vec<Duration>,
}

impl PhaseResult {
    /// Waits for the phase's tasks, each answering the latencies it measured; the first
    /// error is the phase's.
    async fn collect(
        ops: usize,
        started: Instant,
        mut tasks: tokio::task::JoinSet<anyhow::Result<Vec<Duration>>>,
    ) -> anyhow::Result<Self> {
        let mut latencies = Vec::with_capacity(ops);
        while let Some(joined) = tasks.join_next().await {
            latencies.extend(joined??);
        }
        Ok(Self::from_latencies(started.elapsed(), latencies))
    }

    /// A phase of `latencies.len()` calls that took `elapsed`, timed elsewhere (a peer
    /// system's own client).
    pub fn from_latencies(elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self {
            ops: latencies.len(),
            elapsed,
            latencies,
        }
    }

    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank].as_secs_f64() * 1_000.0
    }

    pub fn line(&self, label: &str, unit: &str) -> String {
        format!(
            "{label:<46} {:>9.0} {unit}/s   p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms",
            self.per_second(),
            self.percentile_ms(50.0),
            self.percentile_ms(95.0),
            self.percentile_ms(99.0),
        )
    }
}

/// Runs `op(i)` for i in 0..ops with `concurrency` tasks in flight and times every call.
/// The first error stops the phase and is returned.
pub async fn measure<F, Fut>(ops: usize, concurrency: usize, op: F) -> anyhow::Result<PhaseResult>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
        });
    }
    PhaseResult::collect(ops, started, tasks).await
}

/// Starts `op(i)` for i in 0..ops at a steady `rate` per second (each in its own task, so a
/// slow call does not delay the next start) and times every call from its scheduled start.
pub async fn measure_paced<F, Fut>(rate: u32, ops: usize, op: F) -> anyhow::Result<PhaseResult>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let period = Duration::from_secs(1) / rate.max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..ops {
        let due = started + period * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let call = op(i);
        tasks.spawn(async move {
            call.await?;
            Ok::<_, anyhow::Error>(vec![due.elapsed()])
        });
    }
    PhaseResult::collect(ops, started, tasks).await
}

/// Cumulative (upper bound, count) pairs of a histogram.
pub fn histogram_buckets(histogram: &prometheus::Histogram) -> Vec<(f64, u64)> {
    use prometheus::core::Collector;
    cumulative(histogram.collect()[0].get_metric()[0].get_histogram())
}

fn cumulative(histogram: &prometheus::proto::Histogram) -> Vec<(f64, u64)> {
    histogram
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect()
}

/// The q-quantile of the histogram named `name` in `registry` (all its series together).
pub fn registry_quantile(registry: &prometheus::Registry, name: &str, q: f64) -> Option<f64> {
    Buckets::gather(registry, name, &[]).quantile(q)
}

/// A histogram of a registry as it stands, summed over the series whose labels include all
/// of the given ones; subtracting an earlier snapshot leaves what one phase observed.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    cumulative: Vec<(f64, u64)>,
    count: u64,
}

impl Buckets {
    pub fn gather(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> Self {
        let mut sum = Self::default();
        for metric in series(registry, name, labels) {
            let histogram = metric.get_histogram();
            let buckets = cumulative(histogram);
            if sum.cumulative.is_empty() {
                sum.cumulative = buckets;
            } else {
                for (total, (_, count)) in sum.cumulative.iter_mut().zip(buckets) {
                    total.1 += count;
                }
            }
            sum.count += histogram.get_sample_count();
        }
        sum
    }

    /// What was observed after `earlier` was gathered.
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |i: usize| earlier.cumulative.get(i).map_or(0, |&(_, count)| count);
        Self {
            cumulative: (self.cumulative.iter().enumerate())
                .map(|(i, &(bound, count))| (bound, count - before(i)))
                .collect(),
            count: self.count - earlier.count,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (self.count > 0).then(|| quantile(&self.cumulative, self.count, q))
    }
}

/// The sum of the counters named `name` in `registry` whose labels include all of `labels`.
pub fn registry_counter(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    series(registry, name, labels)
        .iter()
        .map(|metric| metric.get_counter().get_value())
        .sum()
}

fn series(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<prometheus::proto::Metric> {
    let Some(mut family) = registry.gather().into_iter().find(|f| f.name() == name) else {
        return Vec::new();
    };
    family
        .take_metric()
        .into_iter()
        .filter(|metric| {
            labels.iter().all(|&(name, value)| {
                metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == name && pair.value() == value)
            })
        })
        .collect()
}

/// The q-quantile of a cumulative histogram, interpolated linearly inside its bucket as
/// Prometheus' `histogram_quantile` does.
pub fn quantile(buckets: &[(f64, u64)], total: u64, q: f64) -> f64 {
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            let in_bucket = (count - lower.1).max(1) as f64;
            return lower.0 + (bound - lower.0) * ((rank - lower.1 as f64) / in_bucket);
        }
        lower = (bound, count);
    }
    lower.0
}

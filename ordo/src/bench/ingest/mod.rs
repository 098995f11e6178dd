//! `ordo bench ingest`: log ingestion end to end, as services ship logs. This process sends
//! requests of `--batch` realistic lines ([`lines`]) by `--protocol`, encoded before the run
//! ([`encode`]), from `--concurrency` senders over keep-alive HTTP to `ordo serve ingest`,
//! which answers 2xx once Kafka has the lines; `ordo serve projector --name clickhouse-logs`
//! stores them in ClickHouse's `logs` table ([`stack`]), in a database of the run's own
//! ([`store`]), dropped at the end.
//!
//! It prints lines/s acknowledged; lines/s stored (the table's `count()`, polled) and ack →
//! stored latency (the first line of each request, looked up by its time until it shows);
//! how much smaller the table is than the lines' content and than the requests as sent
//! (`system.parts`, as stored and after `OPTIMIZE … FINAL`); the raw limit, the same rows
//! INSERTed straight into the same table with the `clickhouse` crate; and the CPU seconds of
//! every process ([`cpu`](super::cpu)). Without a working sink (a build that lacks it, one
//! that stores none of the warm-up's lines within a minute, or one that stops storing) it
//! says why and measures the rest, the compression on the raw INSERT's rows.

mod encode;
mod lines;
mod stack;
mod store;

use super::cpu::{self, Window, Work};
use super::PhaseResult;
use crate::cli::{GlobalArgs, IngestBenchArgs, LogProtocol};
use anyhow::{bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use encode::Template;
use stack::{Stack, SINK};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Parts, Store};

/// Lines sent without `--lines` or `--seconds`.
const DEFAULT_LINES: usize = 1_000_000;
/// Distinct requests encoded before the run; larger runs send them again, later.
const POOL_REQUESTS: usize = 128;
/// Sent and stored before measuring: the sink's consumer group forms, connections open.
const WARMUP_REQUESTS: usize = 2;
/// How long the warm-up's lines may take to show in ClickHouse before the bench decides
/// that the sink stores nothing.
const SINK_WAIT: Duration = Duration::from_secs(60);
/// How often ClickHouse is asked what it holds: the resolution of ack → stored.
const POLL: Duration = Duration::from_millis(200);
/// Stored lines not growing this long while some are missing: the sink is stuck.
const STALL: Duration = Duration::from_secs(30);
/// Most sampled lines looked up per poll (the oldest).
const LOOKUP_MAX: usize = 1_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The raw limit: rows per INSERT, INSERTs at once, and the most rows it inserts.
const RAW_BATCH: usize = 20_000;
const RAW_CONCURRENCY: usize = 2;
const RAW_MAX_LINES: usize = 1_000_000;
/// Columns named in the breakdown of the bytes on disk.
const COLUMNS_SHOWN: usize = 6;

pub async fn run(global: &GlobalArgs, args: IngestBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&args.batch),
        "--batch must be 1 to 10000"
    );
    anyhow::ensure!(
        (1..=1_000).contains(&args.concurrency),
        "--concurrency must be 1 to 1000"
    );
    anyhow::ensure!(args.lines != Some(0), "--lines must be at least 1");
    anyhow::ensure!(args.seconds != Some(0), "--seconds must be at least 1");
    anyhow::ensure!(args.rate != Some(0), "--rate must be at least 1");
    let started = Utc::now();
    let dir = std::env::temp_dir().join(format!(
        "ordo-bench-ingest-{}-{}",
        started.format("%Y%m%dT%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create the run's directory {}", dir.display()))?;
    let clickhouse = ordo_clickhouse_store::ClickHouseConfig {
        database: format!(
            "ordo_bench_ingest_{}_{}",
            started.format("%Y%m%d%H%M%S"),
            std::process::id()
        ),
        ..global.clickhouse_config()?
    };
    // Ctrl-C or SIGTERM drops the bench and with it the stack: every process it started is
    // killed. The database goes however the run ended.
    let result = tokio::select! {
        result = bench(&args, &dir, clickhouse.clone()) => result,
        _ = crate::serve::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = Store::drop_database(&clickhouse).await {
        eprintln!(
            "could not drop the run's ClickHouse database {}: {e:#}",
            clickhouse.database
        );
    }
    result
}

/// What is sent: a number of requests, or requests for a time.
#[derive(Debug, Clone, Copy)]
enum Load {
    Requests(usize),
    For(Duration),
}

impl Load {
    fn of(args: &IngestBenchArgs) -> Self {
        match (args.seconds, args.lines) {
            (Some(seconds), _) => Self::For(Duration::from_secs(seconds)),
            (None, lines) => Self::Requests(lines.unwrap_or(DEFAULT_LINES).div_ceil(args.batch)),
        }
    }

    /// Whether request `n` of the phase (from 0) is to be sent.
    fn sends(self, n: usize, started: Instant) -> bool {
        match self {
            Self::Requests(requests) => n < requests,
            Self::For(duration) => started.elapsed() < duration,
        }
    }
}

async fn bench(
    args: &IngestBenchArgs,
    dir: &Path,
    clickhouse: ordo_clickhouse_store::ClickHouseConfig,
) -> anyhow::Result<()> {
    let load = Load::of(args);
    let requests = match load {
        Load::Requests(requests) => requests + WARMUP_REQUESTS,
        Load::For(_) => usize::MAX,
    };
    let pool = Arc::new(Pool::new(
        args.protocol,
        requests.min(POOL_REQUESTS),
        args.batch,
    ));
    let store = Arc::new(Store::create(clickhouse).await?);
    let binary = std::env::current_exe().context("find this executable")?;
    let mut stack = Stack::start(&binary, dir, &store.config, args.concurrency).await?;
    let what = match load {
        Load::Requests(requests) => format!("{} lines", requests * args.batch),
        Load::For(duration) => format!("for {} s", duration.as_secs()),
    };
    let pace = match args.rate {
        Some(rate) => format!(" at {rate} lines/s"),
        None => String::new(),
    };
    println!(
        "ordo bench ingest: {what}{pace} by {} in requests of {} lines ({} bytes of content \
         per line and {} bytes per request as sent on average), {} sender(s) over keep-alive \
         HTTP",
        args.protocol.describe(),
        args.batch,
        pool.templates.iter().map(|t| t.raw_bytes).sum::<usize>()
            / (pool.templates.len() * args.batch),
        pool.templates.iter().map(|t| t.sent_bytes).sum::<usize>() / pool.templates.len(),
        args.concurrency,
    );
    println!(
        "platform: `ordo serve ingest` and `ordo serve projector --name {SINK}`, each a process, \
         on a private Redis and broker; ClickHouse {} (database {}); logs in {}",
        store.config.url,
        store.config.database,
        dir.display()
    );
    let sender = Arc::new(Sender::new(
        &stack.ingest_url,
        args.protocol,
        pool.clone(),
        args.concurrency,
    )?);

    // Warm-up: through the whole pipeline once, which tells whether the sink stores.
    let mut warmed = Sent::default();
    for i in 0..WARMUP_REQUESTS {
        warmed.add(&sender.send(i, None).await?);
    }
    let sink = match &stack.sink {
        Ok(_) => wait_count(&store, warmed.lines, SINK_WAIT)
            .await
            .map_err(|e| format!("{e:#}")),
        Err(reason) => Err(format!("the {SINK} sink did not start: {reason}")),
    };

    // The measured run.
    let clickhouse_port = reqwest::Url::parse(&store.config.url)
        .ok()
        .and_then(|url| url.port_or_known_default());
    let processes = stack.processes(clickhouse_port);
    let window = Window::open(&processes);
    let started = Instant::now();
    let watch = sink.map(|()| Watch::start(store.clone(), warmed.lines));
    // Request n of a paced run is due n periods after the start.
    let period = (args.rate).map(|rate| Duration::from_secs_f64(args.batch as f64 / rate as f64));
    let (requests, sent) =
        send_load(&sender, load, period, args.concurrency, watch.as_ref().ok()).await?;
    let stored = match &watch {
        Ok(watch) => {
            let deadline = Instant::now() + Duration::from_secs(args.store_timeout_secs);
            (watch.wait(sent.lines, started, deadline, &mut stack).await)
                .map_err(|e| format!("{e:#}"))
        }
        Err(reason) => Err(reason.clone()),
    };
    let usage = window.close(&processes);
    stack.stop();

    let compression = match &stored {
        Ok(_) => Some(Compression::measure(&store, warmed.plus(&sent), args.protocol).await?),
        // Whatever a failing sink stored goes: the raw INSERT's rows stand in.
        Err(_) => {
            store.truncate().await?;
            None
        }
    };
    let raw_requests = requests.ops.min(RAW_MAX_LINES.div_ceil(args.batch));
    let raw = raw_inserts(&store, &pool, WARMUP_REQUESTS + requests.ops, raw_requests).await?;
    let compression = match compression {
        Some(compression) => compression,
        None => Compression::measure(&store, raw.sent, args.protocol).await?,
    };

    println!("load average at start: {}", usage.load_start);
    println!(
        "{}",
        requests.line("requests (client view: send → 2xx)", "requests")
    );
    println!(
        "{:<46} {:>9.0} lines/s ({} lines in {:.2} s)",
        "acknowledged (2xx: Kafka has the lines)",
        sent.lines as f64 / requests.elapsed.as_secs_f64(),
        sent.lines,
        requests.elapsed.as_secs_f64(),
    );
    match &stored {
        Ok(stored) => stored.print(&sent),
        Err(reason) => println!("stored: not measured: {reason}"),
    }
    compression.print(stored.is_ok());
    let ratio = match &stored {
        Ok(stored) => format!(
            "; stored/raw {:.2}",
            stored.per_second(&sent) / raw.per_second()
        ),
        Err(_) => String::new(),
    };
    println!(
        "{:<46} {:>9.0} rows/s ({} rows in {:.2} s; the same rows straight into logs with the \
         clickhouse crate, {RAW_BATCH} per INSERT, {RAW_CONCURRENCY} at once){ratio}",
        "raw INSERT limit",
        raw.per_second(),
        raw.sent.lines,
        raw.elapsed.as_secs_f64(),
    );
    let span = if stored.is_ok() {
        "from the first request until every line was visible in ClickHouse"
    } else {
        "from the first request until the last was acknowledged"
    };
    let work = Work {
        count: sent.lines,
        per: 1_000_000,
        unit: "lines",
    };
    cpu::print_cpu(&usage, span, work);
    println!("load average at end:   {}", usage.load_end);
    Ok(())
}

/// The requests of the run, encoded once ([`POOL_REQUESTS`] at most), and how many whole
/// seconds later each was last sent.
struct Pool {
    templates: Vec<Template>,
    shifts: Vec<AtomicI64>,
    base: DateTime<Utc>,
}

impl Pool {
    fn new(protocol: LogProtocol, requests: usize, batch: usize) -> Self {
        let base = Utc::now();
        // Every line of the pool a different time within one second, so that moving a
        // request by whole seconds never gives two lines the same time.
        let spacing = TimeDelta::nanoseconds(1_000_000_000 / (requests * batch) as i64);
        let templates = (0..requests)
            .map(|i| Template::new(protocol, lines::request(i, batch, base, spacing)))
            .collect();
        Self {
            templates,
            shifts: (0..requests).map(|_| AtomicI64::new(-1)).collect(),
            base,
        }
    }

    /// The template of request `i` (its index) and how many whole seconds later than
    /// generated its lines go: the seconds since then (lines are written just before they are
    /// shipped), and more than at the template's previous send, so no two sends share a time.
    fn next(&self, i: usize) -> (usize, i64) {
        let t = i % self.templates.len();
        let now = (Utc::now() - self.base).num_seconds();
        let previous = self.shifts[t]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some((last + 1).max(now))
            })
            .expect("the update always answers a value");
        (t, (previous + 1).max(now))
    }
}

/// Posts requests of the pool to the ingest role.
struct Sender {
    client: reqwest::Client,
    url: String,
    protocol: LogProtocol,
    pool: Arc<Pool>,
}

/// What a phase (or one request) sent and had acknowledged: lines, their content
/// ([`lines::raw_size`]) and the bodies' bytes as sent.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    lines: usize,
    raw_bytes: usize,
    sent_bytes: usize,
}

impl Sent {
    fn of(template: &Template) -> Self {
        Self {
            lines: template.lines.len(),
            raw_bytes: template.raw_bytes,
            sent_bytes: template.sent_bytes,
        }
    }

    fn add(&mut self, other: &Sent) {
        *self = self.plus(other);
    }

    fn plus(&self, other: &Sent) -> Self {
        Self {
            lines: self.lines + other.lines,
            raw_bytes: self.raw_bytes + other.raw_bytes,
            sent_bytes: self.sent_bytes + other.sent_bytes,
        }
    }
}

impl Sender {
    fn new(
        base_url: &str,
        protocol: LogProtocol,
        pool: Arc<Pool>,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            url: format!("{base_url}{}", protocol.path()),
            protocol,
            pool,
        })
    }

    /// Sends request `i`; any answer but 2xx (or a bulk answer with failed items) is an
    /// error. Its first line's time and the acknowledgement go to `watch`.
    async fn send(&self, i: usize, watch: Option<&Watch>) -> anyhow::Result<Sent> {
        let (t, shift) = self.pool.next(i);
        let template = &self.pool.templates[t];
        let body = template.body(shift);
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, self.protocol.content_type())
            .header(ordo_protocol::tenant::TENANT_HEADER, lines::TENANT)
            .body(body)
            .send()
            .await
            .with_context(|| format!("request {i} to {}", self.url))?;
        let status = response.status();
        let answer = response.bytes().await?;
        let text = || String::from_utf8_lossy(&answer[..answer.len().min(500)]).into_owned();
        if !status.is_success() {
            bail!("request {i} to {} answered {status}: {}", self.url, text());
        }
        if self.protocol == LogProtocol::Bulk && !contains(&answer, b"\"errors\":false") {
            bail!(
                "request {i}: the bulk answer reports failed items: {}",
                text()
            );
        }
        if let Some(watch) = watch {
            watch.acknowledged(template.sample_nanos(shift));
        }
        Ok(Sent::of(template))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Sends `load` from `concurrency` senders, each one request after another, request n not
/// before n `period`s from the start when paced; times every request (send → 2xx). The
/// first error stops the phase.
async fn send_load(
    sender: &Arc<Sender>,
    load: Load,
    period: Option<Duration>,
    concurrency: usize,
    watch: Option<&Arc<Watch>>,
) -> anyhow::Result<(PhaseResult, Sent)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (sender, next, watch) = (sender.clone(), next.clone(), watch.cloned());
        tasks.spawn(async move {
            let (mut latencies, mut sent) = (Vec::new(), Sent::default());
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if let Some(period) = period {
                    tokio::time::sleep_until((started + period * n as u32).into()).await;
                }
                if !load.sends(n, started) {
                    return Ok::<_, anyhow::Error>((latencies, sent));
                }
                let t = Instant::now();
                sent.add(&sender.send(WARMUP_REQUESTS + n, watch.as_deref()).await?);
                latencies.push(t.elapsed());
            }
        });
    }
    let (mut latencies, mut sent) = (Vec::new(), Sent::default());
    while let Some(joined) = tasks.join_next().await {
        let (task_latencies, task_sent) = joined??;
        latencies.extend(task_latencies);
        sent.add(&task_sent);
    }
    Ok((
        PhaseResult::from_latencies(started.elapsed(), latencies),
        sent,
    ))
}

/// Waits until `logs` holds `lines` lines (the warm-up's).
async fn wait_count(store: &Store, lines: usize, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let count = store.count().await?;
        if count >= lines as u64 {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "the {SINK} sink runs but stored {count} of the warm-up's {lines} lines within \
                 {} s (see projector.log)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Watches the lines arrive in ClickHouse during the measured run: every [`POLL`], the
/// table's `count()` and which of the acknowledged sampled lines are visible.
struct Watch {
    store: Arc<Store>,
    state: Mutex<Seen>,
    /// Lines in the table before the run (the warm-up's).
    before: usize,
    stop: tokio_util::sync::CancellationToken,
}

struct Seen {
    /// Sampled lines acknowledged and not yet seen: their time, their acknowledgement.
    pending: Vec<(i64, Instant)>,
    /// Ack → visible of each sampled line seen.
    latencies: Vec<Duration>,
    count: u64,
    grew_at: Instant,
    /// The lines expected once sending is over, and when the count first reached them.
    expected: Option<u64>,
    complete_at: Option<Instant>,
    error: Option<String>,
}

/// What the sink stored of the measured run.
struct Stored {
    /// First request → the poll that saw the last line.
    elapsed: Duration,
    /// Lines in the table beyond the expected (at-least-once delivery may repeat some).
    extra: u64,
    /// Lines not yet visible when the last request was acknowledged.
    behind_at_last_ack: u64,
    latencies: PhaseResult,
}

impl Watch {
    fn start(store: Arc<Store>, before: usize) -> Arc<Self> {
        let watch = Arc::new(Self {
            store,
            state: Mutex::new(Seen {
                pending: Vec::new(),
                latencies: Vec::new(),
                count: 0,
                grew_at: Instant::now(),
                expected: None,
                complete_at: None,
                error: None,
            }),
            before,
            stop: tokio_util::sync::CancellationToken::new(),
        });
        let polling = watch.clone();
        tokio::spawn(async move {
            let stop = polling.stop.clone();
            tokio::select! {
                _ = polling.poll() => {}
                _ = stop.cancelled() => {}
            }
        });
        watch
    }

    fn acknowledged(&self, nanos: i64) {
        self.seen().pending.push((nanos, Instant::now()));
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls until stopped; an error ends it, recorded for [`Watch::wait`].
    async fn poll(&self) {
        let store = &self.store;
        loop {
            tokio::time::sleep(POLL).await;
            let oldest: Vec<i64> = (self.seen().pending.iter())
                .take(LOOKUP_MAX)
                .map(|&(nanos, _)| nanos)
                .collect();
            let polled = async {
                Ok::<_, anyhow::Error>((
                    store.count().await?,
                    store.visible(lines::TENANT, &oldest).await?,
                ))
            };
            let (count, visible) = match polled.await {
                Ok(answer) => answer,
                Err(e) => {
                    self.seen().error = Some(format!("{e:#}"));
                    return;
                }
            };
            let now = Instant::now();
            let mut seen = self.seen();
            if count > seen.count {
                seen.grew_at = now;
            }
            seen.count = count;
            if seen.expected.is_some_and(|expected| count >= expected) {
                seen.complete_at.get_or_insert(now);
            }
            let Seen {
                pending, latencies, ..
            } = &mut *seen;
            pending.retain(|&(nanos, acked)| {
                let found = visible.contains(&nanos);
                if found {
                    latencies.push(now - acked);
                }
                !found
            });
        }
    }

    /// After the last acknowledgement of `sent` lines: waits until every line is in the
    /// table and every sampled line was seen, failing when the count stops growing for
    /// [`STALL`], the sink's process exits, or `deadline` passes.
    async fn wait(
        &self,
        sent: usize,
        started: Instant,
        deadline: Instant,
        stack: &mut Stack,
    ) -> anyhow::Result<Stored> {
        let expected = (self.before + sent) as u64;
        self.seen().expected = Some(expected);
        let behind_at_last_ack = expected.saturating_sub(self.store.count().await?);
        let result = loop {
            {
                let mut seen = self.seen();
                if let Some(error) = seen.error.take() {
                    break Err(anyhow::anyhow!("watching ClickHouse failed: {error}"));
                }
                if let (Some(complete_at), true) = (seen.complete_at, seen.pending.is_empty()) {
                    break Ok(Stored {
                        elapsed: complete_at - started,
                        extra: seen.count.saturating_sub(expected),
                        behind_at_last_ack,
                        latencies: PhaseResult::from_latencies(
                            complete_at - started,
                            std::mem::take(&mut seen.latencies),
                        ),
                    });
                }
                let stalled = seen.grew_at.elapsed() >= STALL;
                if stalled || Instant::now() >= deadline {
                    let why = if stalled {
                        format!("no new line for {} s", STALL.as_secs())
                    } else {
                        "the store timeout passed".to_owned()
                    };
                    break Err(anyhow::anyhow!(
                        "ClickHouse holds {} of the {expected} lines sent ({why}; see projector.log)",
                        seen.count
                    ));
                }
            }
            if let Some(status) = stack.sink_exited() {
                break Err(anyhow::anyhow!(
                    "the {SINK} projector exited ({status}); see projector.log"
                ));
            }
            tokio::time::sleep(POLL / 4).await;
        };
        self.stop.cancel();
        result
    }
}

impl Stored {
    fn per_second(&self, sent: &Sent) -> f64 {
        sent.lines as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, sent: &Sent) {
        let extra = match self.extra {
            0 => String::new(),
            n => format!("; {n} more lines than sent: delivered twice"),
        };
        println!(
            "{:<46} {:>9.0} lines/s ({} lines, first request → last line visible {:.2} s; \
             {} not yet visible at the last acknowledgement{extra})",
            "stored (visible in ClickHouse's logs table)",
            self.per_second(sent),
            sent.lines,
            self.elapsed.as_secs_f64(),
            self.behind_at_last_ack,
        );
        let ms = |p: f64| self.latencies.percentile_ms(p);
        println!(
            "{:<46} p50 {:>7.0} ms   p99 {:>7.0} ms   ({} sampled lines, the first of each \
             request; ClickHouse polled every {} ms)",
            "ack → stored",
            ms(50.0),
            ms(99.0),
            self.latencies.ops,
            POLL.as_millis(),
        );
    }
}

/// Bytes on disk of the table against the content of its lines and their requests as sent.
struct Compression {
    lines: Sent,
    protocol: LogProtocol,
    stored: Parts,
    merged: Parts,
    /// The largest columns once merged: name, bytes on disk.
    columns: Vec<(String, u64)>,
}

impl Compression {
    /// The table's parts as they are, then after merging them all.
    async fn measure(store: &Store, lines: Sent, protocol: LogProtocol) -> anyhow::Result<Self> {
        let stored = store.parts().await?;
        store.optimize().await?;
        let merged = store.parts().await?;
        let columns = store.largest_columns(COLUMNS_SHOWN).await?;
        Ok(Self {
            lines,
            protocol,
            stored,
            merged,
            columns,
        })
    }

    fn print(&self, by_sink: bool) {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        let whose = if by_sink {
            "as stored"
        } else {
            "raw INSERT rows"
        };
        let raw = self.lines.raw_bytes as u64;
        let ratio = |of: u64, bytes: u64| of as f64 / bytes.max(1) as f64;
        for (label, parts) in [
            (format!("on disk, {whose}"), self.stored),
            ("on disk, merged (OPTIMIZE FINAL)".to_owned(), self.merged),
        ] {
            println!(
                "{label:<46} {:>9.1}× smaller than the raw lines ({:.1} MiB of column data for \
                 {:.1} MiB of content, {:.1} MiB as sent by {}: {:.1}×; {:.1} MiB with \
                 indexes and marks: {:.1}×; ClickHouse's own ratio {:.1}×; {} rows in {} parts)",
                ratio(raw, parts.compressed),
                mib(parts.compressed),
                mib(raw),
                mib(self.lines.sent_bytes as u64),
                self.protocol.describe(),
                ratio(self.lines.sent_bytes as u64, parts.compressed),
                mib(parts.on_disk),
                ratio(raw, parts.on_disk),
                ratio(parts.uncompressed, parts.compressed),
                parts.rows,
                parts.parts,
            );
        }
        let columns: Vec<String> = (self.columns.iter())
            .map(|(name, bytes)| format!("{name} {:.2} MiB", mib(*bytes)))
            .collect();
        println!("  largest columns, merged: {}", columns.join(", "));
    }
}

/// The raw limit's run: the lines it inserted (and their requests', as the ingest role would
/// have been sent them).
struct Raw {
    sent: Sent,
    elapsed: Duration,
}

impl Raw {
    fn per_second(&self) -> f64 {
        self.sent.lines as f64 / self.elapsed.as_secs_f64()
    }
}

/// The lines of `requests` requests of the pool (from request `first`, so their times are
/// new), as the sink would store them, INSERTed straight into `logs` in batches of
/// [`RAW_BATCH`], [`RAW_CONCURRENCY`] at once.
async fn raw_inserts(
    store: &Arc<Store>,
    pool: &Arc<Pool>,
    first: usize,
    requests: usize,
) -> anyhow::Result<Raw> {
    let shifted: Arc<Vec<(usize, i64)>> =
        Arc::new((first..first + requests).map(|i| pool.next(i)).collect());
    let batch = pool.templates[0].lines.len();
    let rows = requests * batch;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RAW_CONCURRENCY {
        let (store, pool, shifted, next) =
            (store.clone(), pool.clone(), shifted.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let from = next.fetch_add(1, Ordering::Relaxed) * RAW_BATCH;
                if from >= rows {
                    return Ok::<_, anyhow::Error>(());
                }
                let received_at = Utc::now();
                let batch_rows: Vec<_> = (from..(from + RAW_BATCH).min(rows))
                    .map(|k| {
                        let (t, shift) = shifted[k / batch];
                        let line = &pool.templates[t].lines[k % batch];
                        lines::row(line, TimeDelta::seconds(shift), received_at)
                    })
                    .collect();
                store.insert(&batch_rows).await?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    let mut sent = Sent::default();
    for &(t, _) in shifted.iter() {
        sent.add(&Sent::of(&pool.templates[t]));
    }
    Ok(Raw { sent, elapsed })
}

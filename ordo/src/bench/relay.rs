//! `ordo bench relay`: outbox rows inserted into a scratch database, streamed by an in-process
//! relay to a fresh topic. Three phases: throughput (rows inserted as fast as PostgreSQL takes
//! them, in transactions of `--batch`; events/s from the first insert to the last Kafka ack),
//! backlog (the same number of rows inserted while the relay is stopped, then drained: the
//! relay's own ceiling, without inserts competing for the CPU) and latency (one row per
//! transaction at a steady `--rate`; commit→ack percentiles from the relay's own histogram,
//! the one `/metrics` exports).

use super::{histogram_buckets, quantile};
use crate::cli::{GlobalArgs, RelayBenchArgs};
use anyhow::{bail, Context};
use ordo_common::db::{self, DbConfig};
use ordo_outbox_relay::{RelayConfig, RelayMetrics};
use prometheus::Registry;
use serde_json::json;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SCRATCH_DB: &str = "ordo_bench_relay";
const WARMUP_EVENTS: usize = 1_000;
const INSERTERS: usize = 4;
/// Longest wait for the relay to catch up after a phase.
const CATCH_UP: Duration = Duration::from_secs(120);

pub async fn run(args: &GlobalArgs, bench: RelayBenchArgs) -> anyhow::Result<()> {
    if bench.events == 0 || bench.batch == 0 || bench.rate == 0 || bench.seconds == 0 {
        bail!("--events, --batch, --rate and --seconds must be at least 1");
    }
    let scratch_url = db::scratch_database(&args.database_url, SCRATCH_DB)
        .await
        .with_context(|| format!("cannot create a scratch database on {}", args.database_url))?;
    let pool = db::connect(&DbConfig {
        max_connections: 16,
        ..DbConfig::new(&scratch_url)
    })?;
    let run_id = Uuid::new_v4().simple().to_string();
    let slot = format!("ordo_bench_{}", &run_id[..12]);
    let config = RelayConfig {
        slot: slot.clone(),
        topic_template: format!("bench-{run_id}.outbox.event.${{routedByValue}}"),
        ..RelayConfig::new(&scratch_url, &args.kafka_brokers)
    };
    println!(
        "ordo bench relay: {} events in transactions of {}, then {} events/s for {} s; brokers {}",
        bench.events, bench.batch, bench.rate, bench.seconds, args.kafka_brokers
    );
    let metrics = RelayMetrics::register(&Registry::new())?;
    let mut relay = Relay::start(&config, &pool, &metrics);

    wait_streaming(&pool, &slot).await?;
    let mut inserted = 0;
    inserted += insert_batched(&pool, WARMUP_EVENTS, bench.batch).await?;
    wait_relayed(&metrics, inserted).await?;

    let started = Instant::now();
    inserted += insert_batched(&pool, bench.events, bench.batch).await?;
    let insert_elapsed = started.elapsed();
    wait_relayed(&metrics, inserted).await?;
    let elapsed = started.elapsed();
    println!(
        "throughput   {:>9.0} events/s insert→Kafka ack ({} events in {:.2} s; inserts alone {:.0}/s)",
        bench.events as f64 / elapsed.as_secs_f64(),
        bench.events,
        elapsed.as_secs_f64(),
        bench.events as f64 / insert_elapsed.as_secs_f64(),
    );

    relay.stop().await?;
    inserted += insert_batched(&pool, bench.events, bench.batch).await?;
    let started = Instant::now();
    relay = Relay::start(&config, &pool, &metrics);
    wait_relayed(&metrics, inserted).await?;
    let elapsed = started.elapsed();
    println!(
        "backlog      {:>9.0} events/s drained by a relay started on {} waiting events ({:.2} s, connecting included)",
        bench.events as f64 / elapsed.as_secs_f64(),
        bench.events,
        elapsed.as_secs_f64(),
    );

    let before = metrics.lag_seconds.get_sample_count();
    let buckets_before = histogram_buckets(&metrics.lag_seconds);
    inserted += insert_paced(&pool, bench.rate, bench.seconds).await?;
    wait_relayed(&metrics, inserted).await?;
    let observed = metrics.lag_seconds.get_sample_count() - before;
    let delta: Vec<(f64, u64)> = histogram_buckets(&metrics.lag_seconds)
        .into_iter()
        .zip(buckets_before)
        .map(|((bound, after), (_, before))| (bound, after - before))
        .collect();
    println!(
        "latency      {:>9} events/s steady, commit→Kafka ack p50 {:.1} ms, p99 {:.1} ms ({} transactions)",
        bench.rate,
        quantile(&delta, observed, 0.50) * 1e3,
        quantile(&delta, observed, 0.99) * 1e3,
        observed
    );

    relay.stop().await?;
    pool.close().await;
    db::drop_database(&args.database_url, SCRATCH_DB).await?;
    Ok(())
}

struct Relay {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start(config: &RelayConfig, pool: &PgPool, metrics: &RelayMetrics) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ordo_outbox_relay::run(
            config.clone(),
            pool.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        Ok(self.task.await?)
    }
}

/// Inserts `events` outbox rows in transactions of `batch`, from a few connections at once.
async fn insert_batched(pool: &PgPool, events: usize, batch: usize) -> anyhow::Result<usize> {
    let chunks: Vec<usize> = (0..events)
        .step_by(batch)
        .map(|start| batch.min(events - start))
        .collect();
    let per_task = chunks.len().div_ceil(INSERTERS);
    let mut tasks = tokio::task::JoinSet::new();
    for part in chunks.chunks(per_task.max(1)) {
        let (pool, part) = (pool.clone(), part.to_vec());
        tasks.spawn(async move {
            for rows in part {
                insert(&pool, rows).await?;
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(events)
}

/// One single-row transaction every 1/rate seconds, for `seconds`.
async fn insert_paced(pool: &PgPool, rate: u32, seconds: u64) -> anyhow::Result<usize> {
    let total = rate as usize * seconds as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        let pool = pool.clone();
        tasks.spawn(async move { insert(&pool, 1).await });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(total)
}

/// Inserts `rows` envelope-shaped outbox rows (about 400 B each) in one statement.
async fn insert(pool: &PgPool, rows: usize) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::now_v7()).collect();
    let job_ids: Vec<String> = (0..rows).map(|_| Uuid::now_v7().to_string()).collect();
    let payloads: Vec<serde_json::Value> = ids
        .iter()
        .zip(&job_ids)
        .map(|(id, job)| {
            json!({
                "event_id": id, "job_id": job, "tenant": "bench", "sequence": 1,
                "event_type": "JobSubmitted", "event_version": 1,
                "occurred_at": "2026-11-21T12:00:00.000000Z", "actor": "bench",
                "correlation_id": null,
                "data": {"JobSubmitted": {"spec": {"type": "bench.noop", "queue": "bench",
                    "priority": 5, "payload": {"n": 1, "data": "x".repeat(64)}}}},
            })
        })
        .collect();
    sqlx::query(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, tenant) \
         SELECT id, 'job', job, 'JobSubmitted', payload, 1, 'bench' \
         FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) AS r(id, job, payload)",
    )
    .bind(&ids)
    .bind(&job_ids)
    .bind(&payloads)
    .execute(pool)
    .await?;
    Ok(())
}

/// Start measuring once the relay streams (rows from before would go through its sweep).
async fn wait_streaming(pool: &PgPool, slot: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ordo_outbox_relay::slot::is_streaming(pool, slot).await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the relay did not start streaming from slot {slot} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_relayed(metrics: &RelayMetrics, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    while (metrics.records_relayed.get() as usize) < expected {
        if Instant::now() > deadline {
            bail!(
                "the relay acknowledged {} of {expected} events within {CATCH_UP:?}; is the broker up?",
                metrics.records_relayed.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

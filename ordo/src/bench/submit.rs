//! `ordo bench submit`: jobs submitted through the HTTP API (HTTP, validation, the aggregate,
//! the one-statement events+outbox append), then the raw limit of the same PostgreSQL: plain
//! single-row INSERTs of rows the size of the outbox rows the submits wrote, at the same
//! concurrency. Both phases run on a fresh scratch database.

use super::{measure, submit_job, PhaseResult};
use crate::cli::{GlobalArgs, SubmitBenchArgs};
use anyhow::{bail, Context};
use ordo_command_api::{router, AppState};
use ordo_common::db::{self, DbConfig};
use ordo_domain::JobServices;
use ordo_protocol::jobs::{BatchSubmitResponse, MAX_BATCH_JOBS};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const SCRATCH_DB: &str = "ordo_bench";
const WARMUP_JOBS: usize = 500;

pub async fn run(args: &GlobalArgs, bench: SubmitBenchArgs) -> anyhow::Result<()> {
    if bench.jobs == 0 || bench.concurrency == 0 {
        bail!("--jobs and --concurrency must be at least 1");
    }
    if let Some(size) = bench.batch {
        if !(1..=MAX_BATCH_JOBS).contains(&size) || bench.jobs < size {
            bail!("--batch must be 1 to {MAX_BATCH_JOBS} and at most --jobs");
        }
    }
    let scratch_url = db::scratch_database(&args.database_url, SCRATCH_DB)
        .await
        .with_context(|| format!("cannot create a scratch database on {}", args.database_url))?;
    let pool = db::connect(&DbConfig {
        max_connections: bench.concurrency as u32,
        ..DbConfig::new(&scratch_url)
    })?;

    let base_url = match &bench.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let state = AppState::new(pool.clone(), args.api_config()?, JobServices::system());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move { axum::serve(listener, router(state)).await });
            format!("http://{addr}")
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let padding: Arc<str> = "x".repeat(bench.payload_bytes).into();

    println!(
        "ordo bench submit: {} jobs, concurrency {}, payload {} B, api {}{}",
        bench.jobs,
        bench.concurrency,
        bench.payload_bytes,
        base_url,
        bench
            .batch
            .map(|n| format!(", batches of {n}"))
            .unwrap_or_default()
    );
    let base_url: Arc<str> = base_url.into();
    if let Some(size) = bench.batch {
        return bulk(&pool, client, base_url, padding, &bench, size).await;
    }
    let submit = move |i: usize| {
        let (client, base_url, padding) = (client.clone(), base_url.clone(), padding.clone());
        async move {
            submit_job(&client, &base_url, "bench.noop", &padding, i).await?;
            Ok(())
        }
    };
    let submit = Arc::new(submit);
    let warm = submit.clone();
    measure(WARMUP_JOBS, bench.concurrency, move |i| warm(i)).await?;
    let ordo = measure(bench.jobs, bench.concurrency, move |i| submit(i)).await?;

    let sample: Value = sqlx::query_scalar("SELECT payload FROM outbox LIMIT 1")
        .fetch_one(&pool)
        .await
        .context("the submit phase left no outbox row to size the raw rows by")?;
    let raw = raw_inserts(&pool, sample, bench.jobs, bench.concurrency).await?;
    println!(
        "{}",
        ordo.line("ordo submit (HTTP → aggregate → events+outbox)", "submits")
    );
    println!(
        "{}",
        raw.line("raw single-row INSERT (same row size)", "inserts")
    );
    println!(
        "ratio ordo/raw: {:.2}",
        ordo.per_second() / raw.per_second()
    );
    pool.close().await;
    Ok(())
}

/// `--batch N`: the jobs go as `jobs / N` requests of N jobs each to `POST /api/v1/jobs/batch`,
/// `--concurrency` requests in flight; every job must be created (201).
async fn bulk(
    pool: &sqlx::PgPool,
    client: reqwest::Client,
    base_url: Arc<str>,
    padding: Arc<str>,
    bench: &SubmitBenchArgs,
    size: usize,
) -> anyhow::Result<()> {
    let post = move |i: usize| {
        let (client, base_url, padding) = (client.clone(), base_url.clone(), padding.clone());
        async move {
            let jobs: Vec<Value> = (0..size)
                .map(|j| {
                    serde_json::json!({
                        "type": "bench.noop",
                        "queue": super::QUEUE,
                        "payload": {"n": i * size + j, "data": &*padding},
                    })
                })
                .collect();
            let response = client
                .post(format!("{base_url}/api/v1/jobs/batch"))
                .json(&serde_json::json!({ "jobs": jobs }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "batch answered {}: {}",
                    response.status(),
                    response.text().await?
                );
            }
            let answer: BatchSubmitResponse = response.json().await?;
            if let Some(refused) = answer.results.iter().find(|r| r.status != 201) {
                bail!("a job of the batch was not created: {refused:?}");
            }
            Ok(())
        }
    };
    let post = Arc::new(post);
    let warm = post.clone();
    measure(WARMUP_JOBS.div_ceil(size), bench.concurrency, move |i| {
        warm(i)
    })
    .await?;
    let requests = bench.jobs / size;
    let ordo = measure(requests, bench.concurrency, move |i| post(requests + i)).await?;
    let jobs = requests * size;
    let written = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await?;
    println!(
        "{}",
        ordo.line(
            &format!("ordo bulk submit ({size} jobs per request)"),
            "requests"
        )
    );
    println!(
        "ordo bulk submit: {jobs} jobs committed in {:.2} s: {:.0} jobs/s ({written} outbox rows in all, warm-up included)",
        ordo.elapsed.as_secs_f64(),
        jobs as f64 / ordo.elapsed.as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

/// The raw limit: `ops` single-row INSERTs, `concurrency` at once, of rows shaped and sized
/// like outbox rows (`sample` is the payload of one, reused with fresh ids), into a new table
/// `bench_raw`.
pub async fn raw_inserts(
    pool: &sqlx::PgPool,
    sample: Value,
    ops: usize,
    concurrency: usize,
) -> anyhow::Result<PhaseResult> {
    sqlx::query(
        "CREATE TABLE bench_raw (id uuid PRIMARY KEY, aggregateid text NOT NULL, \
         type text NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(pool)
    .await?;
    let sample = Arc::new(sample);
    let pool = pool.clone();
    measure(ops, concurrency, move |_| {
        let (pool, payload) = (pool.clone(), sample.clone());
        async move {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO bench_raw (id, aggregateid, type, payload) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(id.to_string())
            .bind("JobSubmitted")
            .bind(&*payload)
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await
}

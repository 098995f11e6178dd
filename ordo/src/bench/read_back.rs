//! `ordo bench submit --read-back`: the read-your-writes latency of the whole platform. Each
//! job is submitted over HTTP and then read from the query API with `min_sequence` set to the
//! submit's answer, which waits until the view exists; the latency runs from the submit's
//! scheduled start to the read's answer, at a steady rate. Without `--url`, everything (both
//! APIs, the relay, the projector) runs in this process against the local stack, on a
//! scratch database, a fresh topic and a fresh Redis prefix.

use super::{measure_paced, PhaseResult};
use crate::cli::{GlobalArgs, SubmitBenchArgs};
use crate::serve::Platform;
use anyhow::{bail, Context};
use ordo_command_api::db;
use ordo_outbox_relay::RelayConfig;
use ordo_projectors::{namespace, redis_views, ProjectorConfig};
use ordo_query_api::QueryConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SCRATCH_DB: &str = "ordo_bench_read_back";

pub async fn run(args: &GlobalArgs, bench: &SubmitBenchArgs) -> anyhow::Result<()> {
    if bench.rate == 0 || bench.seconds == 0 {
        bail!("--rate and --seconds must be at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let Some(url) = &bench.url else {
        return in_process(args, bench, client).await;
    };
    let result = measure(&client, url.trim_end_matches('/'), bench).await?;
    report(&result, bench, url);
    Ok(())
}

async fn in_process(
    args: &GlobalArgs,
    bench: &SubmitBenchArgs,
    client: reqwest::Client,
) -> anyhow::Result<()> {
    let scratch_url = db::scratch_database(&args.database_url, SCRATCH_DB)
        .await
        .with_context(|| format!("cannot create a scratch database on {}", args.database_url))?;
    let run_id = Uuid::new_v4().simple().to_string();
    let args = GlobalArgs {
        database_url: scratch_url.clone(),
        redis_prefix: format!("ordo-bench-{run_id}"),
        ..args.clone()
    };
    let relay = RelayConfig {
        slot: format!("ordo_bench_{}", &run_id[..12]),
        topic_template: format!("bench-{run_id}.outbox.event.${{routedByValue}}"),
        ..RelayConfig::new(&scratch_url, &args.kafka_brokers)
    };
    let projector = ProjectorConfig {
        topic: format!("bench-{run_id}.outbox.event.job"),
        group: format!("ordo-bench-{run_id}"),
        topic_partitions: args.topic_partitions()?,
        ..ProjectorConfig::new("redis-views", &args.kafka_brokers, &args.redis_prefix)
    };
    let query = QueryConfig {
        prefix: args.redis_prefix.clone(),
        ..QueryConfig::default()
    };
    let shutdown = CancellationToken::new();
    let platform = Platform::start(&args, Some(relay), projector, query, &shutdown).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = axum::serve(listener, platform.router.clone())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    let measured = measure(&client, &base_url, bench).await;
    // Where the time goes, from the roles' own histograms (warm-up included).
    let stage = |name: &str| {
        let q = |q| super::registry_quantile(&platform.registry, name, q).unwrap_or(f64::NAN) * 1e3;
        format!("p50 {:.1} ms, p99 {:.1} ms", q(0.5), q(0.99))
    };
    let stages = format!(
        "stages: commit → Kafka ack {}; occurred_at → written to Redis {}",
        stage("ordo_outbox_relay_lag_seconds"),
        stage("ordo_projection_lag_seconds"),
    );
    shutdown.cancel();
    server.await??;
    platform.stopped().await?;
    let mut redis = redis_views::connect(&args.redis_url).await?;
    namespace::delete(&mut redis, &args.redis_prefix).await?;
    let result = measured?;
    report(
        &result,
        bench,
        "in-process (command API, relay, projector, query API)",
    );
    println!("{stages}");
    Ok(())
}

async fn measure(
    client: &reqwest::Client,
    base_url: &str,
    bench: &SubmitBenchArgs,
) -> anyhow::Result<PhaseResult> {
    let client = client.clone();
    let base_url: Arc<str> = base_url.into();
    let padding: Arc<str> = "x".repeat(bench.payload_bytes).into();
    let submit_and_read = move |i: usize| {
        let (client, base_url, padding) = (client.clone(), base_url.clone(), padding.clone());
        async move { submit_and_read(&client, &base_url, &padding, i).await }
    };
    // The first read also waits for the projector's consumer group to form.
    submit_and_read(0)
        .await
        .context("warm-up submit and read")?;
    measure_paced(bench.rate, 1, &submit_and_read).await?;
    measure_paced(bench.rate, bench.seconds, &submit_and_read).await
}

async fn submit_and_read(
    client: &reqwest::Client,
    base_url: &str,
    padding: &str,
    i: usize,
) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base_url}/api/v1/jobs"))
        .json(&json!({
            "type": "bench.noop",
            "queue": "bench",
            "payload": {"n": i, "data": padding},
        }))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!(
            "submit answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    let submitted: Value = response.json().await?;
    let (id, sequence) = (&submitted["job_id"], &submitted["sequence"]);
    let read = client
        .get(format!(
            "{base_url}/api/v1/jobs/{}?min_sequence={sequence}&wait_ms=10000",
            id.as_str().unwrap_or_default()
        ))
        .send()
        .await?;
    if read.status() != reqwest::StatusCode::OK {
        bail!(
            "read-back answered {}: {}",
            read.status(),
            read.text().await?
        );
    }
    Ok(())
}

fn report(result: &PhaseResult, bench: &SubmitBenchArgs, target: &str) {
    println!(
        "ordo bench submit --read-back: {} submits/s for {} s, payload {} B, against {target}",
        bench.rate, bench.seconds, bench.payload_bytes
    );
    println!(
        "{}",
        result.line("submit → visible in the query API", "jobs")
    );
}

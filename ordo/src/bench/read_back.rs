//! `ordo bench submit --read-back`: the read-your-writes latency of the whole platform. Each
//! job is submitted over HTTP and then read from the query API with `min_sequence` set to the
//! submit's answer, which waits until the view exists; the latency runs from the submit's
//! scheduled start to the read's answer, at a steady rate. Without `--url`, everything (both
//! APIs, the relay, the projector) runs in this process against the local stack, on a
//! scratch database, a fresh topic and a fresh Redis prefix.

use super::scratch::ScratchPlatform;
use super::{measure_paced, submit_job, PhaseResult};
use crate::cli::{GlobalArgs, SubmitBenchArgs};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;

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
    let platform = ScratchPlatform::start(args, SCRATCH_DB).await?;
    let measured = measure(&client, &platform.base_url, bench).await;
    // Where the time goes, from the roles' own histograms (warm-up included).
    let stage = |name: &str| {
        let q =
            |q| super::registry_quantile(platform.registry(), name, q).unwrap_or(f64::NAN) * 1e3;
        format!("p50 {:.1} ms, p99 {:.1} ms", q(0.5), q(0.99))
    };
    let stages = format!(
        "stages: commit → Kafka ack {}; occurred_at → written to Redis {}",
        stage("ordo_outbox_relay_lag_seconds"),
        stage("ordo_projection_lag_seconds"),
    );
    platform.stop().await?;
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
    let per_second = bench.rate as usize;
    measure_paced(bench.rate, per_second, &submit_and_read).await?;
    measure_paced(
        bench.rate,
        per_second * bench.seconds as usize,
        &submit_and_read,
    )
    .await
}

async fn submit_and_read(
    client: &reqwest::Client,
    base_url: &str,
    padding: &str,
    i: usize,
) -> anyhow::Result<()> {
    let submitted = submit_job(client, base_url, "bench.noop", padding, i).await?;
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

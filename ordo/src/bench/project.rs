//! `ordo bench project`: sample job histories produced to a fresh topic, then projected into
//! a fresh Redis prefix by an in-process projector. Events/s is measured from the first
//! applied record to the last (the consumer group's join time is printed apart), next to the
//! raw limit underneath: the same number of plain `HSET`s in pipelines of the same size.

use crate::cli::{GlobalArgs, ProjectBenchArgs};
use anyhow::{bail, Context};
use futures::future::try_join_all;
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use ordo_domain::sample;
use ordo_domain::spec::{QueueName, TenantId};
use ordo_projectors::metrics::RecordOutcome;
use ordo_projectors::{ProjectorConfig, ProjectorMetrics};
use ordo_read_model::namespace;
use prometheus::Registry;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest wait for the projector to apply everything.
const CATCH_UP: Duration = Duration::from_secs(300);

pub async fn run(args: &GlobalArgs, bench: ProjectBenchArgs) -> anyhow::Result<()> {
    if bench.events == 0 || bench.batch == 0 {
        bail!("--events and --batch must be at least 1");
    }
    let run_id = Uuid::new_v4().simple().to_string();
    let topic = format!("ordo-bench-project-{run_id}");
    let prefix = format!("ordo-bench-{run_id}");
    let mut redis = ordo_read_model::connect(&args.redis_url)
        .await
        .with_context(|| format!("cannot reach Redis at {}", args.redis_url))?;

    let records = sample_records(bench.events)?;
    println!(
        "ordo bench project: {} events of {} jobs (half retried once), {} partitions, batches of up to {}; brokers {}, redis {}",
        records.len(),
        records.iter().filter(|(_, _, sequence)| *sequence == 1).count(),
        args.topic_partitions()?,
        bench.batch,
        args.kafka_brokers,
        args.redis_url,
    );
    kafka::ensure_topic(&args.kafka_brokers, &topic, args.topic_partitions()?).await?;
    let producer = kafka::producer(&args.kafka_brokers, Duration::from_secs(30))?;
    let deliveries = records
        .iter()
        .map(|(key, value, _)| {
            producer
                .send_result(FutureRecord::to(&topic).key(key).payload(value))
                .map_err(|(e, _)| e)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for delivery in try_join_all(deliveries).await? {
        delivery.map_err(|(e, _)| e)?;
    }

    let metrics = ProjectorMetrics::register(&Registry::new(), "bench")?;
    let config = ProjectorConfig {
        topic: topic.clone(),
        group: format!("ordo-bench-{run_id}"),
        max_batch: bench.batch,
        ..ProjectorConfig::new("bench", &args.kafka_brokers, &prefix)
    };
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    // No gap repair: the records are generated, not in an event store.
    let projector = tokio::spawn(ordo_projectors::run_redis_views(
        config,
        redis.clone(),
        None,
        metrics.clone(),
        RoleHealth::unobserved("projector"),
        shutdown.clone(),
    ));
    let measured = wait_applied(&metrics, records.len() as u64, started).await;
    shutdown.cancel();
    projector.await??;
    let (first, done) = measured?;
    let steady = done - first;
    println!(
        "projected  {:>9.0} events/s into Redis ({} events in {:.2} s after the first; joining the group took {:.2} s)",
        (records.len() as u64 - 1) as f64 / steady.as_secs_f64().max(1e-9),
        records.len(),
        steady.as_secs_f64(),
        first.as_secs_f64(),
    );

    let raw = raw_hsets(&mut redis, &prefix, records.len(), bench.batch).await?;
    println!(
        "raw Redis  {:>9.0} HSETs/s in pipelines of {} (the projector runs a sequence-checked script per event)",
        records.len() as f64 / raw.as_secs_f64(),
        bench.batch
    );

    let deleted = namespace::delete(&mut redis, &prefix).await?;
    println!("cleaned up {deleted} keys under {prefix}:*; topic {topic} is left to the broker");
    Ok(())
}

/// (key, value, sequence) of sample histories until at least `events` records.
fn sample_records(events: usize) -> anyhow::Result<Vec<(String, String, u64)>> {
    let tenant = TenantId::parse("bench")?;
    let queues = ["bench-a", "bench-b", "bench-c"].map(|q| QueueName::parse(q).expect("valid"));
    let start = chrono::Utc::now();
    let mut records = Vec::with_capacity(events + 7);
    let mut job = 0usize;
    while records.len() < events {
        let job_id = Uuid::now_v7().to_string();
        let queue = &queues[job % queues.len()];
        for envelope in sample::lifecycle(&job_id, &tenant, queue, start, job % 2 == 1) {
            records.push((
                job_id.clone(),
                serde_json::to_string(&envelope)?,
                envelope.sequence,
            ));
        }
        job += 1;
    }
    Ok(records)
}

/// (time to the first applied record, time to the last), both from `started`.
async fn wait_applied(
    metrics: &ProjectorMetrics,
    expected: u64,
    started: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let mut first = None;
    loop {
        let applied = metrics.count(RecordOutcome::Applied);
        if applied > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if applied >= expected {
            return Ok((first.unwrap_or_default(), started.elapsed()));
        }
        let refused = metrics.count(RecordOutcome::Gap) + metrics.count(RecordOutcome::Parked);
        if refused > 0 {
            bail!("{refused} records were refused (gaps or parked); see the log");
        }
        if started.elapsed() > CATCH_UP {
            bail!("only {applied} of {expected} events applied within {CATCH_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn raw_hsets(
    redis: &mut redis::aio::ConnectionManager,
    prefix: &str,
    count: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(batch) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("HSET")
                .arg(format!("{prefix}:raw:{}", i / 5))
                .arg("sequence")
                .arg(i)
                .ignore();
        }
        pipe.query_async::<()>(redis).await?;
    }
    Ok(started.elapsed())
}

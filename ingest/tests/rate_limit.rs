//! Per-tenant ingest limits in the real Redis: a tenant over its lines or bytes per second
//! gets 429 with Retry-After on every protocol and on every instance, other tenants do not,
//! and after the wait its lines are taken again.

mod common;

use common::{Ingest, NO_LIMITS};
use ordo_ingest::{IngestConfig, TenantLimits};
use ordo_testkit::http::problem_of;
use redis::AsyncCommands;
use serde_json::{json, Value};
use std::time::Duration;

fn lines(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"message": format!("line {i}")}))
            .collect(),
    )
}

fn limited(limits: TenantLimits) -> IngestConfig {
    IngestConfig {
        limits,
        ..IngestConfig::default()
    }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_tenant_over_its_lines_per_second_waits_on_every_instance_and_protocol() {
    let config = limited(TenantLimits {
        lines_per_sec: 5,
        lines_burst: 10,
        ..NO_LIMITS
    });
    let ingest = Ingest::start_with(config.clone()).await;
    let other = ingest.beside(config).await;
    let post = |ingest: &Ingest, tenant: &str, n: usize| {
        ingest
            .post("/api/v1/logs")
            .header("x-ordo-tenant", tenant)
            .json(&lines(n))
            .send()
    };

    // Sixty lines on a full bucket of ten: let in, leaving a debt of ten seconds (so that
    // the checks below are done well within it, whatever the broker's latency).
    assert_eq!(post(&ingest, "acme", 60).await.unwrap().status(), 202);
    let response = post(&ingest, "acme", 5).await.unwrap();
    let wait = retry_after(&response);
    assert!((9..=12).contains(&wait), "{wait}");
    let problem = problem_of(response, 429, "rate-limited").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("acme"),
        "{problem}"
    );
    // The other instance shares the buckets.
    let response = post(&other, "acme", 5).await.unwrap();
    assert_eq!(response.status(), 429);
    // Other tenants have buckets of their own.
    assert_eq!(post(&other, "globex", 5).await.unwrap().status(), 202);

    // Each protocol answers in its own shape, with Retry-After.
    let otlp = ingest
        .post("/v1/logs")
        .header("x-ordo-tenant", "acme")
        .json(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"body": {"stringValue": "x"}}]}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(otlp.status(), 429);
    assert!(retry_after(&otlp) >= 1);
    assert_eq!(
        otlp.json::<Value>().await.unwrap()["code"],
        8,
        "RESOURCE_EXHAUSTED"
    );
    let bulk = ingest
        .post("/es/_bulk")
        .header("x-ordo-tenant", "acme")
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{}}\n{\"message\":\"x\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 429);
    assert_eq!(bulk.headers()["x-elastic-product"], "Elasticsearch");
    let error: Value = bulk.json().await.unwrap();
    assert_eq!(error["error"]["type"], "es_rejected_execution_exception");
    let loki = ingest
        .post("/loki/api/v1/push")
        .header("x-ordo-tenant", "acme")
        .json(&json!({"streams": [{"stream": {}, "values": [["1795255200000000000", "x"]]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(loki.status(), 429);

    // The bucket is one key with an expiry, so idle tenants leave nothing behind.
    let mut redis = ingest.prefix.redis.clone();
    let key = format!("{}:ingest:limit:acme", ingest.prefix.prefix);
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!((1..=14_000).contains(&ttl), "{ttl}");

    // Recovery: after the wait the tenant's lines are taken again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(post(&ingest, "acme", 5).await.unwrap().status(), 202);

    let metrics = ingest.metrics();
    for expected in [
        r#"ordo_log_requests_rejected_total{protocol="native",reason="rate_limited"} 1"#,
        r#"ordo_log_lines_rejected_total{protocol="native",reason="rate_limited"} 5"#,
        r#"ordo_log_requests_rejected_total{protocol="otlp",reason="rate_limited"} 1"#,
        r#"ordo_log_requests_rejected_total{protocol="elasticsearch",reason="rate_limited"} 1"#,
        r#"ordo_log_requests_rejected_total{protocol="loki",reason="rate_limited"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
    // Nothing of a refused request reached the topic: 60 + 5 (globex) + 5 lines.
    ingest.lines(70).await;
}

#[tokio::test]
async fn bytes_are_limited_too_and_a_request_over_the_burst_leaves_a_debt() {
    let ingest = Ingest::start_with(limited(TenantLimits {
        lines_per_sec: 1,
        lines_burst: 3,
        bytes_per_sec: 500,
        bytes_burst: 4_000,
    }))
    .await;
    let post = |body: Value| ingest.post("/api/v1/logs").json(&body).send();

    // Five lines, over the burst of three: let in on a full bucket, which it leaves in debt.
    assert_eq!(post(lines(5)).await.unwrap().status(), 202);
    let response = post(lines(1)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        retry_after(&response) >= 2,
        "a debt of two lines at one a second"
    );

    // Bytes: a fresh tenant within its lines but over its bytes.
    let big = json!([{"message": "x".repeat(3_000)}]);
    let send = |body: &Value| {
        ingest
            .post("/api/v1/logs")
            .header("x-ordo-tenant", "chatty")
            .json(body)
            .send()
    };
    assert_eq!(send(&big).await.unwrap().status(), 202);
    let response = send(&big).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(retry_after(&response) >= 1);
}

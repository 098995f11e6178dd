//! `ordo serve ingest` as a user starts it: its own process, configured only by the
//! environment, on a topic and a Redis prefix of the test's own.

use ordo::instances::free_port;
use ordo::instances::process::{OrdoProcess, ProcessSpec};
use ordo_protocol::logs::LogBatch;
use ordo_testkit::http::TestClient;
use ordo_testkit::kafka::read_topic;
use ordo_testkit::stack::{kafka_brokers, unique};
use ordo_testkit::TestPrefix;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_ingest_role_serves_its_protocols_metrics_and_limits_from_the_environment() {
    let prefix = TestPrefix::new().await;
    let topic = unique("ordo.logs.test-serve-");
    let port = free_port().expect("a free loopback port");
    let spec = ProcessSpec::new(
        env!("CARGO_BIN_EXE_ordo"),
        &["--log-format", "text", "serve", "ingest"],
    )
    .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"))
    .env("ORDO_KAFKA_BROKERS", kafka_brokers())
    .env("ORDO_LOGS_TOPIC", &topic)
    .env("ORDO_REDIS_PREFIX", &prefix.prefix)
    .env("ORDO_INGEST_TENANT_LINES_PER_SEC", "1")
    .env("ORDO_INGEST_TENANT_LINES_BURST", "2")
    .env("RUST_LOG", "warn");
    let mut process = OrdoProcess::spawn(spec).expect("spawn ordo serve ingest");
    let url = format!("http://127.0.0.1:{port}");
    process
        .wait_ok(&format!("{url}/readyz"), Duration::from_secs(60))
        .await
        .expect("ordo serve ingest ready");
    let api = TestClient::new(&url);

    let lines =
        json!([{"service": "billing", "message": "one"}, {"service": "billing", "message": "two"}]);
    assert_eq!(
        api.post_ok("/api/v1/logs", &lines).await,
        json!({"accepted": 2})
    );
    let (status, _) = api
        .post_json("/api/v1/logs", &json!({"message": "three"}))
        .await;
    assert_eq!(status, 429, "ORDO_INGEST_TENANT_LINES_BURST holds");
    let info = api.get("/es/").send().await.unwrap();
    assert_eq!(info.headers()["x-elastic-product"], "Elasticsearch");

    let records = tokio::task::spawn_blocking(move || {
        read_topic(&topic, Duration::from_secs(20), |r| !r.is_empty())
    })
    .await
    .unwrap();
    let batch = LogBatch::decode(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(records[0].key.as_deref(), Some(&b"default/billing"[..]));
    let messages: Vec<&str> = batch.lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["one", "two"]);

    let metrics = api.metrics().await;
    for expected in [
        r#"ordo_log_lines_accepted_total{protocol="native"} 2"#,
        r#"ordo_log_requests_rejected_total{protocol="native",reason="rate_limited"} 1"#,
        r#"ordo_http_requests_total{method="POST",route="/api/v1/logs",status="202"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
}

//! `ordo dev` as a user starts it: one process with the command API and the query API on one
//! port, the relay and the projector, on a scratch database, a fresh topic and a Redis prefix
//! of the test's own. Read-your-writes: a command's `sequence` handed to the query API as
//! `min_sequence` returns the state the command produced.

mod common;

use common::broker::free_port;
use common::read_model::TestPrefix;
use common::{kafka_brokers, topic_template, unique, TestDb};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Dev {
    child: Child,
    url: String,
}

impl Dev {
    async fn start(db: &TestDb, prefix: &TestPrefix) -> Self {
        let port = free_port();
        let run = unique("ordo-test-dev-");
        let template = topic_template(&run);
        let child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["--log-format", "text", "dev"])
            .env("ORDO_DATABASE_URL", &db.url)
            .env("ORDO_KAFKA_BROKERS", kafka_brokers())
            .env("ORDO_REDIS_PREFIX", &prefix.prefix)
            .env("ORDO_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ORDO_RELAY_SLOT", unique("ordo_test_"))
            .env("ORDO_RELAY_TOPIC_TEMPLATE", &template)
            .env(
                "ORDO_PROJECTOR_TOPIC",
                template.replace("${routedByValue}", "job"),
            )
            .env("ORDO_PROJECTOR_GROUP", unique("ordo-test-dev-"))
            .env("ORDO_PROJECTOR_SESSION_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn ordo dev");
        let dev = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(format!("{}/readyz", dev.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ordo dev did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        dev
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_commands_sequence_returns_the_state_the_command_made() {
    let db = TestDb::new().await;
    let prefix = TestPrefix::new().await;
    let dev = Dev::start(&db, &prefix).await;
    let client = reqwest::Client::new();

    let submitted = post(
        &client,
        format!("{}/api/v1/jobs", dev.url),
        json!({"type": "report.build", "queue": "reports", "labels": {"team": "data"}}),
    )
    .await;
    let id = submitted["job_id"].as_str().unwrap();
    // The consumer group forms within seconds; the read waits for it (up to 20 s here).
    let url = format!("{}/api/v1/jobs/{id}?min_sequence=1&wait_ms=20000", dev.url);
    let view = get(&client, url).await;
    assert_eq!(view["status"], "QUEUED", "{view}");
    assert_eq!(view["sequence"], 1);
    assert_eq!(view["queue"], "reports");

    let cancelled = post(
        &client,
        format!("{}/api/v1/jobs/{id}/cancel", dev.url),
        json!({"reason": "not needed"}),
    )
    .await;
    let sequence = cancelled["sequence"].as_u64().unwrap();
    let response = client
        .get(format!(
            "{}/api/v1/jobs/{id}?min_sequence={sequence}",
            dev.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "CANCELLED", "{view}");
    assert_eq!(view["sequence"], sequence);
    assert_eq!(view["cancel_reason"], "not needed");

    // The same port serves the query side's lists and counts.
    let stats = get(&client, format!("{}/api/v1/stats", dev.url)).await;
    assert_eq!(stats["by_status"]["CANCELLED"], 1, "{stats}");
    let queues = get(&client, format!("{}/api/v1/queues", dev.url)).await;
    assert!(queues.to_string().contains("reports"), "{queues}");
}

//! Conformance with Debezium: the same outbox rows, relayed once by a real Debezium PostgreSQL
//! connector with the outbox EventRouter (`debezium/connector.json`, on the Kafka Connect worker
//! of the local stack) and once by `ordo`'s relay, give identical Kafka records: partition, key
//! bytes, value bytes, and the headers `id`, `eventType` and `sequence`.

mod common;

use common::*;
use ordo_testkit::kafka::{read_topic, Consumed};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CONNECTOR: &str = include_str!("../../debezium/connector.json");
const PARTITIONS: i32 = 6;

fn connect_url() -> String {
    std::env::var("KAFKA_CONNECT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8083".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// Rows that stress the text path: unicode, emoji (with joiners), control characters,
/// escapes, exact numerics, and payloads of hundreds of kilobytes.
fn tricky_rows() -> Vec<OutboxRow> {
    let texts = [
        json!({"text": "héllo wörld — Ελληνικά — 日本語 — עברית"}),
        json!({"emoji": "😀🚀👩‍👩‍👧‍👦🏳️‍🌈", "flag": true}),
        json!({"control": "\u{1}\u{7}\t\n\r\u{1b}[0m\u{1f}\u{7f}"}),
        json!({"escapes": "\"quoted\" \\back\\slash /slash/ \u{2028}\u{2029}"}),
        json!({"numbers": [0, -1, 1.5, 1e308, 12345678901234567890u64, 0.1], "nested": {"a": [[], {}]}}),
        json!({}),
        json!({"large": "x".repeat(256 * 1024)}),
        json!({"large_unicode": "é😀".repeat(60_000)}),
    ];
    let mut rows: Vec<OutboxRow> = texts
        .into_iter()
        .enumerate()
        .map(|(i, payload)| OutboxRow::new(&format!("job-ü-😀-{i}"), 1, payload))
        .collect();
    let mut odd = OutboxRow::new("ключ-\u{7}-tab\tkey", 42, json!({"odd": "type"}));
    odd.event_type = "JobÉvénement😀".into();
    rows.push(odd);
    // Many keys, so every partition gets records.
    rows.extend(sample_rows(300, 3));
    rows
}

async fn put_connector(name: &str, config: &Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/connectors/{name}/config", connect_url()))
        .timeout(Duration::from_secs(30))
        .json(config)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Kafka Connect is not reachable at {} ({e}); run `make services`",
                connect_url()
            )
        });
    assert!(
        response.status().is_success(),
        "connector rejected: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn wait_connector_running(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: Value = reqwest::Client::new()
            .get(format!("{}/connectors/{name}/status", connect_url()))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("connect status")
            .json()
            .await
            .unwrap_or(Value::Null);
        let connector = &status["connector"]["state"];
        let task = &status["tasks"][0]["state"];
        if connector == "RUNNING" && task == "RUNNING" {
            return;
        }
        assert_ne!(task, "FAILED", "connector task failed: {status}");
        assert!(Instant::now() < deadline, "connector not running: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn delete_connector(name: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{}/connectors/{name}", connect_url()))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
}

/// What must be identical, keyed by event id.
type Comparable =
    BTreeMap<uuid::Uuid, (i32, Option<Vec<u8>>, Option<Vec<u8>>, [Option<String>; 3])>;

fn comparable(records: &[Consumed]) -> Comparable {
    records
        .iter()
        .map(|r| {
            let header = |n: &str| r.header(n).map(str::to_owned);
            (
                r.event_id(),
                (
                    r.partition,
                    r.key.clone(),
                    r.value.clone(),
                    [header("id"), header("eventType"), header("sequence")],
                ),
            )
        })
        .collect()
}

async fn read(topic: String, expected: usize) -> Vec<Consumed> {
    tokio::task::spawn_blocking(move || {
        read_topic(&topic, Duration::from_secs(180), |r| r.len() >= expected)
    })
    .await
    .expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_and_ordo_relay_produce_identical_records() {
    let db = TestDb::new().await;
    let run = unique("conf");
    let relay_topic = format!("{run}.relay.outbox.event.job");
    let debezium_topic = format!("{run}.dbz.outbox.event.job");
    for topic in [&relay_topic, &debezium_topic] {
        ordo_common::kafka::ensure_topic(&kafka_brokers(), topic, PARTITIONS)
            .await
            .expect("create topic");
    }

    // Debezium, on this test's database, slot and topic.
    let server = ordo_outbox_relay::slot::replication_config(&db.url, "x", "y").unwrap();
    let mut connector: Value = serde_json::from_str(CONNECTOR).expect("connector.json");
    let name = format!("ordo-conformance-{run}");
    let debezium_slot = format!("dbz_{run}");
    let config = connector["config"].as_object_mut().unwrap();
    for (key, value) in [
        ("name", name.clone()),
        ("database.hostname", server.host.clone()),
        ("database.port", server.port.to_string()),
        ("database.user", server.user.clone()),
        ("database.dbname", db.name.clone()),
        ("slot.name", debezium_slot.clone()),
        ("topic.prefix", run.clone()),
        (
            "transforms.outbox.route.topic.replacement",
            format!("{run}.dbz.outbox.event.${{routedByValue}}"),
        ),
    ] {
        config.insert(key.to_owned(), Value::String(value));
    }
    put_connector(&name, &connector["config"]).await;
    wait_connector_running(&name).await;
    wait_slot_streaming(&db.pool, &debezium_slot, Duration::from_secs(60)).await;

    // Ordo's relay, on its own slot of the same database.
    let relay = InProcessRelay::start(
        &db,
        &unique("ordo_t_"),
        &format!("{run}.relay.outbox.event.${{routedByValue}}"),
    )
    .await;

    let rows = tricky_rows();
    for chunk in rows.chunks(50) {
        insert_outbox(&db.pool, chunk).await;
    }
    let (from_relay, from_debezium) = tokio::join!(
        read(relay_topic, rows.len()),
        read(debezium_topic, rows.len())
    );
    delete_connector(&name).await;
    relay.stop().await;

    assert_eq!(from_relay.len(), rows.len(), "relay delivered every row");
    assert_eq!(
        from_debezium.len(),
        rows.len(),
        "Debezium delivered every row"
    );
    let (ours, theirs) = (comparable(&from_relay), comparable(&from_debezium));
    for (id, record) in &theirs {
        assert_eq!(ours.get(id), Some(record), "record of event {id} differs");
    }
    assert_eq!(ours, theirs);
    // And both say what the rows say: key, headers, and a value that parses back to the
    // payload (it is the jsonb text PostgreSQL renders, not the text we inserted).
    for row in &rows {
        let (_, key, value, headers) = &ours[&row.id];
        assert_eq!(key.as_deref(), Some(row.aggregate_id.as_bytes()));
        let value: Value = serde_json::from_slice(value.as_deref().unwrap()).unwrap();
        assert_eq!(value, row.payload);
        assert_eq!(
            headers,
            &[
                Some(row.id.to_string()),
                Some(row.event_type.clone()),
                Some(row.sequence.to_string())
            ]
        );
    }
    let partitions: std::collections::BTreeSet<i32> = ours.values().map(|r| r.0).collect();
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "records spread over every partition"
    );
}

//! Ordo's own log API, `POST /api/v1/logs`, against the real broker: the formats it takes,
//! the records they become, and every rule for bad input (refused whole, nothing written).

mod common;

use chrono::{TimeDelta, Utc};
use common::{Ingest, NO_LIMITS};
use flate2::write::GzEncoder;
use ordo_ingest::IngestConfig;
use ordo_protocol::logs::Level;
use ordo_testkit::http::{problem_of, success};
use serde_json::{json, Value};
use std::io::Write;
use uuid::Uuid;

const LOGS: &str = "/api/v1/logs";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn objects_arrays_and_ndjson_land_as_v2_batches() {
    let ingest = Ingest::start().await;
    let job = Uuid::now_v7();
    let send = |content_type: &'static str, body: String| {
        ingest
            .post(LOGS)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let one = json!({"message": "one", "service": "api"});
    assert_eq!(
        success(
            send("application/json", one.to_string()).await.unwrap(),
            202
        )
        .await,
        json!({"accepted": 1})
    );
    let array = json!([{"message": "two", "source": "api"},
                       {"message": "for the job", "service": "api", "job_id": job}]);
    let answer = success(
        send("application/json", array.to_string()).await.unwrap(),
        202,
    )
    .await;
    assert_eq!(answer, json!({"accepted": 2}));
    let ndjson = "{\"message\":\"no service\"}\n\n{\"message\":\"nor here\",\"level\":\"DEBUG\"}\n";
    let answer = success(
        send("application/x-ndjson", ndjson.into()).await.unwrap(),
        202,
    )
    .await;
    assert_eq!(answer, json!({"accepted": 2}));
    let full = json!({"message": "card declined", "level": "WARNING", "service": "checkout",
        "ts": 1_795_255_200_250_u64, "attributes": {"order": {"id": 42}, "paid": false},
        "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        "env": "prod", "host": "web-1", "region": "eu"});
    let response = ingest
        .post(LOGS)
        .header("content-type", "application/jsonl; charset=utf-8")
        .header("x-ordo-tenant", "acme")
        .body(full.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(success(response, 202).await, json!({"accepted": 1}));

    let batches = ingest.batches(6).await;
    type Summary<'a> = (&'a str, &'a str, &'a str, Option<Uuid>, Vec<&'a str>);
    let summary: Vec<Summary> = batches
        .iter()
        .map(|(key, b)| {
            let messages = b.lines.iter().map(|l| l.message.as_str()).collect();
            (
                key.as_str(),
                b.tenant.as_str(),
                b.service.as_str(),
                b.job_id,
                messages,
            )
        })
        .collect();
    let job_key = job.to_string();
    assert_eq!(
        summary,
        [
            ("default/api", "default", "api", None, vec!["one"]),
            ("default/api", "default", "api", None, vec!["two"]),
            (
                job_key.as_str(),
                "default",
                "api",
                Some(job),
                vec!["for the job"]
            ),
            (
                "default/unknown_service",
                "default",
                "unknown_service",
                None,
                vec!["no service", "nor here"]
            ),
            (
                "acme/checkout",
                "acme",
                "checkout",
                None,
                vec!["card declined"]
            ),
        ]
    );
    for (_, batch) in &batches {
        assert_eq!((batch.v, batch.source.as_str()), (2, "native"));
        assert_eq!((batch.attempt, batch.worker_id.as_deref()), (None, None));
    }
    let defaults = &batches[0].1.lines[0];
    assert_eq!((defaults.level, defaults.severity_number), (Level::Info, 9));
    assert!(
        Utc::now() - defaults.ts < TimeDelta::seconds(30),
        "stamped on arrival"
    );
    assert_eq!(batches[3].1.lines[1].level, Level::Debug);
    let line = serde_json::to_value(&batches[4].1.lines[0]).unwrap();
    assert_eq!(
        line,
        json!({"ts": "2026-11-21T10:00:00.250Z", "level": "warn", "severity_number": 13,
               "message": "card declined",
               "attributes": {"order.id": "42", "paid": "false", "region": "eu"},
               "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
               "env": "prod", "host": "web-1"})
    );
    let metrics = ingest.metrics();
    assert!(
        metrics.contains(r#"ordo_log_lines_accepted_total{protocol="native"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ordo_log_bytes_received_total{protocol="native"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_whole_and_writes_nothing() {
    let ingest = Ingest::start_with(IngestConfig {
        max_body_bytes: 64 * 1024,
        max_lines: 100,
        limits: NO_LIMITS,
        ..IngestConfig::default()
    })
    .await;
    let post = |content_type: &str, body: Vec<u8>| {
        ingest
            .post(LOGS)
            .header("content-type", content_type)
            .body(body)
    };
    let json = |value: Value| post("application/json", value.to_string().into_bytes());

    let malformed = problem_of(
        post("application/json", b"[{\"message\": ".to_vec())
            .send()
            .await
            .unwrap(),
        400,
        "malformed-body",
    )
    .await;
    assert!(
        malformed["detail"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{malformed}"
    );
    let ndjson = b"{\"message\":\"fine\"}\n{\"message\": oops}\n".to_vec();
    let at_line = problem_of(
        post("application/x-ndjson", ndjson).send().await.unwrap(),
        400,
        "malformed-body",
    )
    .await;
    assert_eq!(at_line["index"], 1, "{at_line}");

    let unknown_level = json(json!([{"message": "ok"}, {"message": "x", "level": "loud"}]));
    let problem = problem_of(unknown_level.send().await.unwrap(), 422, "validation-error").await;
    assert_eq!(
        (problem["index"].clone(), problem["field"].clone()),
        (json!(1), json!("level"))
    );
    assert!(
        problem["reason"].as_str().unwrap().contains("loud"),
        "{problem}"
    );
    for (line, field) in [
        (json!({"level": "info"}), "message"),
        (json!({"message": "x", "ts": "tomorrow"}), "ts"),
        (json!({"message": "x", "job_id": "42"}), "job_id"),
        (json!({"message": "x", "trace_id": "not hex"}), "trace_id"),
        (json!({"message": "x", "attributes": "k=v"}), "attributes"),
    ] {
        let problem = problem_of(json(line).send().await.unwrap(), 422, "validation-error").await;
        assert_eq!(problem["field"], field, "{problem}");
    }

    let big = json!({"message": "x".repeat(70 * 1024)});
    problem_of(json(big).send().await.unwrap(), 413, "payload-too-large").await;
    // 16 MiB of one line, gzipped to about 16 KiB: refused once inflated past the limit.
    let bomb = gzip(format!("{{\"message\":\"{}\"}}", "a".repeat(16 << 20)).as_bytes());
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let response = post("application/json", bomb)
        .header("content-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let problem = problem_of(response, 413, "payload-too-large").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("decompressed"),
        "{problem}"
    );
    let many = Value::Array(vec![json!({"message": "m"}); 101]);
    problem_of(json(many).send().await.unwrap(), 413, "payload-too-large").await;

    let text = post("text/plain", b"hello".to_vec()).send().await.unwrap();
    problem_of(text, 415, "unsupported-media-type").await;
    let brotli = json(json!({"message": "x"}))
        .header("content-encoding", "br")
        .send()
        .await
        .unwrap();
    problem_of(brotli, 415, "unsupported-media-type").await;
    let tenant = json(json!({"message": "x"}))
        .header("x-ordo-tenant", "a:b")
        .send()
        .await
        .unwrap();
    problem_of(tenant, 400, "malformed-body").await;

    // The one good request is the only record on the topic.
    let good = json(json!({"message": "the only one"}))
        .send()
        .await
        .unwrap();
    success(good, 202).await;
    let lines = ingest.lines(1).await;
    assert_eq!(lines[0].message, "the only one");
    let metrics = ingest.metrics();
    for expected in [
        r#"ordo_log_requests_rejected_total{protocol="native",reason="malformed"} 3"#,
        r#"ordo_log_requests_rejected_total{protocol="native",reason="invalid"} 6"#,
        r#"ordo_log_requests_rejected_total{protocol="native",reason="too_large"} 3"#,
        r#"ordo_log_requests_rejected_total{protocol="native",reason="unsupported"} 2"#,
        r#"ordo_log_lines_accepted_total{protocol="native"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
}

#[tokio::test]
async fn long_lines_old_times_and_broken_utf8_follow_the_documented_rules() {
    let ingest = Ingest::start().await;
    let now = Utc::now();
    let old = now - TimeDelta::days(30);
    let ahead = now + TimeDelta::days(2);
    let body = json!([
        {"message": "é".repeat(40 * 1024)},
        {"message": "old", "ts": old.to_rfc3339()},
        {"message": "ahead", "ts": ahead.timestamp_millis()},
        {"message": "recent", "ts": (now - TimeDelta::days(13)).to_rfc3339()},
    ]);
    // A stray Latin-1 byte in an otherwise valid body.
    let mut latin1 = b"{\"message\":\"caf".to_vec();
    latin1.push(0xE9);
    latin1.extend_from_slice(b"\"}");

    let response = ingest
        .post(LOGS)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(success(response, 202).await, json!({"accepted": 4}));
    let response = ingest
        .post(LOGS)
        .header("content-type", "application/x-ndjson")
        .body(latin1)
        .send()
        .await
        .unwrap();
    assert_eq!(success(response, 202).await, json!({"accepted": 1}));

    let lines = ingest.lines(5).await;
    let long = &lines[0];
    assert_eq!(
        long.message.len(),
        64 * 1024,
        "cut at 64 KiB, on a character boundary"
    );
    assert_eq!(long.attributes["ordo.truncated"], "message");
    let mut originals = Vec::new();
    for restamped in &lines[1..3] {
        assert!(
            (restamped.ts - now).abs() < TimeDelta::seconds(30),
            "{restamped:?}"
        );
        let original: chrono::DateTime<Utc> =
            restamped.attributes["ordo.original_ts"].parse().unwrap();
        originals.push(original.timestamp_millis());
    }
    assert_eq!(
        originals,
        [old.timestamp_millis(), ahead.timestamp_millis()]
    );
    assert!(
        !lines[3].attributes.contains_key("ordo.original_ts"),
        "within retention"
    );
    assert_eq!(lines[4].message, "caf\u{FFFD}");
    let metrics = ingest.metrics();
    for expected in [
        r#"ordo_log_lines_adjusted_total{protocol="native",rule="truncated"} 1"#,
        r#"ordo_log_lines_adjusted_total{protocol="native",rule="timestamp"} 2"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
}

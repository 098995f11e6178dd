//! The shipper protocols over real HTTP and the real broker, with hand-made requests for what
//! the shippers of `shippers.rs` do not exercise: OTLP/JSON, gzip, partial-success warnings
//! and OTLP's error shape; Elasticsearch's info answer, item errors and product header on
//! every answer; Loki's JSON and snappy protobuf pushes and their refusals.

mod common;

use common::Ingest;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use ordo_protocol::logs::Level;
use ordo_testkit::http::problem_of;
use prost::Message;
use serde_json::{json, Value};
use std::io::Write;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    })
}

fn export(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn otlp_takes_gzipped_protobuf_and_json_and_answers_in_kind() {
    let ingest = Ingest::start().await;
    let record = |body: &str, severity: i32, time: u64| LogRecord {
        body: text(body),
        severity_number: severity,
        time_unix_nano: time,
        ..Default::default()
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64;
    let request = export(
        "payments",
        vec![
            record("charged", 9, now),
            record("ancient", 21, 1_000_000_000),
        ],
    );
    let response = ingest
        .post("/v1/logs")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let warning = answer
        .partial_success
        .expect("a warning for the restamped line");
    assert_eq!(warning.rejected_log_records, 0);
    assert!(
        warning.error_message.contains("1 log records restamped"),
        "{warning:?}"
    );

    let json_request = json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "payments"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": now.to_string(), "severityText": "error",
            "body": {"stringValue": "declined"}, "traceId": "5b8efff798038103d269b633813fc60c",
            "attributes": [{"key": "amount", "value": {"doubleValue": 9.5}}]}]}]}]});
    let response = ingest
        .post("/v1/logs")
        .json(&json_request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    let lines = ingest.batches(3).await;
    assert!(lines
        .iter()
        .all(|(key, b)| key == "default/payments" && b.source == "otlp"));
    let lines: Vec<_> = lines.into_iter().flat_map(|(_, b)| b.lines).collect();
    assert_eq!(
        (lines[0].message.as_str(), lines[0].level),
        ("charged", Level::Info)
    );
    assert_eq!(
        (lines[1].level, lines[1].severity_number),
        (Level::Fatal, 21)
    );
    assert!(lines[1].attributes.contains_key("ordo.original_ts"));
    assert_eq!(
        (lines[2].level, lines[2].severity_number),
        (Level::Error, 17)
    );
    assert_eq!(
        lines[2].trace_id.as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(lines[2].attributes["amount"], "9.5");
}

#[tokio::test]
async fn otlp_refusals_are_google_rpc_status_in_the_request_encoding() {
    let ingest = Ingest::start().await;
    let response = ingest
        .post("/v1/logs")
        .header("content-type", "application/x-protobuf")
        .body(b"\xff\xff\xff not protobuf".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    // google.rpc.Status: field 1 `code` (varint), field 2 `message`.
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x08, 3], "INVALID_ARGUMENT");

    let response = ingest
        .post("/v1/logs")
        .json(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("OTLP"),
        "{status}"
    );

    let response = ingest
        .post("/v1/logs")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
}

#[tokio::test]
async fn elasticsearch_clients_see_an_elasticsearch_8_node() {
    let ingest = Ingest::start().await;
    for path in ["/es", "/es/"] {
        let response = ingest.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
        let info: Value = response.json().await.unwrap();
        assert!(
            info["version"]["number"]
                .as_str()
                .unwrap()
                .starts_with("8."),
            "{info}"
        );
    }
    let body = [
        json!({"index": {"_id": "a"}}),
        json!({"@timestamp": "2026-11-21T10:00:00.250Z", "message": "GET /",
               "log": {"level": "info"}, "http": {"status": 200}}),
        json!({"delete": {"_id": "a"}}),
        json!({"create": {"_index": "other"}}),
        json!({"message": "on its own index", "service.name": "edge", "log.level": "err"}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect::<String>();
    let response = ingest
        .post("/es/nginx/_bulk")
        .header(
            "content-type",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["errors"], true, "{answer}");
    assert_eq!(answer["items"][0]["index"]["status"], 201);
    assert_eq!(answer["items"][0]["index"]["_id"], "a");
    assert_eq!(answer["items"][1]["delete"]["status"], 400);
    assert_eq!(answer["items"][2]["create"]["_index"], "other");

    let batches = ingest.batches(2).await;
    let services: Vec<(&str, &str)> = batches
        .iter()
        .map(|(key, b)| (key.as_str(), b.lines[0].message.as_str()))
        .collect();
    assert_eq!(
        services,
        [
            ("default/nginx", "GET /"),
            ("default/edge", "on its own index")
        ]
    );
    assert_eq!(batches[0].1.lines[0].attributes["http.status"], "200");
    assert_eq!(batches[1].1.lines[0].level, Level::Error);

    // Errors carry the product header too, and Elasticsearch's error shape.
    for (request, status) in [
        (ingest.get("/es/_cat/indices"), 404),
        (
            ingest
                .post("/es/_bulk")
                .header("content-type", "text/plain")
                .body("x"),
            415,
        ),
        (
            ingest
                .post("/es/_bulk")
                .header("content-type", "application/x-ndjson")
                .body("not json\n"),
            400,
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["status"], status, "{error}");
        assert!(error["error"]["type"].is_string(), "{error}");
    }
    let wrong_method = ingest
        .http
        .delete(format!("{}/es/_bulk", ingest.url))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["x-elastic-product"], "Elasticsearch");
    let ping = ingest
        .http
        .head(format!("{}/es/", ingest.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200, "the clients' ping");
    assert_eq!(ping.headers()["x-elastic-product"], "Elasticsearch");
    let metrics = ingest.metrics();
    assert!(
        metrics.contains(
            r#"ordo_log_lines_rejected_total{protocol="elasticsearch",reason="invalid"} 1"#
        ),
        "{metrics}"
    );
}

/// `logproto.PushRequest` as Loki's clients encode it, to build requests by hand.
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Stream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
}

#[tokio::test]
async fn loki_pushes_answer_204_and_bad_ones_a_problem() {
    let ingest = Ingest::start().await;
    let now = chrono::Utc::now();
    let push = PushRequest {
        streams: vec![Stream {
            labels: r#"{app="shop", level="warn", region="eu"}"#.into(),
            entries: vec![Entry {
                timestamp: Some(prost_types::Timestamp {
                    seconds: now.timestamp(),
                    nanos: 0,
                }),
                line: "low stock".into(),
            }],
        }],
    };
    let block = snap::raw::Encoder::new()
        .compress_vec(&push.encode_to_vec())
        .unwrap();
    let response = ingest
        .post("/loki/api/v1/push")
        .header("content-type", "application/x-protobuf")
        .body(block)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let json_push = json!({"streams": [{"stream": {"job": "cron"},
        "values": [[now.timestamp_nanos_opt().unwrap().to_string(), "nightly run"]]}]});
    let response = ingest
        .post("/loki/api/v1/push")
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gzip(json_push.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let response = ingest
        .post("/loki/api/v1/push")
        .header("content-type", "application/x-protobuf")
        .body(push.encode_to_vec())
        .send()
        .await
        .unwrap();
    problem_of(response, 400, "malformed-body").await;

    let batches = ingest.batches(2).await;
    let lines: Vec<(&str, &str, Level)> = batches
        .iter()
        .map(|(key, b)| (key.as_str(), b.lines[0].message.as_str(), b.lines[0].level))
        .collect();
    assert_eq!(
        lines,
        [
            ("default/shop", "low stock", Level::Warn),
            ("default/cron", "nightly run", Level::Info)
        ]
    );
    assert_eq!(batches[0].1.lines[0].attributes["region"], "eu");
}

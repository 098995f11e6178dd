//! Real shippers written by others, against the role over HTTP and the real broker, checked
//! on the records that land on the topic: the OpenTelemetry Python SDK (OTLP/HTTP protobuf,
//! gzip), the official Elasticsearch Python client (`helpers.bulk`), python-logging-loki
//! (Loki's JSON push) and winston-loki (Loki's snappy protobuf push). `scripts/log-shippers.sh`
//! installs them (idempotent; `make services` runs it too); the clients live in
//! `tests/shippers/`.

mod common;

use common::Ingest;
use ordo_protocol::logs::{Level, LogEntry};
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

/// The directory of the shippers (`venv/`, `node/`), installed once per test binary.
async fn shippers() -> &'static Path {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_init(|| async {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/log-shippers.sh");
        let output = tokio::process::Command::new("bash")
            .arg(script)
            .output()
            .await
            .expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/log-shippers.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
    .await
}

/// Runs `program` on the client `client` of `tests/shippers/` with `args` and `env`;
/// returns what it printed.
async fn run(program: PathBuf, client: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/shippers")
        .join(client);
    let output = tokio::process::Command::new(program)
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the client runs");
    assert!(
        output.status.success(),
        "{client} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn python(client: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let python = shippers().await.join("venv/bin/python");
    run(python, client, args, env).await
}

fn messages(lines: &[LogEntry]) -> Vec<&str> {
    lines.iter().map(|l| l.message.as_str()).collect()
}

#[tokio::test]
async fn the_opentelemetry_python_sdk_exports_over_otlp_http_protobuf() {
    let ingest = Ingest::start().await;
    let printed = python(
        "otel_sdk.py",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ingest.url.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-ordo-tenant=acme"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod,host.name=web-1",
            ),
        ],
    )
    .await;
    let (trace_id, span_id) = printed.trim().split_once(' ').expect("trace and span ids");

    let batches = ingest.batches(3).await;
    for (key, batch) in &batches {
        assert_eq!(
            (key.as_str(), batch.tenant.as_str()),
            ("acme/checkout", "acme")
        );
        assert_eq!(batch.source, "otlp");
    }
    let lines: Vec<LogEntry> = batches.into_iter().flat_map(|(_, b)| b.lines).collect();
    assert_eq!(
        messages(&lines),
        ["cart loaded", "card declined", "payment service down"]
    );
    let levels: Vec<(Level, u8)> = lines.iter().map(|l| (l.level, l.severity_number)).collect();
    assert_eq!(
        levels,
        [(Level::Debug, 5), (Level::Warn, 13), (Level::Fatal, 21)]
    );
    let declined = &lines[1];
    assert_eq!(declined.trace_id.as_deref(), Some(trace_id));
    assert_eq!(declined.span_id.as_deref(), Some(span_id));
    assert_eq!(
        (declined.env.as_deref(), declined.host.as_deref()),
        (Some("prod"), Some("web-1"))
    );
    assert_eq!(declined.attributes["order_id"], "42");
    assert_eq!(declined.attributes["amount"], "9.5");
    assert_eq!(declined.component.as_deref(), Some("shop.payments"));
    assert_eq!(declined.attributes["telemetry.sdk.language"], "python");
    assert!(lines[0].trace_id.is_none(), "logged outside a span");
}

#[tokio::test]
async fn the_elasticsearch_python_client_bulk_helper_indexes_documents() {
    let ingest = Ingest::start().await;
    assert_eq!(python("es_bulk.py", &[&ingest.url], &[]).await.trim(), "2");

    let batches = ingest.batches(2).await;
    let keys: Vec<&str> = batches.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["acme/web", "acme/gateway"]);
    let lines: Vec<LogEntry> = batches.into_iter().flat_map(|(_, b)| b.lines).collect();
    assert_eq!(messages(&lines), ["GET /cart 200", "upstream timeout"]);
    assert_eq!(lines[0].ts.to_rfc3339(), "2026-11-21T10:00:00.250+00:00");
    assert_eq!(lines[0].attributes["http.response.status_code"], "200");
    assert_eq!(
        (lines[1].level, lines[1].host.as_deref()),
        (Level::Error, Some("edge-1"))
    );
    assert_eq!(
        lines[1].trace_id.as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
}

#[tokio::test]
async fn python_logging_loki_pushes_json() {
    let ingest = Ingest::start().await;
    python("loki_json.py", &[&ingest.url], &[]).await;

    let batches = ingest.batches(2).await;
    assert!(batches
        .iter()
        .all(|(key, b)| key == "default/billing" && b.source == "loki"));
    let lines: Vec<LogEntry> = batches.into_iter().flat_map(|(_, b)| b.lines).collect();
    assert_eq!(messages(&lines), ["invoice sent", "invoice overdue"]);
    assert_eq!((lines[0].level, lines[1].level), (Level::Info, Level::Warn));
    assert_eq!(lines[0].component.as_deref(), Some("billing"));
    assert_eq!(lines[1].attributes["customer"], "ada");
}

#[tokio::test]
async fn winston_loki_pushes_snappy_protobuf() {
    let ingest = Ingest::start().await;
    let modules = shippers().await.join("node/node_modules");
    let modules = modules.to_str().expect("a UTF-8 path");
    run(
        PathBuf::from("node"),
        "winston_loki.js",
        &[&ingest.url],
        &[("NODE_PATH", modules)],
    )
    .await;

    let batches = ingest.batches(2).await;
    let lines: Vec<(&str, &str, Level, Option<&str>)> = batches
        .iter()
        .flat_map(|(key, b)| {
            b.lines
                .iter()
                .map(move |l| (key.as_str(), l.message.as_str(), l.level, l.env.as_deref()))
        })
        .collect();
    assert_eq!(
        lines,
        [
            // winston-loki's own line format: the message, then the metadata as JSON.
            (
                "acme/frontend",
                r#"page rendered {"level":"info"}"#,
                Level::Info,
                Some("prod")
            ),
            (
                "acme/frontend",
                r#"hydration failed {"route":"/cart","level":"error"}"#,
                Level::Error,
                Some("prod")
            ),
        ]
    );
    let metrics = ingest.metrics();
    assert!(
        metrics.contains(r#"ordo_log_lines_accepted_total{protocol="loki"} 2"#),
        "{metrics}"
    );
}

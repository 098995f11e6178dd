//! Loki's push API, `POST /loki/api/v1/push`, as Promtail, Grafana Alloy, Fluent Bit's
//! `loki` output and the Loki client libraries send it: `logproto.PushRequest` in protobuf,
//! snappy-compressed (raw block format) with `Content-Type: application/x-protobuf`, or
//! JSON (`{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>", {metadata}]]}]}`).
//!
//! Stream labels map to the line: the first of `service`, `service_name`, `app`, `job` is the
//! service; `level`, `detected_level` or `severity` (python-logging-loki's) the level
//! (unknown names → `info`, the name kept);
//! `env` or `environment` the env; `host` or `hostname` the host; `component` or `logger`
//! (python-logging-loki's) the component; the rest are attributes.
//! Structured metadata adds `trace_id` and `span_id` (hex ids) and its other pairs as
//! attributes. Text that is not UTF-8 is taken with U+FFFD in place of the bad bytes.

use crate::body::{snappy_block, text};
use crate::error::IngestError;
use crate::line::{hex_id, parse_time_text, Line};
use chrono::DateTime;
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `logproto.PushRequest` and its parts, as Loki defines them (`pkg/push/push.proto`).
/// Strings are read as bytes so that invalid UTF-8 is replaced rather than refused. Public
/// for clients that push to Ordo, such as `ordo bench ingest`.
pub mod logproto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        /// The labels in Prometheus text form: `{app="api", level="info"}`.
        #[prost(bytes = "vec", tag = "1")]
        pub labels: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(bytes = "vec", tag = "2")]
        pub line: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

pub use logproto::PushRequest;

type Labels = BTreeMap<String, String>;

/// The lines of a push body of `media_type` (`application/x-protobuf`: a snappy block,
/// decompressed within `limit` bytes); at most `max_lines`.
pub fn decode(
    media_type: &str,
    body: &[u8],
    limit: usize,
    max_lines: usize,
) -> Result<Vec<Line>, IngestError> {
    let mut lines = Vec::new();
    let mut add = |labels: &Labels, ts, message: String, metadata: Labels| {
        if lines.len() == max_lines {
            return Err(IngestError::TooManyLines { limit: max_lines });
        }
        lines.push(line(labels, ts, message, metadata));
        Ok(())
    };
    match media_type {
        // Like Loki, a body without a Content-Type is protobuf.
        "application/x-protobuf" | "application/protobuf" | "" => {
            let request = PushRequest::decode(&snappy_block(body, limit)?[..])
                .map_err(|e| IngestError::malformed(format!("not a Loki PushRequest: {e}")))?;
            for stream in request.streams {
                let labels = parse_labels(&text(&stream.labels)).map_err(|reason| {
                    IngestError::malformed(format!("stream labels: {reason}"))
                })?;
                for entry in stream.entries {
                    let ts = entry.timestamp.and_then(|t| {
                        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    });
                    let metadata = entry
                        .structured_metadata
                        .into_iter()
                        .map(|p| (text(&p.name).into_owned(), text(&p.value).into_owned()))
                        .collect();
                    add(&labels, ts, text(&entry.line).into_owned(), metadata)?;
                }
            }
        }
        "application/json" => {
            let request: JsonPush = serde_json::from_str(&text(body))
                .map_err(|e| IngestError::malformed(format!("not a Loki push request: {e}")))?;
            for stream in request.streams {
                for JsonEntry(ts, message, metadata) in stream.values {
                    let ts = parse_time_text(&ts).map_err(|reason| {
                        IngestError::malformed(format!("entry timestamp: {reason}"))
                    })?;
                    add(&stream.stream, Some(ts), message, metadata.unwrap_or_default())?;
                }
            }
        }
        other => {
            return Err(IngestError::Unsupported(format!(
                "Content-Type must be application/x-protobuf (snappy) or application/json (got {other})"
            )))
        }
    }
    Ok(lines)
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Labels,
    values: Vec<JsonEntry>,
}

/// `["<unix ns>", "<line>"]` or with structured metadata `["<ns>", "<line>", {…}]`.
#[derive(Deserialize)]
struct JsonEntry(String, String, #[serde(default)] Option<Labels>);

fn line(
    labels: &Labels,
    ts: Option<DateTime<chrono::Utc>>,
    message: String,
    metadata: Labels,
) -> Line {
    let mut line = Line::new(message);
    line.ts = ts;
    let mut attributes = labels.clone();
    let first = |attributes: &mut Labels, names: &[&str]| {
        let name = names.iter().find(|n| attributes.contains_key(**n))?;
        attributes.remove(*name)
    };
    line.service = first(&mut attributes, &["service", "service_name", "app", "job"]);
    line.env = first(&mut attributes, &["env", "environment"]);
    line.host = first(&mut attributes, &["host", "hostname"]);
    line.component = first(&mut attributes, &["component", "logger"]);
    let mut level = first(&mut attributes, &["level", "detected_level", "severity"]);
    for (name, value) in metadata {
        match name.as_str() {
            "trace_id" if hex_id(&value, 16).is_some() => line.trace_id = hex_id(&value, 16),
            "span_id" if hex_id(&value, 8).is_some() => line.span_id = hex_id(&value, 8),
            "level" | "detected_level" | "severity" if level.is_none() => level = Some(value),
            _ => {
                attributes.insert(name, value);
            }
        }
    }
    line.attributes = attributes;
    line.set_lenient_level(level.as_deref(), None);
    line
}

/// Labels in Prometheus text form, `{name="value", …}`, values with `\\`, `\"` and `\n`
/// escapes.
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    let mut chars = text.trim().chars().peekable();
    if chars.next() != Some('{') {
        return Err(format!("{text:?} does not start with {{"));
    }
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.next_if_eq(&'}').is_some() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if name.is_empty() || chars.next() != Some('=') {
            return Err(format!("{text:?}: expected name=\"value\""));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('"') {
            return Err(format!("{text:?}: the value of {name} is not quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err(format!("{text:?}: unterminated value of {name}")),
                },
                Some(c) => value.push(c),
                None => return Err(format!("{text:?}: unterminated value of {name}")),
            }
        }
        labels.insert(name, value);
    }
    if chars.next().is_some() {
        return Err(format!("{text:?}: text after the closing }}"));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_protocol::logs::Level;
    use serde_json::json;

    #[test]
    fn labels_parse_in_prometheus_text_form() {
        let labels =
            parse_labels(r#"{app="api", level="warn",msg="say \"hi\"\n", empty=""}"#).unwrap();
        assert_eq!(labels["app"], "api");
        assert_eq!(labels["msg"], "say \"hi\"\n");
        assert_eq!(labels["empty"], "");
        assert_eq!(parse_labels("{}").unwrap().len(), 0);
        for bad in [
            "app=\"x\"",
            "{app=x}",
            "{app=\"x}",
            "{=\"x\"}",
            "{a=\"b\"} trailing",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_pushes_map_labels_and_metadata() {
        let body = json!({"streams": [{
        "stream": {"app": "api", "job": "varlogs", "level": "WARNING", "env": "prod",
                   "hostname": "web-1", "region": "eu"},
        "values": [
            ["1795255200250000000", "GET /health 200"],
            ["1795255200260000000", "traced", {"trace_id": "5b".repeat(16), "user": "ada"}]
        ]}]});
        let lines = decode("application/json", body.to_string().as_bytes(), 1 << 20, 10).unwrap();
        assert_eq!(lines.len(), 2);
        let line = &lines[0];
        assert_eq!(line.message, "GET /health 200");
        assert_eq!(line.service.as_deref(), Some("api"));
        assert_eq!(
            (line.env.as_deref(), line.host.as_deref()),
            (Some("prod"), Some("web-1"))
        );
        assert_eq!(line.level, Level::Warn);
        assert_eq!(line.ts.unwrap().timestamp_millis(), 1_795_255_200_250);
        assert_eq!(line.attributes["job"], "varlogs");
        assert_eq!(line.attributes["region"], "eu");
        assert!(!line.attributes.contains_key("app"));
        assert_eq!(lines[1].trace_id.as_deref(), Some("5b".repeat(16).as_str()));
        assert_eq!(lines[1].attributes["user"], "ada");
        assert_eq!(
            decode("application/json", body.to_string().as_bytes(), 1 << 20, 1).unwrap_err(),
            IngestError::TooManyLines { limit: 1 }
        );
    }

    #[test]
    fn snappy_protobuf_pushes_decode() {
        let request = PushRequest {
            streams: vec![logproto::Stream {
                labels: br#"{service_name="billing", detected_level="err"}"#.to_vec(),
                entries: vec![logproto::Entry {
                    timestamp: Some(logproto::Timestamp {
                        seconds: 1_795_255_200,
                        nanos: 250_000_000,
                    }),
                    line: b"charge failed \xff".to_vec(),
                    structured_metadata: vec![logproto::LabelPair {
                        name: b"span_id".to_vec(),
                        value: b"eeeeeeeeeeeeeeee".to_vec(),
                    }],
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let lines = decode("application/x-protobuf", &body, 1 << 20, 10).unwrap();
        let line = &lines[0];
        assert_eq!(line.message, "charge failed \u{FFFD}");
        assert_eq!(
            (line.service.as_deref(), line.level),
            (Some("billing"), Level::Error)
        );
        assert_eq!(line.span_id.as_deref(), Some("eeeeeeeeeeeeeeee"));
        assert_eq!(line.ts.unwrap().timestamp_millis(), 1_795_255_200_250);
        // Not snappy, or not protobuf: 400.
        let error = decode(
            "application/x-protobuf",
            &request.encode_to_vec(),
            1 << 20,
            10,
        );
        assert_eq!(error.unwrap_err().status(), 400);
    }

    #[test]
    fn bad_pushes_are_refused() {
        let bad_ts = json!({"streams": [{"stream": {}, "values": [["soon", "x"]]}]});
        for body in [json!({"nope": []}), bad_ts] {
            let error = decode("application/json", body.to_string().as_bytes(), 1 << 20, 10);
            assert_eq!(error.unwrap_err().status(), 400, "{body}");
        }
        assert_eq!(
            decode("text/plain", b"x", 10, 10).unwrap_err().status(),
            415
        );
    }
}

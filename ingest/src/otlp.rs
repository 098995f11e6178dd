//! OTLP/HTTP logs, `POST /v1/logs`: `ExportLogsServiceRequest` as binary protobuf
//! (`application/x-protobuf`) or OTLP's JSON encoding (`application/json`), with the
//! messages of the `opentelemetry-proto` crate. Its serde support reads OTLP JSON's own
//! rules: trace and span ids as hex, 64-bit integers as strings or numbers, attribute
//! values as `{"stringValue": …}` objects, enums as integers. (Two gaps it has are closed
//! here or accepted: a request without `resourceLogs` is read as empty, and an attribute
//! value `{}` (empty AnyValue) is refused with a 400.)
//!
//! Mapping: the resource's `service.name` is the service, `deployment.environment.name` (or
//! the older `deployment.environment`) the env, `host.name` the host, the instrumentation
//! scope's name (the logger) the component; the resource's other attributes, the scope's
//! version (`otel.scope.version`) and the record's attributes (which win a conflict) become
//! the line's attributes. The body is the message
//! (a non-string body as its JSON text); the time is `timeUnixNano`, else
//! `observedTimeUnixNano`, else the time received; the level is the severity number's when
//! it has one (1–24), else the severity text's, else `info` (see [`Line::set_lenient_level`]).
//!
//! Answers are in the request's encoding: `ExportLogsServiceResponse` (with `partial_success`
//! carrying warnings, e.g. lines whose time was replaced) or, on failure, a
//! `google.rpc.Status` whose `code` follows the HTTP status.

use crate::error::IngestError;
use crate::line::{from_unix_nanos, hex_id_bytes, Line};
use axum::http::StatusCode;
use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use ordo_protocol::logs::{flatten_into, Attributes};
use prost::Message;
use serde_json::{Map, Value};

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding of a request's media type; answers to anything else use protobuf.
    pub fn of(media_type: &str) -> Result<Self, IngestError> {
        match media_type {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            other => Err(IngestError::Unsupported(format!(
                "Content-Type must be application/x-protobuf or application/json (got {})",
                if other.is_empty() { "none" } else { other }
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Reads the JSON request even when `resourceLogs` is absent (the crate's message requires
/// it, protobuf's JSON mapping does not).
#[derive(serde::Deserialize)]
struct JsonRequest {
    #[serde(default, rename = "resourceLogs")]
    resource_logs: Vec<ResourceLogs>,
}

/// The lines of an export request; at most `max_lines`.
pub fn decode(encoding: Encoding, body: &[u8], max_lines: usize) -> Result<Vec<Line>, IngestError> {
    let resource_logs = match encoding {
        Encoding::Protobuf => {
            ExportLogsServiceRequest::decode(body)
                .map_err(|e| {
                    IngestError::malformed(format!("not an OTLP ExportLogsServiceRequest: {e}"))
                })?
                .resource_logs
        }
        Encoding::Json => {
            serde_json::from_slice::<JsonRequest>(body)
                .map_err(|e| IngestError::malformed(format!("not an OTLP/JSON logs request: {e}")))?
                .resource_logs
        }
    };
    let count: usize = resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    if count > max_lines {
        return Err(IngestError::TooManyLines { limit: max_lines });
    }
    let mut lines = Vec::with_capacity(count);
    for resource_logs in resource_logs {
        // What every line of the resource shares.
        let mut resource = Line::new(String::new());
        let mut attributes = Map::new();
        let resource_attributes = resource_logs.resource.map(|r| r.attributes);
        for KeyValue { key, value, .. } in resource_attributes.unwrap_or_default() {
            match (key.as_str(), json_value(value)) {
                ("service.name", Value::String(name)) => resource.service = Some(name),
                ("deployment.environment.name", Value::String(env)) => resource.env = Some(env),
                ("deployment.environment", Value::String(env)) => {
                    resource.env.get_or_insert(env);
                }
                ("host.name", Value::String(host)) => resource.host = Some(host),
                (_, value) => {
                    attributes.insert(key, value);
                }
            }
        }
        let mut resource_attributes = Attributes::new();
        flatten_into(&mut resource_attributes, None, attributes);
        for scope_logs in resource_logs.scope_logs {
            let mut scoped = resource_attributes.clone();
            let mut component = None;
            if let Some(scope) = scope_logs.scope {
                if !scope.version.is_empty() {
                    scoped.insert("otel.scope.version".to_owned(), scope.version);
                }
                component = Some(scope.name).filter(|name| !name.is_empty());
                flatten_into(&mut scoped, None, key_values(scope.attributes));
            }
            for record in scope_logs.log_records {
                let message = match record.body.map(|body| json_value(Some(body))) {
                    Some(Value::String(text)) => text,
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                };
                let mut line = Line {
                    message,
                    ts: from_unix_nanos(record.time_unix_nano)
                        .or_else(|| from_unix_nanos(record.observed_time_unix_nano)),
                    trace_id: hex_id_bytes(&record.trace_id, 16),
                    span_id: hex_id_bytes(&record.span_id, 8),
                    attributes: scoped.clone(),
                    component: component.clone(),
                    ..resource.clone()
                };
                flatten_into(&mut line.attributes, None, key_values(record.attributes));
                if !record.event_name.is_empty() {
                    line.attributes
                        .insert("event.name".to_owned(), record.event_name);
                }
                line.set_lenient_level(Some(&record.severity_text), Some(record.severity_number));
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

fn key_values(values: Vec<KeyValue>) -> Map<String, Value> {
    values
        .into_iter()
        .map(|KeyValue { key, value, .. }| (key, json_value(value)))
        .collect()
}

/// An attribute value as JSON: kvlists become objects (flattened into dotted keys later),
/// arrays arrays, bytes base64.
fn json_value(value: Option<AnyValue>) -> Value {
    match value.and_then(|v| v.value) {
        None => Value::Null,
        Some(any_value::Value::StringValue(text)) => Value::String(text),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::ArrayValue(array)) => Value::Array(
            array
                .values
                .into_iter()
                .map(|v| json_value(Some(v)))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(list)) => Value::Object(key_values(list.values)),
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        // An index into a profile's string table: only the profiles signal uses it.
        Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
    }
}

/// The success answer: `partial_success` only when lines were rejected or a rule changed
/// some (a warning, which OTLP allows with 0 rejected).
pub fn response(encoding: Encoding, rejected: i64, warning: Option<String>) -> Vec<u8> {
    let partial_success = (rejected > 0 || warning.is_some()).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected,
        error_message: warning.unwrap_or_default(),
    });
    match (encoding, partial_success) {
        (Encoding::Protobuf, partial_success) => {
            ExportLogsServiceResponse { partial_success }.encode_to_vec()
        }
        // Written by hand: the crate's serde would write `"partialSuccess": null` and the
        // int64 as a number, where protobuf's JSON mapping leaves out an unset message and
        // writes 64-bit integers as strings.
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(partial)) => serde_json::to_vec(&serde_json::json!({
            "partialSuccess": {
                "rejectedLogRecords": partial.rejected_log_records.to_string(),
                "errorMessage": partial.error_message,
            }
        }))
        .expect("a response is plain JSON"),
    }
}

/// `google.rpc.Status`, the body of every OTLP failure (its `details` left empty).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The failure body for `error`, in `encoding`.
pub fn status(encoding: Encoding, error: &IngestError) -> Vec<u8> {
    // google.rpc.Code: INVALID_ARGUMENT 3, RESOURCE_EXHAUSTED 8, UNAVAILABLE 14.
    let code = match error.status() {
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 3,
    };
    let status = Status {
        code,
        message: error.to_string(),
    };
    match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).expect("a status is plain JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use ordo_protocol::logs::Level;
    use serde_json::json;

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        string("service.name", "checkout"),
                        string("deployment.environment.name", "prod"),
                        string("host.name", "web-1"),
                        string("telemetry.sdk.language", "python"),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.payments".into(),
                        ..Default::default()
                    }),
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_795_255_200_250_000_000,
                        severity_number: 13,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("card declined".into())),
                        }),
                        attributes: vec![
                            string("order.id", "42"),
                            KeyValue {
                                key: "retries".into(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(2)),
                                }),
                                ..Default::default()
                            },
                        ],
                        trace_id: vec![0x5b; 16],
                        span_id: vec![0xee; 8],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn check(line: &Line) {
        assert_eq!(line.message, "card declined");
        assert_eq!(line.service.as_deref(), Some("checkout"));
        assert_eq!(
            (line.env.as_deref(), line.host.as_deref()),
            (Some("prod"), Some("web-1"))
        );
        assert_eq!(
            line.ts.unwrap().to_rfc3339(),
            "2026-11-21T10:00:00.250+00:00"
        );
        assert_eq!(
            (line.level, line.severity_number),
            (Level::Warn, 13),
            "the number wins"
        );
        assert_eq!(line.trace_id.as_deref(), Some("5b".repeat(16).as_str()));
        assert_eq!(line.span_id.as_deref(), Some("ee".repeat(8).as_str()));
        assert_eq!(line.attributes["order.id"], "42");
        assert_eq!(line.attributes["retries"], "2");
        assert_eq!(line.component.as_deref(), Some("app.payments"));
        assert_eq!(line.attributes["telemetry.sdk.language"], "python");
        assert!(!line.attributes.contains_key("service.name"));
    }

    #[test]
    fn protobuf_requests_map_resource_scope_and_record() {
        let body = request().encode_to_vec();
        let lines = decode(Encoding::Protobuf, &body, 10).unwrap();
        assert_eq!(lines.len(), 1);
        check(&lines[0]);
        assert_eq!(
            decode(Encoding::Protobuf, &body, 0).unwrap_err(),
            IngestError::TooManyLines { limit: 0 }
        );
    }

    #[test]
    fn json_requests_read_hex_ids_and_string_integers() {
        let body = json!({"resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "checkout"}},
                {"key": "deployment.environment", "value": {"stringValue": "prod"}},
                {"key": "host.name", "value": {"stringValue": "web-1"}},
                {"key": "telemetry.sdk.language", "value": {"stringValue": "python"}}]},
            "scopeLogs": [{"scope": {"name": "app.payments"}, "logRecords": [{
                "timeUnixNano": "1795255200250000000", "severityNumber": 13,
                "severityText": "INFO", "body": {"stringValue": "card declined"},
                "attributes": [{"key": "order.id", "value": {"stringValue": "42"}},
                               {"key": "retries", "value": {"intValue": "2"}}],
                "traceId": "5b".repeat(16), "spanId": "EE".repeat(8)}]}]}]});
        let lines = decode(Encoding::Json, body.to_string().as_bytes(), 10).unwrap();
        check(&lines[0]);
        // Numbers where strings are expected, and an empty request, are read too.
        let numeric = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": 1_795_255_200_250_000_000_u64, "body": {"kvlistValue": {"values": [
                {"key": "a", "value": {"intValue": 1}}]}}}]}]}]});
        let line = &decode(Encoding::Json, numeric.to_string().as_bytes(), 10).unwrap()[0];
        assert_eq!(line.message, r#"{"a":1}"#);
        assert_eq!(line.ts.unwrap().timestamp_millis(), 1_795_255_200_250);
        assert!(decode(Encoding::Json, b"{}", 10).unwrap().is_empty());
        assert_eq!(
            decode(Encoding::Json, b"{\"resourceLogs\": 5}", 10)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn unknown_severities_become_info_with_the_text_kept() {
        let mut request = request();
        let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
        record.severity_number = 0;
        record.severity_text = "Chatty".into();
        let lines = decode(Encoding::Protobuf, &request.encode_to_vec(), 10).unwrap();
        assert_eq!(lines[0].level, Level::Info);
        assert_eq!(lines[0].attributes[crate::line::ORIGINAL_LEVEL], "Chatty");
    }

    #[test]
    fn answers_are_in_the_request_encoding() {
        assert!(response(Encoding::Protobuf, 0, None).is_empty());
        let warned = response(Encoding::Json, 0, Some("2 timestamps replaced".into()));
        let warned: Value = serde_json::from_slice(&warned).unwrap();
        assert_eq!(
            warned["partialSuccess"]["errorMessage"],
            "2 timestamps replaced"
        );
        let decoded =
            ExportLogsServiceResponse::decode(&response(Encoding::Protobuf, 3, None)[..]).unwrap();
        assert_eq!(decoded.partial_success.unwrap().rejected_log_records, 3);

        let limited = IngestError::RateLimited {
            tenant: "acme".into(),
            retry_after_secs: 2,
        };
        let body: Value = serde_json::from_slice(&status(Encoding::Json, &limited)).unwrap();
        assert_eq!(body["code"], 8);
        let decoded = Status::decode(&status(Encoding::Protobuf, &IngestError::Busy)[..]).unwrap();
        assert_eq!(decoded.code, 14);
    }
}

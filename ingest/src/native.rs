//! Ordo's own log API, `POST /api/v1/logs`: one JSON object, a JSON array of them
//! (`application/json`), or one object per line (`application/x-ndjson`,
//! `application/jsonl`). This is the strict protocol: a line the rules cannot take as it is
//! refuses the whole request (422 naming the line's `index` and the `field`), so a client
//! learns of its mistake instead of storing lines it did not mean.

use crate::body::text;
use crate::error::IngestError;
use crate::line::{hex_id, parse_time, Line};
use ordo_protocol::logs::{flatten_into, insert_value, unknown_level, Attributes, Level};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Media types of one JSON object per line.
const NDJSON: [&str; 5] = [
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "application/x-ldjson",
];

/// The lines of a request body of `media_type`; at most `max_lines`.
pub fn decode(media_type: &str, body: &[u8], max_lines: usize) -> Result<Vec<Line>, IngestError> {
    let body = text(body);
    let objects = if NDJSON.contains(&media_type) {
        ndjson(&body, max_lines)?
    } else if ordo_common::http::is_json(media_type) {
        json(&body, max_lines)?
    } else {
        let got = if media_type.is_empty() {
            "none"
        } else {
            media_type
        };
        return Err(IngestError::Unsupported(format!(
            "Content-Type must be application/json or application/x-ndjson (got {got})"
        )));
    };
    objects
        .into_iter()
        .enumerate()
        .map(|(index, value)| match value {
            Value::Object(object) => line(index, object),
            _ => Err(IngestError::invalid(
                Some(index),
                "line",
                "must be a JSON object",
            )),
        })
        .collect()
}

fn json(body: &str, max_lines: usize) -> Result<Vec<Value>, IngestError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| IngestError::malformed(format!("malformed JSON: {e}")))?;
    let values = match value {
        Value::Array(values) => values,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(IngestError::invalid(
                None,
                "body",
                "must be a JSON object or an array of objects",
            ))
        }
    };
    check_count(values.len(), max_lines)?;
    Ok(values)
}

fn ndjson(body: &str, max_lines: usize) -> Result<Vec<Value>, IngestError> {
    let mut values = Vec::new();
    for (number, text) in body.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        check_count(values.len() + 1, max_lines)?;
        let value = serde_json::from_str(text).map_err(|e| IngestError::Malformed {
            detail: format!(
                "line {} (body line {}): malformed JSON: {e}",
                values.len(),
                number + 1
            ),
            index: Some(values.len()),
        })?;
        values.push(value);
    }
    Ok(values)
}

fn check_count(count: usize, max_lines: usize) -> Result<(), IngestError> {
    if count > max_lines {
        return Err(IngestError::TooManyLines { limit: max_lines });
    }
    Ok(())
}

/// One line object. Members: `message` (required), `level` (default `info`), `service`
/// (alias `source`; default `unknown_service`), `ts`, `attributes` (alias `metadata`),
/// `job_id`, `trace_id`, `span_id`, `env`, `host`, `component`; any other member becomes an
/// attribute.
fn line(index: usize, mut object: Map<String, Value>) -> Result<Line, IngestError> {
    let invalid = |field: &str, reason: String| IngestError::invalid(Some(index), field, reason);
    let mut take = |field: &str| -> Result<Option<String>, IngestError> {
        match object.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(invalid(field, "must be a string".into())),
        }
    };
    let message = take("message")?.ok_or_else(|| invalid("message", "is required".into()))?;
    let mut line = Line::new(message);
    if let Some(name) = take("level")? {
        let level = Level::parse(&name).ok_or_else(|| invalid("level", unknown_level(&name)))?;
        line.set_level(level);
    }
    line.service = match take("service")? {
        Some(service) => Some(service),
        None => take("source")?,
    };
    line.env = take("env")?;
    line.host = take("host")?;
    line.component = take("component")?;
    if let Some(id) = take("job_id")? {
        let id = Uuid::parse_str(&id).map_err(|_| invalid("job_id", "must be a UUID".into()))?;
        line.job_id = Some(id);
    }
    if let Some(id) = take("trace_id")? {
        let id =
            hex_id(&id, 16).ok_or_else(|| invalid("trace_id", "must be 32 hex digits".into()))?;
        line.trace_id = Some(id);
    }
    if let Some(id) = take("span_id")? {
        let id =
            hex_id(&id, 8).ok_or_else(|| invalid("span_id", "must be 16 hex digits".into()))?;
        line.span_id = Some(id);
    }
    match object.remove("ts") {
        None | Some(Value::Null) => {}
        Some(ts) => line.ts = Some(parse_time(&ts).map_err(|reason| invalid("ts", reason))?),
    }
    let metadata = object_member(&mut object, "metadata").map_err(|r| invalid("metadata", r))?;
    let attributes =
        object_member(&mut object, "attributes").map_err(|r| invalid("attributes", r))?;
    // Other members first, so that `attributes` (then `metadata`) win a conflict.
    let mut all = Attributes::new();
    for (key, value) in object {
        insert_value(&mut all, key, value);
    }
    flatten_into(&mut all, None, metadata);
    flatten_into(&mut all, None, attributes);
    line.attributes = all;
    Ok(line)
}

fn object_member(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<Map<String, Value>, String> {
    match object.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(members)) => Ok(members),
        Some(_) => Err("must be a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(value: Value) -> Result<Line, IngestError> {
        let mut lines = decode("application/json", value.to_string().as_bytes(), 10)?;
        Ok(lines.remove(0))
    }

    #[test]
    fn a_full_line_maps_every_field() {
        let line = one(json!({
            "message": "card declined", "level": "WARNING", "source": "checkout",
            "ts": 1_795_255_200_250_u64, "metadata": {"order": {"id": 42}, "k": "meta"},
            "attributes": {"k": "attr"}, "job_id": "0193a3c4-0000-7000-8000-000000000001",
            "trace_id": "5B8EFFF798038103D269B633813FC60C", "span_id": "eee19b7ec3c1b174",
            "env": "prod", "host": "web-1", "component": "cards", "region": "eu", "retry": 2
        }))
        .unwrap();
        assert_eq!(line.message, "card declined");
        assert_eq!((line.level, line.severity_number), (Level::Warn, 13));
        assert_eq!(line.service.as_deref(), Some("checkout"));
        assert_eq!(
            line.ts.unwrap().to_rfc3339(),
            "2026-11-21T10:00:00.250+00:00"
        );
        assert_eq!(
            line.trace_id.as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(line.span_id.as_deref(), Some("eee19b7ec3c1b174"));
        assert_eq!(
            (line.env.as_deref(), line.host.as_deref()),
            (Some("prod"), Some("web-1"))
        );
        assert!(line.job_id.is_some());
        assert_eq!(line.component.as_deref(), Some("cards"));
        let attributes: Vec<(&str, &str)> = line
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("k", "attr"),
                ("order.id", "42"),
                ("region", "eu"),
                ("retry", "2")
            ]
        );
    }

    #[test]
    fn defaults_fill_what_a_line_leaves_out() {
        let line = one(json!({"message": "hi"})).unwrap();
        assert_eq!(line, Line::new("hi".into()));
        let line = one(json!({"message": "hi", "service": "api", "source": "file.log"})).unwrap();
        assert_eq!(line.service.as_deref(), Some("api"));
        assert_eq!(line.attributes["source"], "file.log");
    }

    #[test]
    fn arrays_and_ndjson_carry_many_lines() {
        let array = json!([{"message": "a"}, {"message": "b"}]).to_string();
        assert_eq!(
            decode("application/json", array.as_bytes(), 10)
                .unwrap()
                .len(),
            2
        );
        let ndjson = "{\"message\":\"a\"}\n\n  \n{\"message\":\"b\"}\r\n{\"message\":\"c\"}";
        for media_type in ["application/x-ndjson", "application/jsonl"] {
            let lines = decode(media_type, ndjson.as_bytes(), 10).unwrap();
            let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
            assert_eq!(messages, ["a", "b", "c"]);
        }
        let error = decode("application/x-ndjson", ndjson.as_bytes(), 2).unwrap_err();
        assert_eq!(error, IngestError::TooManyLines { limit: 2 });
    }

    #[test]
    fn bad_lines_name_their_index_and_field() {
        let cases = [
            (
                json!([{"message": "ok"}, {"message": "x", "level": "loud"}]),
                1,
                "level",
            ),
            (json!([{"level": "info"}]), 0, "message"),
            (json!([{"message": 5}]), 0, "message"),
            (json!([{"message": "x", "ts": "soon"}]), 0, "ts"),
            (json!([{"message": "x", "job_id": "42"}]), 0, "job_id"),
            (json!([{"message": "x", "trace_id": "abc"}]), 0, "trace_id"),
            (json!([{"message": "x", "span_id": "abc"}]), 0, "span_id"),
            (
                json!([{"message": "x", "attributes": [1]}]),
                0,
                "attributes",
            ),
            (json!([{"message": "x"}, 7]), 1, "line"),
        ];
        for (body, index, field) in cases {
            let error = decode("application/json", body.to_string().as_bytes(), 10).unwrap_err();
            match &error {
                IngestError::Invalid { error: e, index: i } => {
                    assert_eq!((e.field.as_str(), *i), (field, Some(index)), "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
            assert_eq!(error.status(), 422);
        }
        let error = decode("application/json", b"[1,", 10).unwrap_err();
        assert_eq!(error.status(), 400);
        let error = decode("application/x-ndjson", b"{\"message\":\"a\"}\n{oops", 10).unwrap_err();
        assert_eq!(
            (
                error.status().as_u16(),
                error.problem().to_json()["index"].clone()
            ),
            (400, json!(1))
        );
        assert!(error.to_string().contains("body line 2"), "{error}");
        assert_eq!(decode("text/plain", b"hi", 10).unwrap_err().status(), 415);
        assert_eq!(
            decode("application/json", b"\"hi\"", 10)
                .unwrap_err()
                .status(),
            422
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let lines = decode("application/json", b"{\"message\":\"caf\xe9\"}", 10).unwrap();
        assert_eq!(lines[0].message, "caf\u{FFFD}");
    }
}

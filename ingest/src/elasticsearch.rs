//! The Elasticsearch bulk API under `/es` (`POST /es/_bulk`, `POST /es/{index}/_bulk`), so
//! that Elasticsearch clients and shippers (the official clients, Filebeat, Fluent Bit,
//! Vector, Logstash) send logs here with only their URL changed. Index and create actions
//! add a document; update and delete answer a per-item error (a log store only appends).
//!
//! Documents map from ECS, whether their fields are dotted (`"log.level": "warn"`) or nested
//! (`"log": {"level": "warn"}`): `@timestamp` → time, `message` → message, `log.level` →
//! level (unknown names → `info`, the name kept), `service.name` → service (else the index
//! name), `service.environment` or `deployment.environment` → env, `host.name` (or
//! `host.hostname`) → host, `log.logger` → component, `trace.id` and `span.id` → ids (when they are hex ids of the
//! right length); every other field becomes an attribute under its dotted name.
//!
//! Like Elasticsearch, a document that cannot be read (not a JSON object, an unreadable
//! `@timestamp`) fails alone: its item has a 400 and an error, `errors` is true, the other
//! documents are stored. A malformed action line refuses the whole request.

use crate::body::text;
use crate::error::IngestError;
use crate::line::{hex_id, parse_time, Line};
use axum::http::StatusCode;
use ordo_protocol::logs::insert_value;
use serde_json::{json, Map, Value};

/// The version a client sees in `GET /es/`: clients for 8.x accept it.
pub const VERSION: &str = "8.17.0";

/// Bulk media types Elasticsearch 8 takes (the official clients send the `vnd` ones, with
/// `compatible-with=8`).
const MEDIA_TYPES: [&str; 4] = [
    "application/x-ndjson",
    "application/json",
    "application/vnd.elasticsearch+x-ndjson",
    "application/vnd.elasticsearch+json",
];

/// Refuses a bulk body of another media type (415).
pub fn check_media_type(media_type: &str) -> Result<(), IngestError> {
    if MEDIA_TYPES.contains(&media_type) {
        Ok(())
    } else {
        Err(IngestError::Unsupported(format!(
            "Content-Type header [{media_type}] is not supported; send application/x-ndjson"
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Index,
    Create,
    Update,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One action of the request and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub action: Action,
    pub index: String,
    pub id: String,
    /// `Err((status, type, reason))` when the item was refused.
    pub outcome: Result<(), (u16, &'static str, String)>,
}

/// A decoded bulk request: every item in order, and the lines of the accepted ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    pub items: Vec<Item>,
    pub lines: Vec<Line>,
}

impl Bulk {
    pub fn rejected(&self) -> usize {
        self.items.iter().filter(|i| i.outcome.is_err()).count()
    }
}

/// The bulk body (NDJSON: an action line, then a document line for index and create); the
/// index of the path (`/es/{index}/_bulk`) applies to actions that name none.
pub fn decode(
    path_index: Option<&str>,
    body: &[u8],
    max_lines: usize,
) -> Result<Bulk, IngestError> {
    let body = text(body);
    let mut rows = body.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut bulk = Bulk {
        items: Vec::new(),
        lines: Vec::new(),
    };
    while let Some(action_line) = rows.next() {
        let number = bulk.items.len();
        let (action, meta) = action(action_line).map_err(|reason| IngestError::Malformed {
            detail: format!("malformed action/metadata line of item {number}: {reason}"),
            index: Some(number),
        })?;
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(path_index)
            .unwrap_or_default()
            .to_owned();
        let id = meta
            .get("_id")
            .and_then(Value::as_str)
            .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned);
        let source = match action {
            Action::Delete => None,
            _ => Some(rows.next().ok_or_else(|| IngestError::Malformed {
                detail: format!("item {number} ({}) has no document line", action.as_str()),
                index: Some(number),
            })?),
        };
        let outcome = match (action, source) {
            (Action::Index | Action::Create, Some(source)) => {
                if bulk.lines.len() == max_lines {
                    return Err(IngestError::TooManyLines { limit: max_lines });
                }
                document(&index, source).map(|line| bulk.lines.push(line))
            }
            _ => Err((
                400,
                "action_request_validation_exception",
                format!(
                    "{} is not supported: Ordo's log ingest only adds documents (index, create)",
                    action.as_str()
                ),
            )),
        };
        bulk.items.push(Item {
            action,
            index,
            id,
            outcome,
        });
    }
    Ok(bulk)
}

fn action(line: &str) -> Result<(Action, Map<String, Value>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let Value::Object(object) = value else {
        return Err("expected a JSON object".into());
    };
    let mut members = object.into_iter();
    let (Some((name, meta)), None) = (members.next(), members.next()) else {
        return Err("expected one action (index, create, update or delete)".into());
    };
    let action = match name.as_str() {
        "index" => Action::Index,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        other => return Err(format!("unknown action [{other}]")),
    };
    match meta {
        Value::Object(meta) => Ok((action, meta)),
        _ => Err(format!("the metadata of [{name}] must be a JSON object")),
    }
}

fn document(index: &str, source: &str) -> Result<Line, (u16, &'static str, String)> {
    let parse_error = |reason: String| (400, "mapper_parsing_exception", reason);
    let doc: Value = serde_json::from_str(source)
        .map_err(|e| parse_error(format!("failed to parse the document: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(parse_error("the document must be a JSON object".into()));
    };
    let mut fields = Map::new();
    dotted(&mut fields, None, doc);
    let mut take = |key: &str| take_text(&mut fields, key);
    let mut line = Line::new(take("message").unwrap_or_default());
    let level = take("log.level");
    if let Some(ts) = take("@timestamp") {
        let ts = parse_time(&Value::String(ts)).map_err(|reason| {
            parse_error(format!("failed to parse field [@timestamp]: {reason}"))
        })?;
        line.ts = Some(ts);
    }
    line.service = take("service.name").or_else(|| (!index.is_empty()).then(|| index.to_owned()));
    line.env = take("service.environment").or_else(|| take("deployment.environment"));
    line.host = take("host.name").or_else(|| take("host.hostname"));
    line.component = take("log.logger");
    line.trace_id = take_id(&mut fields, "trace.id", 16);
    line.span_id = take_id(&mut fields, "span.id", 8);
    for (key, value) in fields {
        insert_value(&mut line.attributes, key, value);
    }
    line.set_lenient_level(level.as_deref(), None);
    Ok(line)
}

/// Field `key` as text (a non-string value as its JSON text).
fn take_text(fields: &mut Map<String, Value>, key: &str) -> Option<String> {
    match fields.remove(key)? {
        Value::String(text) => Some(text),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Id field `key` when it is a hex id of `bytes` bytes; anything else stays an attribute
/// under its own name.
fn take_id(fields: &mut Map<String, Value>, key: &str, bytes: usize) -> Option<String> {
    let id = hex_id(fields.get(key)?.as_str()?, bytes)?;
    fields.remove(key);
    Some(id)
}

/// `object`'s leaves under dotted keys: `{"log": {"level": "x"}}` and `{"log.level": "x"}`
/// both give `log.level`.
fn dotted(out: &mut Map<String, Value>, prefix: Option<&str>, object: Map<String, Value>) {
    for (key, value) in object {
        let key = prefix.map_or_else(|| key.clone(), |p| format!("{p}.{key}"));
        match value {
            Value::Object(inner) if !inner.is_empty() => dotted(out, Some(&key), inner),
            leaf => {
                out.insert(key, leaf);
            }
        }
    }
}

/// The bulk answer, as Elasticsearch gives it: `took`, `errors`, one result per item.
pub fn answer(bulk: &Bulk, took_ms: u128) -> Value {
    let items: Vec<Value> = bulk
        .items
        .iter()
        .map(|item| {
            let result = match &item.outcome {
                Ok(()) => json!({
                    "_index": item.index, "_id": item.id, "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": 0, "_primary_term": 1, "status": 201,
                }),
                Err((status, kind, reason)) => json!({
                    "_index": item.index, "_id": item.id, "status": status,
                    "error": {"type": kind, "reason": reason},
                }),
            };
            json!({ item.action.as_str(): result })
        })
        .collect();
    json!({"took": took_ms, "errors": bulk.rejected() > 0, "items": items})
}

/// `GET /es/`: what an Elasticsearch 8 node says about itself.
pub fn info() -> Value {
    json!({
        "name": "ordo-ingest",
        "cluster_name": "ordo",
        "cluster_uuid": "ordo-logs",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "ordo",
            "build_hash": "ordo",
            "build_date": "2026-01-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    })
}

/// Elasticsearch's error object for a refused request.
pub fn error_body(error: &IngestError) -> Value {
    let kind = match error.status() {
        StatusCode::TOO_MANY_REQUESTS => "es_rejected_execution_exception",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable_shards_exception",
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        StatusCode::NOT_FOUND => "resource_not_found_exception",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed_exception",
        StatusCode::BAD_REQUEST => "parse_exception",
        _ => "illegal_argument_exception",
    };
    let reason = error.to_string();
    json!({
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": error.status().as_u16(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_protocol::logs::Level;

    fn ndjson(rows: &[Value]) -> String {
        rows.iter().map(|r| format!("{r}\n")).collect()
    }

    #[test]
    fn ecs_fields_map_whether_dotted_or_nested() {
        let body = ndjson(&[
            json!({"index": {"_index": "logs-app", "_id": "a1"}}),
            json!({"@timestamp": "2026-11-21T10:00:00.250Z", "message": "card declined",
                   "log": {"level": "WARNING", "logger": "payments"},
                   "service": {"name": "checkout", "environment": "prod"},
                   "host": {"name": "web-1"}, "trace": {"id": "5b".repeat(16)},
                   "http": {"response": {"status_code": 402}}, "tags": ["a", "b"]}),
            json!({"create": {}}),
            json!({"@timestamp": 1_795_255_200_250_u64, "message": "flat",
                   "log.level": "err", "service.name": "billing", "host.hostname": "web-2",
                   "span.id": "ee".repeat(8), "trace.id": "not-hex"}),
        ]);
        let bulk = decode(Some("default-index"), body.as_bytes(), 10).unwrap();
        assert_eq!(bulk.rejected(), 0);
        assert_eq!(
            (bulk.items[0].index.as_str(), bulk.items[0].id.as_str()),
            ("logs-app", "a1")
        );
        assert_eq!(bulk.items[1].index, "default-index");
        assert_eq!(bulk.items[1].action, Action::Create);
        let nested = &bulk.lines[0];
        assert_eq!(nested.message, "card declined");
        assert_eq!(nested.level, Level::Warn);
        assert_eq!(nested.service.as_deref(), Some("checkout"));
        assert_eq!(
            (nested.env.as_deref(), nested.host.as_deref()),
            (Some("prod"), Some("web-1"))
        );
        assert_eq!(nested.trace_id.as_deref(), Some("5b".repeat(16).as_str()));
        assert_eq!(nested.ts.unwrap().timestamp_millis(), 1_795_255_200_250);
        assert_eq!(nested.component.as_deref(), Some("payments"));
        assert_eq!(nested.attributes["http.response.status_code"], "402");
        assert_eq!(nested.attributes["tags"], r#"["a","b"]"#);
        let flat = &bulk.lines[1];
        assert_eq!(
            (flat.level, flat.service.as_deref()),
            (Level::Error, Some("billing"))
        );
        assert_eq!(flat.host.as_deref(), Some("web-2"));
        assert_eq!(flat.span_id.as_deref(), Some("ee".repeat(8).as_str()));
        assert_eq!(
            (
                flat.trace_id.as_deref(),
                flat.attributes["trace.id"].as_str()
            ),
            (None, "not-hex")
        );
        assert_eq!(flat.ts, nested.ts);
    }

    #[test]
    fn the_index_names_the_service_when_the_document_does_not() {
        let body = ndjson(&[
            json!({"index": {"_index": "nginx"}}),
            json!({"message": "GET /"}),
        ]);
        let bulk = decode(None, body.as_bytes(), 10).unwrap();
        assert_eq!(bulk.lines[0].service.as_deref(), Some("nginx"));
        assert_eq!(bulk.lines[0].level, Level::Info);
        assert!(!bulk.items[0].id.is_empty(), "an id is made up");
    }

    #[test]
    fn bad_documents_fail_alone_with_an_item_error() {
        let body = ndjson(&[
            json!({"index": {}}),
            json!({"message": "ok"}),
            json!({"index": {}}),
            json!(["not", "an", "object"]),
            json!({"delete": {"_id": "x"}}),
            json!({"update": {"_id": "y"}}),
            json!({"doc": {"message": "changed"}}),
            json!({"index": {}}),
            json!({"@timestamp": "someday", "message": "when?"}),
            json!({"create": {}}),
            json!({"message": "also ok", "log.level": "loud"}),
        ]);
        let bulk = decode(None, body.as_bytes(), 10).unwrap();
        let statuses: Vec<u16> = bulk
            .items
            .iter()
            .map(|i| i.outcome.as_ref().map_or_else(|e| e.0, |_| 201))
            .collect();
        assert_eq!(statuses, [201, 400, 400, 400, 400, 201]);
        assert_eq!(bulk.lines.len(), 2);
        assert_eq!(
            bulk.lines[1].attributes[crate::line::ORIGINAL_LEVEL],
            "loud"
        );
        let answer = answer(&bulk, 3);
        assert_eq!(answer["errors"], true);
        assert_eq!(answer["items"][0]["index"]["status"], 201);
        assert_eq!(answer["items"][0]["index"]["result"], "created");
        assert_eq!(
            answer["items"][2]["delete"]["error"]["type"],
            "action_request_validation_exception"
        );
        assert_eq!(answer["items"][5]["create"]["status"], 201);
        assert!(answer["items"][4]["index"]["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("@timestamp"));
    }

    #[test]
    fn malformed_action_lines_refuse_the_request() {
        for body in [
            "{\"index\": {}}\n{\"message\": \"a\"}\nnot json\n",
            "{\"upsert\": {}}\n{}\n",
            "{\"index\": {}, \"create\": {}}\n{}\n",
            "{\"index\": {}}\n",
        ] {
            let error = decode(None, body.as_bytes(), 10).unwrap_err();
            assert_eq!(error.status(), 400, "{body}");
        }
        let body = ndjson(&[
            json!({"index": {}}),
            json!({}),
            json!({"index": {}}),
            json!({}),
        ]);
        assert_eq!(
            decode(None, body.as_bytes(), 1).unwrap_err(),
            IngestError::TooManyLines { limit: 1 }
        );
    }

    #[test]
    fn errors_and_info_look_like_elasticsearch() {
        let body = error_body(&IngestError::Busy);
        assert_eq!(body["status"], 503);
        assert_eq!(body["error"]["type"], "unavailable_shards_exception");
        assert_eq!(
            body["error"]["root_cause"][0]["type"],
            "unavailable_shards_exception"
        );
        assert_eq!(info()["version"]["number"], VERSION);
        assert_eq!(info()["tagline"], "You Know, for Search");
    }
}

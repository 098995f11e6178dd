//! The record contract of topic `ordo.logs`, version 2: what the log-aggregator role (`ordo
//! serve ingest`) and the command API's worker endpoint produce, and what a logs store (the
//! ClickHouse sink) decodes, in one call, into rows.
//!
//! # One record per batch
//!
//! A record carries a batch of lines of one request that share a key: its JSON value is a
//! [`LogBatch`], a header (tenant, service, job, when it was received) and its `lines`. One
//! record per line would cost the producer, the broker and the sink a record's overhead
//! (headers, offsets, a delivery report, a JSON envelope) per line; at 50,000 lines/s that
//! is most of the work, while a batch of a few hundred lines amortises it. Records stay
//! under [`MAX_RECORD_BYTES`] of JSON (a request's lines are split over several records
//! when needed), so any broker's default `message.max.bytes` (1 MiB) takes them; the
//! producer compresses them on the wire (lz4), so repeated keys cost little.
//!
//! # Key
//!
//! The job id for a job's lines (so a job's lines stay in order, and on the partition its
//! events take on `outbox.event.job`), else `{tenant}/{service}`: one service's lines stay
//! in order, services spread over the partitions, and a sink consuming a partition sees
//! whole services, which is how the logs table is ordered (tenant, service, time).
//!
//! # Version
//!
//! The `v` member of the value says the contract version ([`VERSION`], 2). Version 1 records
//! (one JSON object per job line, no `v`) may still be on the topic: [`LogBatch::decode`]
//! reads both and returns v2 batches, so a sink decodes any record of the topic in one call.
//!
//! ```json
//! {"v": 2, "tenant": "acme", "service": "checkout", "source": "otlp",
//!  "job_id": null, "attempt": null, "worker_id": null,
//!  "received_at": "2026-11-21T10:00:00.310Z",
//!  "lines": [{"ts": "2026-11-21T10:00:00.250Z", "level": "warn", "severity_number": 13,
//!             "message": "card declined", "attributes": {"http.status": "402"},
//!             "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
//!             "env": "prod", "host": "web-1", "component": "payments"}]}
//! ```
//!
//! `job_id`, `attempt` and `worker_id` are null but for lines of a job (`attempt` and
//! `worker_id` only when a worker sent them through the worker protocol); `trace_id`,
//! `span_id` (lowercase hex), `env`, `host` and `component` (a logger, module or
//! instrumentation scope) are left out of a line that has none; `attributes` is always an
//! object of strings (possibly empty). The fields are the columns of the logs table
//! (`migrations/clickhouse`), `''`, 0 or NULL where a line has none.

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// The contract version records carry in `v`.
pub const VERSION: u32 = 2;

/// Largest JSON value of one record; a batch whose lines do not fit is split.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// A line's attributes: flat, keys dotted, every value a string.
pub type Attributes = BTreeMap<String, String>;

/// The six levels a line is stored with, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// A level name as loggers write it: case-insensitive, with the usual aliases
    /// (`warning`, `err`, `critical`, `notice`…); `None` for anything else.
    pub fn parse(name: &str) -> Option<Level> {
        let name = name.trim().to_ascii_lowercase();
        Some(match name.as_str() {
            "trace" | "trc" | "verbose" | "finest" => Level::Trace,
            "debug" | "dbg" | "fine" | "finer" => Level::Debug,
            "info" | "inf" | "information" | "informational" | "notice" => Level::Info,
            "warn" | "warning" | "wrn" => Level::Warn,
            "error" | "err" | "eror" | "severe" => Level::Error,
            "fatal" | "critical" | "crit" | "emerg" | "emergency" | "alert" | "panic" => {
                Level::Fatal
            }
            _ => return None,
        })
    }

    /// The level of an OpenTelemetry severity number (1–4 trace … 21–24 fatal); `None` for 0
    /// (unspecified) and numbers outside 1–24.
    pub fn from_severity_number(number: i32) -> Option<Level> {
        match number {
            1..=24 => Some(Level::ALL[(number as usize - 1) / 4]),
            _ => None,
        }
    }

    /// The OpenTelemetry severity number of the level (TRACE 1, DEBUG 5, INFO 9, WARN 13,
    /// ERROR 17, FATAL 21).
    pub fn severity_number(self) -> u8 {
        self as u8 * 4 + 1
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Level::parse(&name).ok_or_else(|| D::Error::custom(unknown_level(&name)))
    }
}

/// The reason an unknown level is refused, listing what is accepted.
pub fn unknown_level(name: &str) -> String {
    format!(
        "unknown level {name:?}; use trace, debug, info, warn, error or fatal \
         (any case; aliases such as warning, err, critical, notice are accepted)"
    )
}

/// One stored log line (see the module docs for the JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub ts: DateTime<Utc>,
    pub level: Level,
    /// OpenTelemetry's 1–24: the shipper's own when it sent one, else the level's.
    pub severity_number: u8,
    pub message: String,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The part of the service that wrote the line: a logger, module or instrumentation
    /// scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

impl LogEntry {
    /// A line with the level's own severity number and nothing else: no attributes, trace,
    /// environment, host or component.
    pub fn new(ts: DateTime<Utc>, level: Level, message: impl Into<String>) -> Self {
        Self {
            ts,
            level,
            severity_number: level.severity_number(),
            message: message.into(),
            attributes: Attributes::new(),
            trace_id: None,
            span_id: None,
            env: None,
            host: None,
            component: None,
        }
    }
}

/// The value of one record: lines of one tenant and service (and job, for a job's lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    pub v: u32,
    pub tenant: String,
    pub service: String,
    /// How the lines arrived: `native`, `otlp`, `elasticsearch`, `loki` or `job` (the
    /// worker protocol).
    pub source: String,
    pub job_id: Option<Uuid>,
    pub attempt: Option<u32>,
    pub worker_id: Option<String>,
    /// When the server took the request.
    pub received_at: DateTime<Utc>,
    /// Last, so that [`LogBatch::encode`] can write the header once and splice lines in.
    pub lines: Vec<LogEntry>,
}

/// A record that is no log batch this build understands.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl LogBatch {
    /// The Kafka key of the batch (see the module docs).
    pub fn key(&self) -> String {
        match self.job_id {
            Some(job) => job.to_string(),
            None => format!("{}/{}", self.tenant, self.service),
        }
    }

    /// The record values of the batch: one, or several when its JSON would pass
    /// `max_bytes` (a single line larger than that still makes one record of its own).
    pub fn encode(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let header = LogBatch {
            lines: Vec::new(),
            ..self.clone_header()
        };
        let mut prefix = serde_json::to_vec(&header).expect("a log batch is plain JSON");
        // `…,"lines":[]}` without its closing `]}`.
        prefix.truncate(prefix.len() - 2);
        let mut records = Vec::new();
        let mut record = prefix.clone();
        let mut in_record = 0;
        for line in &self.lines {
            let start = record.len();
            if in_record > 0 {
                record.push(b',');
            }
            serde_json::to_writer(&mut record, line).expect("a log line is plain JSON");
            if in_record > 0 && record.len() + 2 > max_bytes {
                let mut next = prefix.clone();
                // The line without the comma that joined it.
                next.extend_from_slice(&record[start + 1..]);
                record.truncate(start);
                record.extend_from_slice(b"]}");
                records.push(std::mem::replace(&mut record, next));
                in_record = 0;
            }
            in_record += 1;
        }
        record.extend_from_slice(b"]}");
        records.push(record);
        records
    }

    fn clone_header(&self) -> LogBatch {
        LogBatch {
            v: self.v,
            tenant: self.tenant.clone(),
            service: self.service.clone(),
            source: self.source.clone(),
            job_id: self.job_id,
            attempt: self.attempt,
            worker_id: self.worker_id.clone(),
            received_at: self.received_at,
            lines: Vec::new(),
        }
    }

    /// A record's value as a v2 batch, whether the record is v2 or a version 1 job line.
    pub fn decode(value: &[u8]) -> Result<LogBatch, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u32>,
        }
        let version: Version = serde_json::from_slice(value)
            .map_err(|e| DecodeError(format!("not a log record: {e}")))?;
        match version.v {
            Some(VERSION) => serde_json::from_slice(value)
                .map_err(|e| DecodeError(format!("not a v2 log batch: {e}"))),
            None => serde_json::from_slice::<V1Line>(value)
                .map(V1Line::upcast)
                .map_err(|e| DecodeError(format!("not a v1 log line: {e}"))),
            Some(other) => Err(DecodeError(format!(
                "log record version {other} is newer than this build ({VERSION})"
            ))),
        }
    }
}

/// A version 1 record: one line a job's worker sent.
#[derive(Deserialize)]
struct V1Line {
    tenant: String,
    service: String,
    job_id: Uuid,
    attempt: u32,
    worker_id: Option<String>,
    level: Level,
    message: String,
    #[serde(default)]
    fields: Map<String, Value>,
    ts: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

impl V1Line {
    fn upcast(self) -> LogBatch {
        LogBatch {
            v: VERSION,
            tenant: self.tenant,
            service: self.service,
            source: "job".to_owned(),
            job_id: Some(self.job_id),
            attempt: Some(self.attempt),
            worker_id: self.worker_id,
            received_at: self.received_at,
            lines: vec![LogEntry {
                attributes: flatten(self.fields),
                ..LogEntry::new(self.ts, self.level, self.message)
            }],
        }
    }
}

/// A JSON object as attributes: strings as they are, other values as their JSON text,
/// nested objects flattened with dotted keys (`{"http": {"status": 200}}` →
/// `http.status = "200"`; an empty object stays `{}`).
pub fn flatten(object: Map<String, Value>) -> Attributes {
    let mut attributes = Attributes::new();
    flatten_into(&mut attributes, None, object);
    attributes
}

/// Adds `object`'s members to `attributes`, keys prefixed with `prefix.` when given.
pub fn flatten_into(attributes: &mut Attributes, prefix: Option<&str>, object: Map<String, Value>) {
    for (key, value) in object {
        let key = match prefix {
            Some(prefix) => format!("{prefix}.{key}"),
            None => key,
        };
        insert_value(attributes, key, value);
    }
}

/// Adds one value under `key`, flattening it if it is a non-empty object.
pub fn insert_value(attributes: &mut Attributes, key: String, value: Value) {
    match value {
        Value::String(text) => {
            attributes.insert(key, text);
        }
        Value::Object(object) if !object.is_empty() => {
            flatten_into(attributes, Some(&key), object);
        }
        other => {
            attributes.insert(key, other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(message: &str) -> LogEntry {
        LogEntry {
            ts: "2026-11-21T10:00:00.250Z".parse().unwrap(),
            level: Level::Warn,
            severity_number: 13,
            message: message.to_owned(),
            attributes: Attributes::from([("k".to_owned(), "v".to_owned())]),
            trace_id: Some("5b8efff798038103d269b633813fc60c".to_owned()),
            span_id: None,
            env: Some("prod".to_owned()),
            host: None,
            component: None,
        }
    }

    fn batch(lines: Vec<LogEntry>) -> LogBatch {
        LogBatch {
            v: VERSION,
            tenant: "acme".to_owned(),
            service: "checkout".to_owned(),
            source: "otlp".to_owned(),
            job_id: None,
            attempt: None,
            worker_id: None,
            received_at: "2026-11-21T10:00:00.310Z".parse().unwrap(),
            lines,
        }
    }

    #[test]
    fn levels_parse_with_their_aliases_in_any_case() {
        let cases = [
            ("TRACE", Level::Trace),
            ("Debug", Level::Debug),
            ("notice", Level::Info),
            ("Information", Level::Info),
            ("WARNING", Level::Warn),
            ("err", Level::Error),
            ("critical", Level::Fatal),
            ("crit", Level::Fatal),
            ("emerg", Level::Fatal),
            ("alert", Level::Fatal),
            ("panic", Level::Fatal),
            (" fatal ", Level::Fatal),
        ];
        for (name, level) in cases {
            assert_eq!(Level::parse(name), Some(level), "{name}");
        }
        assert_eq!(Level::parse("loud"), None);
        let error = serde_json::from_value::<Level>(json!("loud")).unwrap_err();
        assert!(
            error.to_string().contains("unknown level \"loud\""),
            "{error}"
        );
        assert_eq!(serde_json::to_value(Level::Warn).unwrap(), json!("warn"));
    }

    #[test]
    fn severity_numbers_map_by_fours() {
        assert_eq!(Level::from_severity_number(0), None);
        assert_eq!(Level::from_severity_number(1), Some(Level::Trace));
        assert_eq!(Level::from_severity_number(4), Some(Level::Trace));
        assert_eq!(Level::from_severity_number(9), Some(Level::Info));
        assert_eq!(Level::from_severity_number(16), Some(Level::Warn));
        assert_eq!(Level::from_severity_number(24), Some(Level::Fatal));
        assert_eq!(Level::from_severity_number(25), None);
        for level in Level::ALL {
            let number = level.severity_number();
            assert_eq!(Level::from_severity_number(number.into()), Some(level));
        }
        assert_eq!(Level::Fatal.severity_number(), 21);
    }

    #[test]
    fn attributes_flatten_nested_objects_with_dotted_keys() {
        let object = json!({"s": "text", "n": 3, "b": true, "nil": null, "list": [1, "a"],
                            "http": {"status": 200, "req": {"id": "r1"}}, "empty": {}});
        let attributes = flatten(object.as_object().unwrap().clone());
        let expected: Attributes = [
            ("b", "true"),
            ("empty", "{}"),
            ("http.req.id", "r1"),
            ("http.status", "200"),
            ("list", "[1,\"a\"]"),
            ("n", "3"),
            ("nil", "null"),
            ("s", "text"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(attributes, expected);
    }

    #[test]
    fn a_batch_is_one_record_that_decodes_back() {
        let batch = batch(vec![entry("a"), entry("b")]);
        let records = batch.encode(MAX_RECORD_BYTES);
        assert_eq!(records.len(), 1);
        let value: Value = serde_json::from_slice(&records[0]).unwrap();
        assert_eq!(value["v"], 2);
        assert_eq!(
            value["lines"][0]["trace_id"],
            "5b8efff798038103d269b633813fc60c"
        );
        assert!(value["lines"][0].get("span_id").is_none(), "{value}");
        assert_eq!(LogBatch::decode(&records[0]).unwrap(), batch);
        assert_eq!(batch.key(), "acme/checkout");
    }

    #[test]
    fn a_large_batch_is_split_into_records_under_the_limit() {
        let lines: Vec<LogEntry> = (0..100).map(|i| entry(&format!("{i:>200}"))).collect();
        let batch = batch(lines);
        let records = batch.encode(4096);
        assert!(records.len() > 5, "{}", records.len());
        let mut decoded = Vec::new();
        for record in &records {
            assert!(record.len() <= 4096, "{}", record.len());
            let part = LogBatch::decode(record).unwrap();
            assert_eq!(part.service, "checkout");
            decoded.extend(part.lines);
        }
        assert_eq!(decoded, batch.lines);
        // A line larger than the limit makes a record of its own.
        let big = super::LogBatch {
            lines: vec![entry("x"), entry(&"y".repeat(5000)), entry("z")],
            ..batch.clone_header()
        };
        let records = big.encode(4096);
        assert_eq!(records.len(), 3);
        assert_eq!(
            LogBatch::decode(&records[1]).unwrap().lines[0]
                .message
                .len(),
            5000
        );
    }

    #[test]
    fn version_1_records_decode_as_one_line_batches_of_their_job() {
        let job = Uuid::now_v7();
        let v1 = json!({"tenant": "default", "service": "job", "job_id": job, "attempt": 1,
                        "worker_id": "w-1", "level": "error", "message": "boom",
                        "fields": {"pages": 3, "format": {"name": "pdf"}},
                        "ts": "2026-11-21T10:00:00.250Z", "received_at": "2026-11-21T10:00:00.310Z"});
        let batch = LogBatch::decode(v1.to_string().as_bytes()).unwrap();
        assert_eq!(
            (batch.v, batch.job_id, batch.attempt, batch.source.as_str()),
            (2, Some(job), Some(1), "job")
        );
        assert_eq!(batch.key(), job.to_string());
        let line = &batch.lines[0];
        assert_eq!((line.level, line.severity_number), (Level::Error, 17));
        assert_eq!(line.attributes["format.name"], "pdf");
        assert_eq!(line.attributes["pages"], "3");

        let newer = LogBatch::decode(br#"{"v": 3}"#).unwrap_err();
        assert!(newer.to_string().contains("version 3"), "{newer}");
        assert!(LogBatch::decode(b"[1]").is_err());
    }
}

//! A log line as the decoders read it ([`Line`]), the parsing every protocol shares (times,
//! levels, ids), and the rules that turn a request's lines into the batches of the record
//! contract ([`prepare`]): defaults, timestamps out of range, per-line size limits.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use ordo_domain::spec::TenantId;
use ordo_protocol::logs::{Attributes, Level, LogBatch, LogEntry, VERSION};
use serde_json::Value;
use uuid::Uuid;

/// The service of a line that names none (OpenTelemetry's own default).
pub const DEFAULT_SERVICE: &str = "unknown_service";
/// Longer service names are cut to this many characters.
pub const MAX_SERVICE_CHARS: usize = 128;
/// Attribute naming what a rule cut: `message`, `attributes` or both.
pub const TRUNCATED: &str = "ordo.truncated";
/// Attribute keeping a line's own time when the timestamp rule replaced it.
pub const ORIGINAL_TS: &str = "ordo.original_ts";
/// Attribute keeping a level name no rule understood (the line is stored as `info`).
pub const ORIGINAL_LEVEL: &str = "ordo.original_level";
/// Attribute counting the attributes dropped past the per-line budget.
pub const DROPPED_ATTRIBUTES: &str = "ordo.dropped_attributes";

/// A line as a decoder read it; [`prepare`] applies the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `None`: [`DEFAULT_SERVICE`].
    pub service: Option<String>,
    pub job_id: Option<Uuid>,
    /// `None`: the time the request was received.
    pub ts: Option<DateTime<Utc>>,
    pub level: Level,
    pub severity_number: u8,
    pub message: String,
    pub attributes: Attributes,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub env: Option<String>,
    pub host: Option<String>,
    pub component: Option<String>,
}

impl Line {
    /// An `info` line with nothing but its message.
    pub fn new(message: String) -> Self {
        Self {
            service: None,
            job_id: None,
            ts: None,
            level: Level::Info,
            severity_number: Level::Info.severity_number(),
            message,
            attributes: Attributes::new(),
            trace_id: None,
            span_id: None,
            env: None,
            host: None,
            component: None,
        }
    }

    pub fn set_level(&mut self, level: Level) {
        self.level = level;
        self.severity_number = level.severity_number();
    }

    /// The level of a shipper's line, which is never refused for it: an OpenTelemetry
    /// severity `number` (1–24) wins, else the `text` with its aliases, else `info` with the
    /// text kept in [`ORIGINAL_LEVEL`].
    pub fn set_lenient_level(&mut self, text: Option<&str>, number: Option<i32>) {
        if let Some(level) = number.and_then(Level::from_severity_number) {
            self.level = level;
            self.severity_number = number.and_then(|n| u8::try_from(n).ok()).unwrap_or(1);
            return;
        }
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => match Level::parse(text) {
                Some(level) => self.set_level(level),
                None => {
                    self.set_level(Level::Info);
                    self.attributes
                        .insert(ORIGINAL_LEVEL.to_owned(), text.to_owned());
                }
            },
            None => self.set_level(Level::Info),
        }
    }
}

/// A time as shippers send it: RFC 3339 (a time without offset is UTC), or a number of
/// seconds, milliseconds, microseconds or nanoseconds since the epoch (as a JSON number or a
/// string of digits), told apart by magnitude: below 10^11 seconds (fractions allowed),
/// below 10^14 milliseconds, below 10^17 microseconds, else nanoseconds. Every time from
/// 1973 to 5138 reads right in each unit.
pub fn parse_time(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(n) => from_epoch(n),
            None => number.as_f64().and_then(from_epoch_fraction),
        }
        .ok_or_else(|| format!("{number} is not a time")),
        Value::String(text) => parse_time_text(text),
        other => Err(format!(
            "must be an RFC 3339 string or a number since the epoch, not {other}"
        )),
    }
}

/// [`parse_time`] of a string.
pub fn parse_time_text(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let not_a_time = || format!("{text:?} is not a time");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .ok()
            .and_then(from_epoch)
            .ok_or_else(not_a_time);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return text
            .parse()
            .ok()
            .and_then(from_epoch_fraction)
            .ok_or_else(not_a_time);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| {
            format!(
                "{text:?} is not a time; use RFC 3339 (2026-11-21T10:00:00.250Z) or epoch ns/ms"
            )
        })
}

/// Nanoseconds per unit of an epoch number of this magnitude (the rule of [`parse_time`]).
fn unit_nanos(n: f64) -> u64 {
    if n < 1e11 {
        1_000_000_000
    } else if n < 1e14 {
        1_000_000
    } else if n < 1e17 {
        1_000
    } else {
        1
    }
}

fn from_epoch(n: u64) -> Option<DateTime<Utc>> {
    let nanos = n.checked_mul(unit_nanos(n as f64))?;
    Some(DateTime::from_timestamp_nanos(i64::try_from(nanos).ok()?))
}

/// A fractional epoch number, to the microsecond (what an f64 holds exactly for today's
/// times).
fn from_epoch_fraction(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let micros = (n * unit_nanos(n) as f64 / 1_000.0).round();
    DateTime::from_timestamp_micros(micros as i64)
}

/// A time in nanoseconds since the epoch (OTLP, Loki), `None` for 0 (unset).
pub fn from_unix_nanos(nanos: u64) -> Option<DateTime<Utc>> {
    (nanos > 0).then(|| DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX)))
}

/// A trace (16 bytes) or span (8 bytes) id as lowercase hex, from hex text of that length;
/// `None` when it is not one, or all zeros (no id, in W3C and OpenTelemetry).
pub fn hex_id(text: &str, bytes: usize) -> Option<String> {
    let text = text.trim();
    let valid = text.len() == bytes * 2 && text.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && text.bytes().any(|b| b != b'0')).then(|| text.to_ascii_lowercase())
}

/// [`hex_id`] of raw id bytes (OTLP's protobuf).
pub fn hex_id_bytes(id: &[u8], bytes: usize) -> Option<String> {
    (id.len() == bytes && id.iter().any(|&b| b != 0)).then(|| hex::encode(id))
}

/// The per-line limits and the time window of stored lines.
#[derive(Debug, Clone)]
pub struct LineRules {
    /// Lines older than this (the logs store's retention) are stamped with the time they
    /// were received instead; their own time is kept in [`ORIGINAL_TS`].
    pub retention: TimeDelta,
    /// The same for lines further than this in the future (a clock gone wrong).
    pub max_future: TimeDelta,
    /// Longer messages are cut (at a character boundary); [`TRUNCATED`] says so.
    pub max_message_bytes: usize,
    /// Longer attribute values are cut.
    pub max_attribute_value_bytes: usize,
    /// All of a line's attributes (keys and values): past it, the rest (in key order) are
    /// dropped and counted in [`DROPPED_ATTRIBUTES`].
    pub max_attributes_bytes: usize,
}

impl LineRules {
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
}

impl Default for LineRules {
    fn default() -> Self {
        Self {
            // The default of ORDO_LOG_RETENTION_DAYS, which `ordo` passes in.
            retention: TimeDelta::days(14),
            max_future: TimeDelta::hours(1),
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_attribute_value_bytes: 16 * 1024,
            max_attributes_bytes: 64 * 1024,
        }
    }
}

/// What the rules changed in a request's lines, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Adjusted {
    pub truncated: usize,
    pub timestamp: usize,
    pub level: usize,
}

/// A request's lines, ready for the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub batches: Vec<LogBatch>,
    pub lines: usize,
    pub adjusted: Adjusted,
}

/// Applies the rules to every line and groups them into one batch per (service, job), in
/// the order each first appears; lines keep their order within a batch.
pub fn prepare(
    tenant: &TenantId,
    source: &str,
    received_at: DateTime<Utc>,
    lines: Vec<Line>,
    rules: &LineRules,
) -> Prepared {
    let mut adjusted = Adjusted::default();
    let total = lines.len();
    let mut batches: Vec<LogBatch> = Vec::new();
    for mut line in lines {
        let service = service_name(line.service.take());
        let job_id = line.job_id;
        let (entry, truncated) = finish(line, received_at, rules);
        adjusted.truncated += usize::from(truncated);
        adjusted.timestamp += usize::from(entry.attributes.contains_key(ORIGINAL_TS));
        adjusted.level += usize::from(entry.attributes.contains_key(ORIGINAL_LEVEL));
        // Requests carry few services: a scan beats hashing.
        match batches
            .iter_mut()
            .rev()
            .find(|b| b.service == service && b.job_id == job_id)
        {
            Some(batch) => batch.lines.push(entry),
            None => batches.push(LogBatch {
                v: VERSION,
                tenant: tenant.to_string(),
                service,
                source: source.to_owned(),
                job_id,
                attempt: None,
                worker_id: None,
                received_at,
                lines: vec![entry],
            }),
        }
    }
    Prepared {
        batches,
        lines: total,
        adjusted,
    }
}

fn service_name(service: Option<String>) -> String {
    match service.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.chars().take(MAX_SERVICE_CHARS).collect(),
        _ => DEFAULT_SERVICE.to_owned(),
    }
}

/// The line as stored, and whether a size limit cut it.
fn finish(line: Line, received_at: DateTime<Utc>, rules: &LineRules) -> (LogEntry, bool) {
    let Line {
        ts,
        level,
        severity_number,
        mut message,
        mut attributes,
        trace_id,
        span_id,
        env,
        host,
        component,
        ..
    } = line;
    let mut cut = Vec::new();
    if truncate(&mut message, rules.max_message_bytes) {
        cut.push("message");
    }
    if limit_attributes(&mut attributes, rules) {
        cut.push("attributes");
    }
    if !cut.is_empty() {
        attributes.insert(TRUNCATED.to_owned(), cut.join(","));
    }
    let ts = match ts {
        Some(ts) if ts < received_at - rules.retention || ts > received_at + rules.max_future => {
            attributes.insert(
                ORIGINAL_TS.to_owned(),
                ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            );
            received_at
        }
        Some(ts) => ts,
        None => received_at,
    };
    let entry = LogEntry {
        ts,
        level,
        severity_number,
        message,
        attributes,
        trace_id,
        span_id,
        env,
        host,
        component,
    };
    (entry, !cut.is_empty())
}

/// Cuts `text` to at most `max` bytes at a character boundary; true if it did.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

/// Cuts long values and drops what passes the line's attribute budget; true if anything
/// was cut or dropped.
fn limit_attributes(attributes: &mut Attributes, rules: &LineRules) -> bool {
    let mut changed = false;
    let mut used = 0;
    let mut dropped = 0;
    attributes.retain(|key, value| {
        changed |= truncate(value, rules.max_attribute_value_bytes);
        used += key.len() + value.len();
        let keep = used <= rules.max_attributes_bytes;
        dropped += usize::from(!keep);
        keep
    });
    if dropped > 0 {
        attributes.insert(DROPPED_ATTRIBUTES.to_owned(), dropped.to_string());
    }
    changed || dropped > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn times_are_rfc3339_or_epoch_numbers_told_apart_by_magnitude() {
        let expected = t("2026-11-21T10:00:00.250Z");
        for value in [
            json!("2026-11-21T10:00:00.250Z"),
            json!("2026-11-21T11:00:00.250+01:00"),
            json!("2026-11-21T10:00:00.250"),
            json!(1_795_255_200.25),
            json!(1_795_255_200_250_u64),
            json!("1795255200250"),
            json!(1_795_255_200_250_000_u64),
            json!(1_795_255_200_250_000_000_u64),
            json!("1795255200250000000"),
        ] {
            assert_eq!(parse_time(&value), Ok(expected), "{value}");
        }
        assert_eq!(
            parse_time(&json!(1_795_255_200)),
            Ok(t("2026-11-21T10:00:00Z"))
        );
        for bad in [json!("yesterday"), json!(true), json!(-5), json!("")] {
            assert!(parse_time(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_lowercase_hex_of_their_length_and_never_all_zero() {
        let trace = "5B8EFFF798038103D269B633813FC60C";
        assert_eq!(
            hex_id(trace, 16).as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(
            hex_id("eee19b7ec3c1b174", 8).as_deref(),
            Some("eee19b7ec3c1b174")
        );
        assert_eq!(hex_id(&"0".repeat(32), 16), None);
        assert_eq!(hex_id("xyz", 16), None);
        assert_eq!(hex_id_bytes(&[0; 16], 16), None);
        assert_eq!(
            hex_id_bytes(&[1; 8], 8).as_deref(),
            Some("0101010101010101")
        );
    }

    #[test]
    fn lenient_levels_prefer_the_severity_number_and_never_refuse() {
        let mut line = Line::new("m".into());
        line.set_lenient_level(Some("INFO"), Some(18));
        assert_eq!((line.level, line.severity_number), (Level::Error, 18));
        line.set_lenient_level(Some("Warning"), Some(0));
        assert_eq!((line.level, line.severity_number), (Level::Warn, 13));
        line.set_lenient_level(Some("loud"), None);
        assert_eq!((line.level, line.severity_number), (Level::Info, 9));
        assert_eq!(line.attributes[ORIGINAL_LEVEL], "loud");
    }

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn lines_are_grouped_by_service_and_job_in_order_of_appearance() {
        let now = t("2026-11-21T10:00:00Z");
        let job = Uuid::now_v7();
        let line = |service: Option<&str>, job_id: Option<Uuid>, message: &str| Line {
            service: service.map(str::to_owned),
            job_id,
            ..Line::new(message.to_owned())
        };
        let prepared = prepare(
            &tenant(),
            "native",
            now,
            vec![
                line(Some("api"), None, "1"),
                line(None, None, "2"),
                line(Some("api"), Some(job), "3"),
                line(Some(" api "), None, "4"),
                line(Some(&"s".repeat(300)), None, "5"),
            ],
            &LineRules::default(),
        );
        let groups: Vec<(String, Option<Uuid>, Vec<&str>)> = prepared
            .batches
            .iter()
            .map(|b| {
                let messages = b.lines.iter().map(|l| l.message.as_str()).collect();
                (b.service.clone(), b.job_id, messages)
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("api".to_owned(), None, vec!["1", "4"]),
                (DEFAULT_SERVICE.to_owned(), None, vec!["2"]),
                ("api".to_owned(), Some(job), vec!["3"]),
                ("s".repeat(128), None, vec!["5"]),
            ]
        );
        assert_eq!(prepared.lines, 5);
        let batch = &prepared.batches[0];
        assert_eq!(
            (batch.tenant.as_str(), batch.source.as_str()),
            ("acme", "native")
        );
        assert_eq!(batch.lines[0].ts, now, "no ts: stamped when received");
    }

    #[test]
    fn times_outside_the_window_are_restamped_and_kept() {
        let now = t("2026-11-21T10:00:00Z");
        let rules = LineRules::default();
        let at = |ts: &str| Line {
            ts: Some(t(ts)),
            ..Line::new("m".into())
        };
        let prepared = prepare(
            &tenant(),
            "otlp",
            now,
            vec![
                at("2026-11-01T00:00:00Z"),
                at("2026-11-08T10:00:01Z"),
                at("2026-11-21T10:59:00Z"),
                at("2026-11-21T11:00:01Z"),
            ],
            &rules,
        );
        let lines = &prepared.batches[0].lines;
        assert_eq!(lines[0].ts, now);
        assert_eq!(lines[0].attributes[ORIGINAL_TS], "2026-11-01T00:00:00Z");
        assert_eq!(lines[1].ts, t("2026-11-08T10:00:01Z"));
        assert_eq!(lines[2].ts, t("2026-11-21T10:59:00Z"));
        assert_eq!(lines[3].ts, now);
        assert_eq!(prepared.adjusted.timestamp, 2);
    }

    #[test]
    fn long_messages_and_attributes_are_cut_and_say_so() {
        let rules = LineRules {
            max_message_bytes: 10,
            max_attribute_value_bytes: 4,
            max_attributes_bytes: 10,
            ..LineRules::default()
        };
        let mut line = Line::new("ééééééé".into()); // 14 bytes
        line.attributes = [("a", "123456"), ("b", "12"), ("c", "1"), ("d", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let prepared = prepare(&tenant(), "loki", Utc::now(), vec![line], &rules);
        let entry = &prepared.batches[0].lines[0];
        assert_eq!(entry.message, "ééééé");
        assert_eq!(entry.attributes["a"], "1234");
        assert_eq!(entry.attributes["b"], "12");
        assert_eq!(entry.attributes.get("d"), None);
        assert_eq!(entry.attributes["c"], "1");
        assert_eq!(entry.attributes[DROPPED_ATTRIBUTES], "1");
        assert_eq!(entry.attributes[TRUNCATED], "message,attributes");
        assert_eq!(prepared.adjusted.truncated, 1);
    }
}

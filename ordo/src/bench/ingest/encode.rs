//! Request bodies of each protocol, encoded once before the run ([`Template`]) and sent many
//! times. Each send moves every line's time forward by whole seconds, written over the old
//! time in place, so a body sent again carries new lines (no two sends share a time) while
//! the client's cost per send stays a copy (and, for Loki, a snappy compression).
//! Whole seconds keep every encoded time the same width: Loki's seconds are a varint, OTLP's
//! nanoseconds a fixed64 and the JSON protocols' an RFC 3339 text with nine digits.

use super::lines::raw_size;
use crate::cli::LogProtocol;
use chrono::{DateTime, SecondsFormat};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use ordo_ingest::line::Line;
use ordo_ingest::loki::logproto::{Entry, LabelPair, PushRequest, Stream, Timestamp};
use ordo_protocol::logs::Attributes;
use prost::Message;
use serde::Serialize;

const NANOS_PER_SEC: i64 = 1_000_000_000;

impl LogProtocol {
    pub fn path(self) -> &'static str {
        match self {
            Self::Native => "/api/v1/logs",
            Self::Otlp => "/v1/logs",
            Self::Bulk => "/es/_bulk",
            Self::Loki => "/loki/api/v1/push",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Native | Self::Bulk => "application/x-ndjson",
            Self::Otlp | Self::Loki => "application/x-protobuf",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Native => "Ordo's JSON API (NDJSON)",
            Self::Otlp => "OTLP/HTTP (protobuf)",
            Self::Bulk => "Elasticsearch _bulk (NDJSON)",
            Self::Loki => "Loki push (snappy protobuf)",
        }
    }

    /// The body of `lines` (Loki's not yet compressed), and the lines' times (ns since the
    /// epoch) in the order the body holds them.
    fn encode(self, lines: &[Line]) -> (Vec<u8>, Vec<i64>) {
        match self {
            Self::Native => ndjson(lines, |line, out| {
                serde_json::to_writer(out, &NativeLine::of(line)).expect("a line serializes")
            }),
            Self::Bulk => ndjson(lines, |line, out| {
                out.extend_from_slice(b"{\"create\":{\"_index\":\"logs\"}}\n");
                serde_json::to_writer(out, &EcsDocument::of(line)).expect("a line serializes")
            }),
            Self::Otlp => otlp(lines),
            Self::Loki => loki(lines),
        }
    }

    /// A line's time as the body holds it: the bytes right before it (to find it) and its
    /// own bytes.
    fn time_field(self, nanos: i64) -> (&'static [u8], Vec<u8>) {
        match self {
            Self::Native => (b"\"ts\":\"", rfc3339(nanos).into_bytes()),
            Self::Bulk => (b"\"@timestamp\":\"", rfc3339(nanos).into_bytes()),
            // LogRecord's field 1, time_unix_nano: a fixed64.
            Self::Otlp => (&[0x09], (nanos as u64).to_le_bytes().to_vec()),
            // Timestamp's field 1, seconds: a varint (nanos, field 2, stays as it is).
            Self::Loki => {
                let mut varint = Vec::new();
                prost::encoding::encode_varint((nanos / NANOS_PER_SEC) as u64, &mut varint);
                (&[0x08], varint)
            }
        }
    }
}

/// A request body ready to be sent again and again.
pub struct Template {
    protocol: LogProtocol,
    body: Vec<u8>,
    /// Where each line's time is in `body`, and that time (ns since the epoch).
    stamps: Vec<(usize, i64)>,
    pub lines: Vec<Line>,
    /// The lines' content ([`raw_size`]).
    pub raw_bytes: usize,
    /// The size of the body as sent.
    pub sent_bytes: usize,
}

impl Template {
    pub fn new(protocol: LogProtocol, lines: Vec<Line>) -> Self {
        let (body, times) = protocol.encode(&lines);
        // Each time is found after the previous one: the encoders write them in this order.
        let mut stamps = Vec::with_capacity(times.len());
        let mut from = 0;
        for nanos in times {
            let (before, value) = protocol.time_field(nanos);
            let needle = [before, &value].concat();
            let at = from
                + body[from..]
                    .windows(needle.len())
                    .position(|window| window == needle)
                    .expect("the encoder wrote every line's time");
            stamps.push((at + before.len(), nanos));
            from = at + needle.len();
        }
        let raw_bytes = lines.iter().map(raw_size).sum();
        let mut template = Self {
            protocol,
            body,
            stamps,
            lines,
            raw_bytes,
            sent_bytes: 0,
        };
        template.sent_bytes = template.body(0).len();
        template
    }

    /// The time of the line whose arrival in ClickHouse is timed (the first of the body)
    /// when sent `shift_secs` later.
    pub fn sample_nanos(&self, shift_secs: i64) -> i64 {
        self.stamps[0].1 + shift_secs * NANOS_PER_SEC
    }

    /// The body to send, every line `shift_secs` later than generated.
    pub fn body(&self, shift_secs: i64) -> Vec<u8> {
        let mut body = self.body.clone();
        for &(at, nanos) in &self.stamps {
            let (_, value) = self.protocol.time_field(nanos + shift_secs * NANOS_PER_SEC);
            debug_assert_eq!(value.len(), self.protocol.time_field(nanos).1.len());
            body[at..at + value.len()].copy_from_slice(&value);
        }
        match self.protocol {
            LogProtocol::Loki => snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("snappy compresses any body"),
            _ => body,
        }
    }
}

fn nanos(line: &Line) -> i64 {
    line.ts
        .and_then(|ts| ts.timestamp_nanos_opt())
        .expect("generated lines have a time")
}

/// RFC 3339 with nine fractional digits: the same width for every time of years 1000–9999.
fn rfc3339(nanos: i64) -> String {
    DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn ndjson(lines: &[Line], write: impl Fn(&Line, &mut Vec<u8>)) -> (Vec<u8>, Vec<i64>) {
    let mut body = Vec::with_capacity(lines.len() * 400);
    for line in lines {
        write(line, &mut body);
        body.push(b'\n');
    }
    (body, lines.iter().map(nanos).collect())
}

/// A line of Ordo's own API.
#[derive(Serialize)]
struct NativeLine<'a> {
    ts: String,
    level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    message: &'a str,
    attributes: &'a Attributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
}

impl<'a> NativeLine<'a> {
    fn of(line: &'a Line) -> Self {
        Self {
            ts: rfc3339(nanos(line)),
            level: line.level.as_str(),
            service: line.service.as_deref(),
            message: &line.message,
            attributes: &line.attributes,
            trace_id: line.trace_id.as_deref(),
            span_id: line.span_id.as_deref(),
            env: line.env.as_deref(),
            host: line.host.as_deref(),
            component: line.component.as_deref(),
        }
    }
}

/// A line as an ECS document, dotted, as Filebeat and the Elasticsearch clients send it.
#[derive(Serialize)]
struct EcsDocument<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: &'a str,
    #[serde(rename = "log.level")]
    level: &'static str,
    #[serde(rename = "service.name", skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(
        rename = "service.environment",
        skip_serializing_if = "Option::is_none"
    )]
    env: Option<&'a str>,
    #[serde(rename = "host.name", skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(rename = "log.logger", skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    #[serde(rename = "trace.id", skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(rename = "span.id", skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
    #[serde(flatten)]
    attributes: &'a Attributes,
}

impl<'a> EcsDocument<'a> {
    fn of(line: &'a Line) -> Self {
        Self {
            timestamp: rfc3339(nanos(line)),
            message: &line.message,
            level: line.level.as_str(),
            service: line.service.as_deref(),
            env: line.env.as_deref(),
            host: line.host.as_deref(),
            component: line.component.as_deref(),
            trace_id: line.trace_id.as_deref(),
            span_id: line.span_id.as_deref(),
            attributes: &line.attributes,
        }
    }
}

/// `lines` grouped by `key`, groups and lines in the order they first appear.
fn group<'a, K: PartialEq>(
    lines: impl IntoIterator<Item = &'a Line>,
    key: impl Fn(&Line) -> K,
) -> Vec<(K, Vec<&'a Line>)> {
    let mut groups: Vec<(K, Vec<&Line>)> = Vec::new();
    for line in lines {
        let k = key(line);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(line),
            None => groups.push((k, vec![line])),
        }
    }
    groups
}

/// One resource per service, env and host (as an SDK's process sends), one scope per
/// component (its logger).
fn otlp(lines: &[Line]) -> (Vec<u8>, Vec<i64>) {
    let string = |text: &str| AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    };
    let key_value = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: Some(string(value)),
        ..Default::default()
    };
    let mut times = Vec::with_capacity(lines.len());
    let mut resource_logs = Vec::new();
    let resources = group(lines, |l| {
        (l.service.clone(), l.env.clone(), l.host.clone())
    });
    for ((service, env, host), lines) in resources {
        let resource = [
            ("service.name", service),
            ("deployment.environment.name", env),
            ("host.name", host),
        ];
        let mut scope_logs = Vec::new();
        for (component, lines) in group(lines, |l| l.component.clone()) {
            let mut log_records = Vec::with_capacity(lines.len());
            for line in lines {
                times.push(nanos(line));
                log_records.push(LogRecord {
                    time_unix_nano: nanos(line) as u64,
                    severity_number: line.severity_number.into(),
                    severity_text: line.level.as_str().to_uppercase(),
                    body: Some(string(&line.message)),
                    attributes: (line.attributes.iter())
                        .map(|(key, value)| key_value(key, value))
                        .collect(),
                    trace_id: id_bytes(line.trace_id.as_deref(), u128::from_str_radix)
                        .map(u128::to_be_bytes)
                        .map_or_else(Vec::new, Vec::from),
                    span_id: id_bytes(line.span_id.as_deref(), u64::from_str_radix)
                        .map(u64::to_be_bytes)
                        .map_or_else(Vec::new, Vec::from),
                    ..Default::default()
                });
            }
            scope_logs.push(ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: component.unwrap_or_default(),
                    ..Default::default()
                }),
                log_records,
                schema_url: String::new(),
            });
        }
        resource_logs.push(ResourceLogs {
            resource: Some(Resource {
                attributes: (resource.iter())
                    .filter_map(|(key, value)| Some(key_value(key, value.as_deref()?)))
                    .collect(),
                ..Default::default()
            }),
            scope_logs,
            schema_url: String::new(),
        });
    }
    let request = ExportLogsServiceRequest { resource_logs };
    (request.encode_to_vec(), times)
}

/// A hex id as the number it spells.
fn id_bytes<T, E>(hex: Option<&str>, parse: fn(&str, u32) -> Result<T, E>) -> Option<T> {
    parse(hex?, 16).ok()
}

/// One stream per label set (service, env, host, component, level), as Promtail and Alloy
/// label lines; ids and attributes as structured metadata.
fn loki(lines: &[Line]) -> (Vec<u8>, Vec<i64>) {
    let labels = |line: &Line| {
        let pairs = [
            ("service", line.service.as_deref()),
            ("env", line.env.as_deref()),
            ("host", line.host.as_deref()),
            ("component", line.component.as_deref()),
            ("level", Some(line.level.as_str())),
        ];
        let pairs: Vec<String> = (pairs.iter())
            .filter_map(|(name, value)| Some(format!("{name}=\"{}\"", escape(value.as_ref()?))))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    };
    let pair = |name: &str, value: &str| LabelPair {
        name: name.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    let mut times = Vec::with_capacity(lines.len());
    let mut streams = Vec::new();
    for (labels, lines) in group(lines, labels) {
        let mut entries = Vec::with_capacity(lines.len());
        for line in lines {
            let ns = nanos(line);
            times.push(ns);
            let ids = [("trace_id", &line.trace_id), ("span_id", &line.span_id)];
            let structured_metadata = (ids.iter())
                .filter_map(|(name, id)| Some(pair(name, id.as_deref()?)))
                .chain(line.attributes.iter().map(|(k, v)| pair(k, v)))
                .collect();
            entries.push(Entry {
                timestamp: Some(Timestamp {
                    seconds: ns.div_euclid(NANOS_PER_SEC),
                    nanos: ns.rem_euclid(NANOS_PER_SEC) as i32,
                }),
                line: line.message.as_bytes().to_vec(),
                structured_metadata,
            });
        }
        streams.push(Stream {
            labels: labels.into_bytes(),
            entries,
        });
    }
    (PushRequest { streams }.encode_to_vec(), times)
}

/// A label value in Prometheus text form.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::ingest::lines;
    use chrono::{TimeDelta, Utc};
    use clap::ValueEnum;
    use ordo_ingest::{elasticsearch, loki, native, otlp};

    const MAX: usize = 100_000;

    fn decode(protocol: LogProtocol, body: &[u8]) -> Vec<Line> {
        match protocol {
            LogProtocol::Native => native::decode(protocol.content_type(), body, MAX).unwrap(),
            LogProtocol::Otlp => otlp::decode(otlp::Encoding::Protobuf, body, MAX).unwrap(),
            LogProtocol::Bulk => {
                let bulk = elasticsearch::decode(None, body, MAX).unwrap();
                assert_eq!(bulk.rejected(), 0);
                bulk.lines
            }
            LogProtocol::Loki => {
                loki::decode(protocol.content_type(), body, 64 << 20, MAX).unwrap()
            }
        }
    }

    fn by_time(mut lines: Vec<Line>) -> Vec<Line> {
        lines.sort_by_key(|line| line.ts);
        lines
    }

    #[test]
    fn every_protocol_decodes_back_to_the_lines_moved_by_whole_seconds() {
        let base = Utc::now();
        let spacing = TimeDelta::microseconds(7);
        for protocol in LogProtocol::value_variants() {
            for i in 0..6 {
                let lines = lines::request(i, 200, base, spacing);
                let template = Template::new(*protocol, lines.clone());
                for shift in [0, 1, 3_600] {
                    let decoded = decode(*protocol, &template.body(shift));
                    let expected: Vec<Line> = (lines.iter().cloned())
                        .map(|mut line| {
                            line.ts = line.ts.map(|ts| ts + TimeDelta::seconds(shift));
                            line
                        })
                        .collect();
                    assert_eq!(
                        by_time(decoded),
                        by_time(expected),
                        "{protocol:?}, request {i}, {shift} s later"
                    );
                    let first = template.sample_nanos(shift);
                    assert!(lines
                        .iter()
                        .any(|l| nanos(l) + shift * NANOS_PER_SEC == first));
                }
            }
        }
    }

    #[test]
    fn lines_have_about_250_bytes_of_content_with_3_to_6_attributes_and_unique_times() {
        let base = Utc::now();
        let lines: Vec<Line> = (0..24)
            .flat_map(|i| lines::request(i, 500, base, TimeDelta::microseconds(7)))
            .collect();
        let template = Template::new(LogProtocol::Native, lines.clone());
        let mean = template.raw_bytes / lines.len();
        let json = template.body(0).len() / lines.len();
        assert!(
            (225..=275).contains(&mean),
            "{mean} bytes per line ({json} as JSON)"
        );
        assert!(lines
            .iter()
            .all(|l| (3..=6).contains(&l.attributes.len()) && l.trace_id.is_some()));
        let mut times: Vec<i64> = lines.iter().map(nanos).collect();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), lines.len());
    }
}

//! Log lines as services write them, for `ordo bench ingest`: a few services on a few hosts,
//! each with its own components and message shapes (words, numbers, ids), mostly `info`,
//! 3–6 attributes and a trace context, about 250 bytes of content each ([`raw_size`]).
//! Generated from fixed seeds, so every run sends the same lines.

use chrono::{DateTime, TimeDelta, Utc};
use ordo_clickhouse_store::LogRow;
use ordo_ingest::line::Line;
use ordo_protocol::logs::{Attributes, Level};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The tenant every line is sent for.
pub const TENANT: &str = "bench";

/// A service: its name, its components and what it logs.
struct Service {
    name: &'static str,
    components: &'static [&'static str],
    messages: &'static [Message],
}

/// A level, a message and the attributes that go with it (beyond the common ones), their
/// `{…}` filled by [`fill`].
type Message = (Level, &'static str, &'static [(&'static str, &'static str)]);

const SERVICES: [Service; 6] = [
    Service {
        name: "gateway",
        components: &["http", "router", "ratelimit"],
        messages: &[
            (
                Level::Info,
                "GET /api/v1/orders/{id} {status} in {ms} ms",
                &[
                    ("http.route", "/api/v1/orders/:id"),
                    ("http.status_code", "{status}"),
                ],
            ),
            (
                Level::Info,
                "POST /api/v1/cart/{id}/items 201 in {ms} ms, {n} items",
                &[
                    ("http.route", "/api/v1/cart/:id/items"),
                    ("user.id", "{user}"),
                ],
            ),
            (
                Level::Debug,
                "upstream {word}-svc picked for request {hex} after {n} retries",
                &[("upstream", "{word}-svc")],
            ),
            (
                Level::Warn,
                "client {ip} over its rate limit ({n}0 requests/s), request {hex} delayed",
                &[("client.address", "{ip}")],
            ),
        ],
    },
    Service {
        name: "checkout",
        components: &["cart", "orders", "pricing"],
        messages: &[
            (
                Level::Info,
                "order {id} placed by {user} with {n} items, total {amount} EUR",
                &[("order.id", "{id}"), ("user.id", "{user}")],
            ),
            (
                Level::Info,
                "applied coupon {word}{n} to cart {uuid}: -{amount} EUR",
                &[("cart.id", "{uuid}")],
            ),
            (
                Level::Debug,
                "price of sku-{sku} recomputed in {ms} ms (cache {word})",
                &[("sku", "sku-{sku}")],
            ),
            (
                Level::Error,
                "order {id} failed: payment service answered {status} after {ms} ms",
                &[("order.id", "{id}"), ("error.type", "upstream_{status}")],
            ),
        ],
    },
    Service {
        name: "payments",
        components: &["charges", "refunds", "fraud"],
        messages: &[
            (
                Level::Info,
                "charge {uuid} of {amount} EUR authorized for order {id}",
                &[("payment.id", "{uuid}"), ("order.id", "{id}")],
            ),
            (
                Level::Warn,
                "card declined for order {id}: insufficient funds (attempt {n})",
                &[("order.id", "{id}"), ("decline.code", "insufficient_funds")],
            ),
            (
                Level::Info,
                "refund {uuid} of {amount} EUR settled in {ms} ms",
                &[("payment.id", "{uuid}")],
            ),
            (
                Level::Debug,
                "fraud score {n}.{n} for {user} from {ip}",
                &[("user.id", "{user}")],
            ),
        ],
    },
    Service {
        name: "inventory",
        components: &["stock", "warehouse"],
        messages: &[
            (
                Level::Info,
                "reserved {n} units of sku-{sku} in warehouse {word}-{n} for order {id}",
                &[("sku", "sku-{sku}"), ("order.id", "{id}")],
            ),
            (
                Level::Info,
                "stock of sku-{sku} is now {id} units after delivery {hex}",
                &[("sku", "sku-{sku}")],
            ),
            (
                Level::Warn,
                "sku-{sku} below its reorder point: {n} units left",
                &[("sku", "sku-{sku}")],
            ),
        ],
    },
    Service {
        name: "auth",
        components: &["login", "tokens", "sessions"],
        messages: &[
            (
                Level::Info,
                "{user} logged in from {ip} with {word} in {ms} ms",
                &[("user.id", "{user}"), ("client.address", "{ip}")],
            ),
            (
                Level::Info,
                "token refreshed for session {hex}{hex}, expires in {n}0 min",
                &[("session.id", "{hex}{hex}")],
            ),
            (
                Level::Warn,
                "failed login for {user} from {ip}: wrong password ({n} of 5)",
                &[("user.id", "{user}")],
            ),
        ],
    },
    Service {
        name: "search",
        components: &["query", "index"],
        messages: &[
            (
                Level::Info,
                "query \"{word} {word}\" returned {id} hits in {ms} ms",
                &[("search.terms", "2")],
            ),
            (
                Level::Debug,
                "segment {hex} merged: {id} documents, {n} deleted",
                &[("index.segment", "{hex}")],
            ),
            (
                Level::Error,
                "shard {n} of index products-{n} timed out after {ms} ms",
                &[("error.type", "timeout")],
            ),
        ],
    },
];

const WORDS: [&str; 16] = [
    "alpha", "cache", "miss", "hit", "blue", "green", "retry", "fast", "slow", "cold", "warm",
    "north", "south", "spring", "summer", "oauth",
];
const REGIONS: [&str; 3] = ["eu-west-1", "eu-central-1", "us-east-1"];
const STATUSES: [&str; 8] = ["200", "200", "200", "200", "201", "204", "404", "503"];
/// The hosts of each service: Kubernetes pods.
const PODS: [&str; 3] = ["5d8f7-qx2lp", "5d8f7-m9wzt", "5d8f7-hr4kc"];

/// The `i`-th request's lines: `count` lines of one service on one host (as one shipper
/// sends them), their times `base` plus `spacing` per line of the pool before them (plus
/// jitter within it), so no two lines of the pool share a time.
pub fn request(i: usize, count: usize, base: DateTime<Utc>, spacing: TimeDelta) -> Vec<Line> {
    let mut rng = StdRng::seed_from_u64(i as u64);
    let service = &SERVICES[i % SERVICES.len()];
    let host = format!(
        "{}-{}",
        service.name,
        PODS[(i / SERVICES.len()) % PODS.len()]
    );
    let region = REGIONS[i % REGIONS.len()];
    let mut trace = (String::new(), 0);
    (0..count)
        .map(|j| {
            let (level, message, specific) =
                service.messages[weighted(&mut rng, service.messages.len())];
            let mut line = Line::new(String::new());
            let mut values = Values::default();
            line.message = fill(message, &mut rng, &mut values);
            line.set_level(level);
            line.service = Some(service.name.to_owned());
            line.env = Some("prod".to_owned());
            line.host = Some(host.clone());
            line.component =
                Some(service.components[rng.random_range(0..service.components.len())].to_owned());
            let nth = (i * count + j) as i32;
            line.ts = Some(base + spacing * nth + jitter(&mut rng, spacing));
            // A trace logs a few lines in a row.
            if trace.1 == 0 {
                trace = (
                    format!("{:032x}", rng.random::<u128>()),
                    rng.random_range(1..=5),
                );
            }
            trace.1 -= 1;
            line.trace_id = Some(trace.0.clone());
            line.span_id = Some(format!("{:016x}", rng.random::<u64>()));
            line.attributes = attributes(specific, region, &mut rng, &mut values);
            line
        })
        .collect()
}

/// Mostly the first messages of a service: index 0 about half the time, then less and less.
fn weighted(rng: &mut StdRng, len: usize) -> usize {
    let mut index = 0;
    while index + 1 < len && rng.random_bool(0.5) {
        index += 1;
    }
    index
}

fn jitter(rng: &mut StdRng, spacing: TimeDelta) -> TimeDelta {
    TimeDelta::nanoseconds(rng.random_range(0..spacing.num_nanoseconds().unwrap_or(1).max(1)))
}

/// The values a line's message drew, so its attributes repeat them (an order id in the
/// message and in `order.id`).
#[derive(Default)]
struct Values(Vec<(String, String)>);

/// `template` with each `{name}` replaced: the same name in the message and its attributes
/// gets the same value.
fn fill(template: &str, rng: &mut StdRng, values: &mut Values) -> String {
    let mut out = String::with_capacity(template.len() + 48);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("placeholders are closed");
        let name = &rest[open + 1..close];
        match values.0.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                let value = draw(name, rng);
                out.push_str(&value);
                values.0.push((name.to_owned(), value));
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn draw(name: &str, rng: &mut StdRng) -> String {
    match name {
        "id" => rng.random_range(10_000..10_000_000u32).to_string(),
        // Most calls are fast, a few are slow.
        "ms" => (rng.random_range(1..40u32) * rng.random_range(1..=3u32).pow(3)).to_string(),
        "uuid" => uuid::Builder::from_random_bytes(rng.random())
            .into_uuid()
            .to_string(),
        "hex" => format!("{:08x}", rng.random::<u32>()),
        "ip" => format!(
            "10.{}.{}.{}",
            rng.random_range(0..8u8),
            rng.random::<u8>(),
            rng.random::<u8>()
        ),
        "user" => format!("user-{}", rng.random_range(1..50_000u32)),
        "n" => rng.random_range(1..10u8).to_string(),
        "amount" => format!(
            "{}.{:02}",
            rng.random_range(1..500u32),
            rng.random_range(0..100u8)
        ),
        "sku" => rng.random_range(1_000..99_999u32).to_string(),
        "word" => WORDS[rng.random_range(0..WORDS.len())].to_owned(),
        "status" => STATUSES[rng.random_range(0..STATUSES.len())].to_owned(),
        other => unreachable!("unknown placeholder {{{other}}}"),
    }
}

/// The message's own attributes, then common ones until the line has 3 to 6.
fn attributes(
    specific: &[(&str, &str)],
    region: &str,
    rng: &mut StdRng,
    values: &mut Values,
) -> Attributes {
    let mut attributes: Attributes = specific
        .iter()
        .map(|(key, value)| ((*key).to_owned(), fill(value, rng, values)))
        .collect();
    let wanted = rng.random_range(3..=6);
    let common = [
        ("cloud.region", region.to_owned()),
        (
            "thread.name",
            format!("worker-{}", rng.random_range(0..16u8)),
        ),
        (
            "code.function",
            format!("handle_{}", WORDS[rng.random_range(0..WORDS.len())]),
        ),
        ("duration_ms", draw("ms", rng)),
        ("k8s.namespace.name", "shop".to_owned()),
    ];
    for (key, value) in common {
        if attributes.len() >= wanted {
            break;
        }
        attributes.entry(key.to_owned()).or_insert(value);
    }
    attributes
}

/// The size of a line's content: every field as text (the time in RFC 3339 with nine
/// digits), attribute keys and values, without any protocol's framing. The "raw bytes" the
/// bench compares the bytes on disk with.
pub fn raw_size(line: &Line) -> usize {
    const RFC3339_NANOS: usize = "2026-01-01T00:00:00.000000000Z".len();
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    RFC3339_NANOS
        + line.level.as_str().len()
        + line.message.len()
        + [
            &line.service,
            &line.env,
            &line.host,
            &line.component,
            &line.trace_id,
            &line.span_id,
        ]
        .into_iter()
        .map(text)
        .sum::<usize>()
        + (line.attributes.iter())
            .map(|(key, value)| key.len() + value.len())
            .sum::<usize>()
}

/// A line as the sink stores it (the `logs` row of tenant [`TENANT`]), `shift` later.
pub fn row(line: &Line, shift: TimeDelta, received_at: DateTime<Utc>) -> LogRow {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    LogRow {
        tenant: TENANT.to_owned(),
        ts: line.ts.unwrap_or(received_at) + shift,
        service: text(&line.service),
        env: text(&line.env),
        host: text(&line.host),
        component: text(&line.component),
        level: line.level.as_str().to_owned(),
        severity_number: line.severity_number,
        message: line.message.clone(),
        attributes: line.attributes.clone(),
        job_id: None,
        attempt: 0,
        worker_id: String::new(),
        trace_id: text(&line.trace_id),
        span_id: text(&line.span_id),
        received_at,
        kafka_partition: -1,
        kafka_offset: -1,
    }
}

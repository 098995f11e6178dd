//! Comparing two namespaces of the read model key by key: job hashes field by field, index
//! and dispatch sorted sets member by member (with scores), counter hashes, the queues set.
//!
//! Keys are streamed with SCAN in batches, so memory holds one batch of keys at a time (and
//! the content of the largest of them). Only the keys the projector writes are compared
//! (see [`crate::keys`]); anything else under a namespace belongs to someone else.

use crate::namespace::KeyScan;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisResult, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Keys compared per pipeline.
const KEY_BATCH: usize = 500;

/// One difference: `item` is the hash field or set member, `None` when the whole key
/// differs (it exists on one side only, or has another type). `None` values mean absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The key relative to its namespace, e.g. `job:{id}` or `idx:{tenant}:all`.
    pub key: String,
    pub item: Option<String>,
    pub live: Option<String>,
    pub replayed: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{} {} live={} replayed={}",
            self.key,
            self.item.as_deref().unwrap_or("(key)"),
            show(&self.live),
            show(&self.replayed)
        )
    }
}

/// Every difference between namespaces `live` and `replayed`, sorted by key and item.
pub async fn compare(
    redis: &mut ConnectionManager,
    live: &str,
    replayed: &str,
) -> RedisResult<Vec<Difference>> {
    let mut differences = Vec::new();
    // Keys of the live side, compared with their replayed counterparts...
    let mut scan = KeyScan::new(live, KEY_BATCH);
    while let Some(batch) = scan.next(redis).await? {
        let batch = model_keys(live, batch);
        differences.extend(compare_keys(redis, live, replayed, &batch).await?);
    }
    // ...then the keys only the replay has.
    let mut scan = KeyScan::new(replayed, KEY_BATCH);
    while let Some(batch) = scan.next(redis).await? {
        let batch = model_keys(replayed, batch);
        if batch.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for key in &batch {
            pipe.exists(format!("{live}:{key}"));
        }
        let exists: Vec<bool> = pipe.query_async(redis).await?;
        let only: Vec<String> = batch
            .into_iter()
            .zip(exists)
            .filter_map(|(key, exists)| (!exists).then_some(key))
            .collect();
        differences.extend(compare_keys(redis, live, replayed, &only).await?);
    }
    differences.sort_by(|a, b| (&a.key, &a.item).cmp(&(&b.key, &b.item)));
    Ok(differences)
}

/// The differences of the hashes of `jobs` only.
pub async fn compare_jobs(
    redis: &mut ConnectionManager,
    live: &str,
    replayed: &str,
    jobs: &[String],
) -> RedisResult<Vec<Difference>> {
    let mut differences = Vec::new();
    for chunk in jobs.chunks(KEY_BATCH) {
        let keys: Vec<String> = chunk.iter().map(|id| format!("job:{id}")).collect();
        differences.extend(compare_keys(redis, live, replayed, &keys).await?);
    }
    Ok(differences)
}

/// Whether a key (relative to its namespace) is one the projector writes.
fn is_model_key(key: &str) -> bool {
    key == "queues"
        || ["job:", "idx:", "count:", "ready:", "scheduled:", "running:"]
            .iter()
            .any(|kind| key.starts_with(kind))
}

/// The keys the projector writes among `keys` of `namespace`, relative to it.
fn model_keys(namespace: &str, keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .map(|key| key[namespace.len() + 1..].to_owned())
        .filter(|key| is_model_key(key))
        .collect()
}

/// A key's content, as far as comparing it needs.
#[derive(Debug, PartialEq)]
enum Content {
    Absent,
    Hash(BTreeMap<String, String>),
    /// member → score, as Redis prints it.
    Zset(BTreeMap<String, String>),
    Set(BTreeSet<String>),
    /// A type the projector never writes.
    Other(String),
}

impl Content {
    fn describe(&self) -> Option<String> {
        match self {
            Content::Absent => None,
            Content::Hash(h) => Some(format!("hash of {} fields", h.len())),
            Content::Zset(z) => Some(format!("zset of {} members", z.len())),
            Content::Set(s) => Some(format!("set of {} members", s.len())),
            Content::Other(kind) => Some(format!("a {kind}")),
        }
    }
}

async fn compare_keys(
    redis: &mut ConnectionManager,
    live: &str,
    replayed: &str,
    keys: &[String],
) -> RedisResult<Vec<Difference>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let full: Vec<String> = keys
        .iter()
        .flat_map(|key| [format!("{live}:{key}"), format!("{replayed}:{key}")])
        .collect();
    let mut pipe = redis::pipe();
    for key in &full {
        pipe.cmd("TYPE").arg(key);
    }
    let kinds: Vec<String> = pipe.query_async(redis).await?;
    let mut pipe = redis::pipe();
    for (key, kind) in full.iter().zip(&kinds) {
        match kind.as_str() {
            "hash" => pipe.hgetall(key),
            "zset" => pipe.zrange_withscores(key, 0, -1),
            "set" => pipe.smembers(key),
            _ => pipe.exists(key),
        };
    }
    let values: Vec<Value> = pipe.query_async(redis).await?;
    let mut contents = Vec::with_capacity(values.len());
    for (kind, value) in kinds.iter().zip(values) {
        contents.push(match kind.as_str() {
            "none" => Content::Absent,
            "hash" => Content::Hash(FromRedisValue::from_owned_redis_value(value)?),
            "zset" => {
                let pairs: Vec<(String, String)> = FromRedisValue::from_owned_redis_value(value)?;
                Content::Zset(pairs.into_iter().collect())
            }
            "set" => Content::Set(FromRedisValue::from_owned_redis_value(value)?),
            other => Content::Other(other.to_owned()),
        });
    }
    let mut differences = Vec::new();
    let mut contents = contents.into_iter();
    for key in keys {
        let (Some(live), Some(replayed)) = (contents.next(), contents.next()) else {
            break;
        };
        differences.extend(diff(key, live, replayed));
    }
    Ok(differences)
}

/// The differences of one key. A counter at zero and a missing counter mean the same (the
/// script decrements to zero rather than deleting), so zeros are dropped before comparing.
fn diff(key: &str, live: Content, replayed: Content) -> Vec<Difference> {
    let (live, replayed) = if key.starts_with("count:") {
        (without_zeros(live), without_zeros(replayed))
    } else {
        (live, replayed)
    };
    let item = |item: &String, live: Option<&String>, replayed: Option<&String>| Difference {
        key: key.to_owned(),
        item: Some(item.clone()),
        live: live.cloned(),
        replayed: replayed.cloned(),
    };
    match (&live, &replayed) {
        (Content::Hash(a), Content::Hash(b)) | (Content::Zset(a), Content::Zset(b)) => a
            .keys()
            .chain(b.keys().filter(|k| !a.contains_key(*k)))
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| item(k, a.get(k), b.get(k)))
            .collect(),
        (Content::Set(a), Content::Set(b)) => {
            let present = "present".to_owned();
            a.symmetric_difference(b)
                .map(|m| {
                    item(
                        m,
                        a.contains(m).then_some(&present),
                        b.contains(m).then_some(&present),
                    )
                })
                .collect()
        }
        _ if live == replayed => Vec::new(),
        _ => vec![Difference {
            key: key.to_owned(),
            item: None,
            live: live.describe(),
            replayed: replayed.describe(),
        }],
    }
}

fn without_zeros(content: Content) -> Content {
    match content {
        Content::Hash(mut fields) => {
            fields.retain(|_, value| value != "0");
            if fields.is_empty() {
                Content::Absent
            } else {
                Content::Hash(fields)
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, &str)]) -> Content {
        Content::Hash(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn hashes_differ_field_by_field_and_zero_counters_count_as_absent() {
        let found = diff(
            "job:1",
            hash(&[("status", "RUNNING"), ("attempt", "1")]),
            hash(&[("status", "COMPLETED"), ("attempt", "1"), ("result", "{}")]),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].to_string(),
            "job:1 status live=RUNNING replayed=COMPLETED"
        );
        assert_eq!(found[1].live, None);
        assert!(diff("count:t", hash(&[("status:QUEUED", "0")]), Content::Absent).is_empty());
        assert_eq!(
            diff("count:t", hash(&[("status:QUEUED", "2")]), Content::Absent)[0].item,
            None
        );
    }

    #[test]
    fn only_model_keys_are_compared() {
        assert!(is_model_key("idx:acme:all") && is_model_key("queues"));
        assert!(!is_model_key("lock:reaper"));
    }
}

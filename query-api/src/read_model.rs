//! Reading the Redis read model: the live namespace, job hashes, index scans, with every call
//! bounded by [`crate::QueryConfig::redis_timeout`] (on top of whatever timeouts the connection
//! manager has), so a stalled Redis is a prompt 503 rather than a hung request.
//!
//! If the projectors grow a reader of their own, [`ReadModel::job`] and [`ReadModel::scan`] are
//! the parts that belong next to `ordo_read_model::keys`.

use crate::view::Fields;
use crate::{QueryError, QueryState};
use ordo_read_model::{keys, namespace};
use redis::aio::ConnectionManager;
use redis::RedisResult;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// One request's view of the read model: a connection and the live namespace, resolved once.
pub struct ReadModel {
    connection: ConnectionManager,
    timeout: Duration,
    pub namespace: String,
}

/// One job of an index scan: its id, its score there (ms) and its hash.
pub struct Scanned {
    pub id: String,
    pub score: i64,
    pub fields: Fields,
}

/// A window of an index, newest first.
pub struct Window {
    pub jobs: Vec<Scanned>,
    /// Entries passed over at the start: jobs of the upper bound's score that sort at or
    /// above the bound's id, i.e. already served.
    pub skipped: usize,
    /// The position (score, id) of the last entry past the skipped ones, even if its hash was
    /// gone: the next window starts below it. `None` only when the index is exhausted.
    pub last: Option<(i64, String)>,
    /// The index has nothing below this window.
    pub exhausted: bool,
}

impl ReadModel {
    /// Resolves the live namespace (one `GET` of the pointer), so a replay's switch is seen by
    /// the next request.
    pub async fn open(state: &QueryState) -> Result<Self, QueryError> {
        let mut connection = state.redis.clone();
        let timeout = state.config.redis_timeout;
        let namespace = bounded(
            timeout,
            namespace::active(&mut connection, &state.config.prefix),
        )
        .await?;
        Ok(Self {
            connection,
            timeout,
            namespace,
        })
    }

    async fn call<T>(&self, future: impl Future<Output = RedisResult<T>>) -> Result<T, QueryError> {
        bounded(self.timeout, future).await
    }

    /// The hash of a job; empty if the read model does not have it.
    pub async fn job(&self, job_id: &str) -> Result<Fields, QueryError> {
        let mut c = self.connection.clone();
        self.call(
            redis::cmd("HGETALL")
                .arg(keys::job(&self.namespace, job_id))
                .query_async(&mut c),
        )
        .await
    }

    /// The size of each of `tenant`'s `indexes` (suffixes such as `status:QUEUED`).
    pub async fn index_sizes(
        &self,
        tenant: &str,
        indexes: &[String],
    ) -> Result<Vec<u64>, QueryError> {
        let mut pipe = redis::pipe();
        for index in indexes {
            pipe.zcard(keys::index(&self.namespace, tenant, index));
        }
        let mut c = self.connection.clone();
        self.call(pipe.query_async(&mut c)).await
    }

    /// The next `count` entries of `tenant`'s `index` (fewer only if it has no more), newest
    /// first, below `upper` (score, id): entries of the upper score whose id is not below the
    /// upper id were served already and are passed over. The jobs' hashes follow in one
    /// pipelined round trip; entries whose hash is gone are dropped.
    pub async fn scan(
        &self,
        tenant: &str,
        index: &str,
        upper: Option<(i64, &str)>,
        count: usize,
    ) -> Result<Window, QueryError> {
        let key = keys::index(&self.namespace, tenant, index);
        let max = upper.map_or_else(|| "+inf".to_owned(), |(score, _)| score.to_string());
        let mut c = self.connection.clone();
        let mut fresh: Vec<(String, i64)> = Vec::with_capacity(count);
        let mut skipped = 0;
        let mut offset = 0;
        // Below a cursor the first entry is usually the cursor's own job: fetch one more.
        // Only several jobs of the cursor's millisecond take a second round trip.
        let mut fetch = count + usize::from(upper.is_some());
        let exhausted = loop {
            let entries: Vec<(String, f64)> = self
                .call(
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(&max)
                        .arg("-inf")
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(fetch)
                        .arg("WITHSCORES")
                        .query_async(&mut c),
                )
                .await?;
            let exhausted = entries.len() < fetch;
            offset += entries.len();
            // Scores are epoch milliseconds, exact in an f64.
            for (id, score) in entries {
                let score = score as i64;
                match upper {
                    Some((top, top_id)) if score == top && id.as_str() >= top_id => skipped += 1,
                    _ => fresh.push((id, score)),
                }
            }
            if exhausted || fresh.len() >= count {
                break exhausted;
            }
            fetch = count - fresh.len();
        };
        let last = fresh.last().map(|(id, score)| (*score, id.clone()));
        if fresh.is_empty() {
            return Ok(Window {
                jobs: Vec::new(),
                skipped,
                last,
                exhausted,
            });
        }
        let mut pipe = redis::pipe();
        for (id, _) in &fresh {
            pipe.hgetall(keys::job(&self.namespace, id));
        }
        let hashes: Vec<Fields> = self.call(pipe.query_async(&mut c)).await?;
        let jobs = fresh
            .into_iter()
            .zip(hashes)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|((id, score), fields)| Scanned { id, score, fields })
            .collect();
        Ok(Window {
            jobs,
            skipped,
            last,
            exhausted,
        })
    }

    /// The `{tenant}:{queue}` members of the queues set that belong to `tenant`, as queue names.
    pub async fn queues(&self, tenant: &str) -> Result<Vec<String>, QueryError> {
        let mut c = self.connection.clone();
        let members: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(keys::queues(&self.namespace))
                    .query_async(&mut c),
            )
            .await?;
        let prefix = format!("{tenant}:");
        let mut queues: Vec<String> = members
            .into_iter()
            .filter_map(|m| m.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        queues.sort();
        Ok(queues)
    }

    /// (ready, scheduled, running) of each of `tenant`'s `queues`.
    pub async fn queue_depths(
        &self,
        tenant: &str,
        queues: &[String],
    ) -> Result<Vec<(u64, u64, u64)>, QueryError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for queue in queues {
            for kind in ["ready", "scheduled", "running"] {
                pipe.zcard(keys::dispatch(&self.namespace, kind, tenant, queue));
            }
        }
        let mut c = self.connection.clone();
        let sizes: Vec<u64> = self.call(pipe.query_async(&mut c)).await?;
        Ok(sizes.chunks(3).map(|s| (s[0], s[1], s[2])).collect())
    }

    /// The counters hash of `tenant`.
    pub async fn counts(&self, tenant: &str) -> Result<HashMap<String, i64>, QueryError> {
        let mut c = self.connection.clone();
        self.call(
            redis::cmd("HGETALL")
                .arg(keys::counts(&self.namespace, tenant))
                .query_async(&mut c),
        )
        .await
    }

    /// Redis answers at all (readiness).
    pub async fn ping(state: &QueryState) -> Result<(), QueryError> {
        let mut c = state.redis.clone();
        bounded(
            state.config.redis_timeout,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        .map(drop)
    }
}

async fn bounded<T>(
    timeout: Duration,
    future: impl Future<Output = RedisResult<T>>,
) -> Result<T, QueryError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(QueryError::redis),
        Err(_) => Err(QueryError::Unavailable(format!(
            "the read model (Redis) did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

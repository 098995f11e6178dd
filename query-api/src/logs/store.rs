//! The search itself: one bounded ClickHouse query per page, behind a circuit breaker.

use super::request::{LogCursor, Search};
use super::sql::{Conditions, Param};
use crate::cursor;
use crate::QueryError;
use chrono::{DateTime, SecondsFormat, Utc};
use clickhouse::Row;
use futures::{StreamExt, TryStreamExt};
use ordo_clickhouse_store::{active_services, ClickHouseConfig, ServiceSummary, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Settings of log search.
#[derive(Debug, Clone)]
pub struct LogSearchConfig {
    /// Where `logs` is; its `timeout` bounds every search (client and server side).
    pub clickhouse: ClickHouseConfig,
    /// The longest window searched; a longer one is cut to its newest part.
    pub max_window: chrono::Duration,
    /// Most rows one search may read (`max_rows_to_read`): a query the indexes cannot narrow
    /// fails fast instead of scanning weeks of logs.
    pub max_rows_to_read: u64,
    /// Consecutive ClickHouse failures after which searches answer 503 at once …
    pub breaker_failures: u32,
    /// … for this long, so an unavailable ClickHouse is not queued up against.
    pub breaker_cooldown: Duration,
    /// Days of silence after which a service leaves `GET /api/v1/services`
    /// (`ORDO_SERVICE_RETIRE_DAYS`).
    pub service_retire_days: u32,
}

impl LogSearchConfig {
    pub fn new(clickhouse: ClickHouseConfig) -> Self {
        Self {
            clickhouse,
            max_window: chrono::Duration::days(31),
            max_rows_to_read: 500_000_000,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            service_retire_days: ordo_clickhouse_store::DEFAULT_SERVICE_RETIRE_DAYS,
        }
    }
}

pub struct LogStore {
    config: LogSearchConfig,
    client: clickhouse::Client,
    breaker: Breaker,
}

/// One line as read: the answer's fields and the cursor's tiebreaker.
#[derive(Debug, Row, Deserialize)]
struct Hit {
    #[serde(with = "clickhouse::serde::chrono::datetime64::nanos")]
    ts: DateTime<Utc>,
    level: String,
    service: String,
    env: String,
    host: String,
    component: String,
    message: String,
    attributes: BTreeMap<String, String>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    job_id: Option<Uuid>,
    attempt: u32,
    trace_id: String,
    span_id: String,
    tiebreak: u64,
}

/// One line as answered.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub ts: String,
    pub level: String,
    pub service: String,
    pub env: String,
    pub host: String,
    pub component: String,
    pub message: String,
    pub attributes: BTreeMap<String, String>,
    pub job_id: Option<Uuid>,
    pub attempt: u32,
    pub trace_id: String,
    pub span_id: String,
    /// With `context=N`: the lines around this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// Lines of the same job or service around a hit, oldest first on each side.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub before: Vec<LogLine>,
    pub after: Vec<LogLine>,
}

impl From<Hit> for LogLine {
    fn from(hit: Hit) -> Self {
        Self {
            ts: hit.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            level: hit.level,
            service: hit.service,
            env: hit.env,
            host: hit.host,
            component: hit.component,
            message: hit.message,
            attributes: hit.attributes,
            job_id: hit.job_id,
            attempt: hit.attempt,
            trace_id: hit.trace_id,
            span_id: hit.span_id,
            context: None,
        }
    }
}

/// A page of the answer, newest line first.
#[derive(Debug, Serialize)]
pub struct Page {
    pub lines: Vec<LogLine>,
    pub next_cursor: Option<String>,
    pub window: Window,
}

#[derive(Debug, Serialize)]
pub struct Window {
    pub from: String,
    pub to: String,
    /// The window asked for was longer than `max_window` and was cut to this.
    pub clamped: bool,
}

/// How far from a hit its context lines are looked for: bounds what one context query reads.
const CONTEXT_SPAN: chrono::Duration = chrono::Duration::hours(1);

/// Context queries of one request in flight at once.
const CONTEXT_QUERIES: usize = 4;

/// The columns of an answer's line and the tiebreaker of lines at one nanosecond: identical
/// lines hash alike (one of them may be skipped at a page boundary); Kafka's position tells
/// apart lines that came through it.
const SELECT: &str = "SELECT ts, level, service, env, host, component, message, attributes, \
                      job_id, attempt, trace_id, span_id, \
                      sipHash64(service, host, component, message, trace_id, kafka_partition, \
                      kafka_offset) AS tiebreak FROM logs";

impl LogStore {
    pub fn new(config: LogSearchConfig) -> Self {
        let client = config
            .clickhouse
            .client()
            .with_setting("max_rows_to_read", config.max_rows_to_read.to_string());
        Self {
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
            config,
            client,
        }
    }

    pub fn config(&self) -> &LogSearchConfig {
        &self.config
    }

    /// One page of `tenant`'s lines matching `search`.
    pub async fn search(&self, tenant: &str, search: &Search) -> Result<Page, QueryError> {
        let mut sql = Conditions::default();
        let tenant_param = sql.text(tenant);
        sql.push(format!("tenant = {tenant_param}"));
        let from = nanos(&mut sql, search.from);
        let to = nanos(&mut sql, search.to);
        sql.push(format!("ts >= {from} AND ts < {to}"));
        if let Some(cursor) = &search.cursor {
            let ts = nanos(&mut sql, DateTime::from_timestamp_nanos(cursor.ts));
            let tiebreak = sql.bind("UInt64", Param::UInt(cursor.tiebreak));
            // The plain `ts <=` lets the primary key prune; the tuple orders ties.
            sql.push(format!(
                "ts <= {ts} AND (ts, tiebreak) < ({ts}, {tiebreak})"
            ));
        }
        if let Some(query) = &search.query {
            sql.push_expr(query);
        }
        let limit = sql.bind("UInt32", Param::UInt(search.limit as u64 + 1));
        let text = format!(
            "{SELECT} WHERE {} ORDER BY ts DESC, tiebreak DESC LIMIT {limit}",
            sql.clause()
        );
        let mut hits = self.fetch(&text, &sql).await?;
        let next_cursor = (hits.len() > search.limit).then(|| {
            hits.truncate(search.limit);
            let last = hits.last().expect("limit is at least 1");
            cursor::encode(&LogCursor {
                ts: last.ts.timestamp_nanos_opt().unwrap_or(i64::MAX),
                tiebreak: last.tiebreak,
                from: search.from.timestamp_nanos_opt().unwrap_or(0),
            })
        });
        let contexts = match search.context {
            0 => vec![None; hits.len()],
            n => self.contexts(tenant, &hits, n).await?,
        };
        let lines = hits
            .into_iter()
            .zip(contexts)
            .map(|(hit, context)| LogLine {
                context,
                ..LogLine::from(hit)
            })
            .collect();
        Ok(Page {
            lines,
            next_cursor,
            window: Window {
                from: search.from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                to: search.to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                clamped: search.clamped,
            },
        })
    }

    /// The context of every hit: a few queries at a time, all within one timeout.
    async fn contexts(
        &self,
        tenant: &str,
        hits: &[Hit],
        n: usize,
    ) -> Result<Vec<Option<Context>>, QueryError> {
        // Collected first: a stream holding a closure that borrows `hits` is not general
        // enough for the handler's `Send` future.
        let queries: Vec<_> = hits
            .iter()
            .map(|hit| self.context(tenant, hit, n))
            .collect();
        let all = futures::stream::iter(queries)
            .buffered(CONTEXT_QUERIES)
            .map_ok(Some)
            .try_collect();
        tokio::time::timeout(self.config.clickhouse.timeout, all)
            .await
            .unwrap_or_else(|_| {
                Err(QueryError::Unavailable(format!(
                    "ClickHouse did not answer the context of the lines within {:?}",
                    self.config.clickhouse.timeout
                )))
            })
    }

    /// The `n` lines before and after `hit` from the same job (job lines) or service, within
    /// [`CONTEXT_SPAN`] of it.
    async fn context(&self, tenant: &str, hit: &Hit, n: usize) -> Result<Context, QueryError> {
        let mut sql = Conditions::default();
        let tenant = sql.text(tenant);
        sql.push(format!("tenant = {tenant}"));
        let service = sql.text(&hit.service);
        sql.push(format!("service = {service}"));
        if let Some(job) = hit.job_id {
            let job = sql.bind("UUID", Param::Text(job.to_string()));
            sql.push(format!("job_id = {job}"));
        }
        let from = nanos(&mut sql, hit.ts - CONTEXT_SPAN);
        let to = nanos(&mut sql, hit.ts + CONTEXT_SPAN);
        sql.push(format!("ts >= {from} AND ts <= {to}"));
        let ts = nanos(&mut sql, hit.ts);
        let tiebreak = sql.bind("UInt64", Param::UInt(hit.tiebreak));
        let limit = sql.bind("UInt32", Param::UInt(n as u64));
        let clause = sql.clause();
        let text = format!(
            "SELECT * FROM ({SELECT} WHERE {clause} AND (ts, tiebreak) < ({ts}, {tiebreak}) \
             ORDER BY ts DESC, tiebreak DESC LIMIT {limit}) \
             UNION ALL SELECT * FROM ({SELECT} WHERE {clause} AND (ts, tiebreak) > ({ts}, {tiebreak}) \
             ORDER BY ts, tiebreak LIMIT {limit})"
        );
        let (mut before, mut after): (Vec<Hit>, Vec<Hit>) = self
            .fetch(&text, &sql)
            .await?
            .into_iter()
            .partition(|line| (line.ts, line.tiebreak) < (hit.ts, hit.tiebreak));
        // Both sides oldest first, as they would be read around the hit.
        before.sort_by_key(|line| (line.ts, line.tiebreak));
        after.sort_by_key(|line| (line.ts, line.tiebreak));
        Ok(Context {
            before: before.into_iter().map(LogLine::from).collect(),
            after: after.into_iter().map(LogLine::from).collect(),
        })
    }

    /// Runs one query within the timeout, through the breaker.
    /// `tenant`'s services in the registry ClickHouse keeps from the logs, through the same
    /// breaker as searches.
    pub async fn services(&self, tenant: &str) -> Result<Vec<ServiceSummary>, QueryError> {
        self.breaker.check()?;
        let retire_days = self.config.service_retire_days;
        match active_services(&self.config.clickhouse, retire_days, Some(tenant)).await {
            Ok(services) => {
                self.breaker.succeeded();
                Ok(services)
            }
            Err(error) => {
                self.breaker.failed();
                Err(QueryError::Unavailable(error.to_string()))
            }
        }
    }

    async fn fetch(&self, text: &str, sql: &Conditions) -> Result<Vec<Hit>, QueryError> {
        self.breaker.check()?;
        let query = sql
            .params()
            .iter()
            .fold(self.client.query(text), |query, (name, value)| {
                query.param(name, value)
            });
        let result = self
            .config
            .clickhouse
            .bounded("log search", query.fetch_all::<Hit>())
            .await;
        match result {
            Ok(hits) => {
                self.breaker.succeeded();
                Ok(hits)
            }
            Err(error) if too_many_rows(&error) => {
                // The request's fault, not ClickHouse's: no count against the breaker.
                self.breaker.succeeded();
                Err(QueryError::BadRequest(format!(
                    "the search would read more than {} lines; narrow the window or add \
                     field filters (service:, level:, job:)",
                    self.config.max_rows_to_read
                )))
            }
            Err(error) => {
                self.breaker.failed();
                Err(QueryError::Unavailable(error.to_string()))
            }
        }
    }
}

/// A time as a nanosecond parameter (DateTime64 parameters would need ClickHouse's own text).
fn nanos(sql: &mut Conditions, time: DateTime<Utc>) -> String {
    // Beyond 2262 a window only needs to end in the far future.
    let value = sql.bind(
        "Int64",
        Param::Int(time.timestamp_nanos_opt().unwrap_or(i64::MAX)),
    );
    format!("fromUnixTimestamp64Nano({value}, 'UTC')")
}

fn too_many_rows(error: &StoreError) -> bool {
    matches!(error, StoreError::Query { source, .. } if source.to_string().contains("TOO_MANY_ROWS"))
}

/// Opens after `threshold` consecutive failures and stays open for `cooldown`; the first
/// search after that is let through and closes it again on success.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    fn check(&self) -> Result<(), QueryError> {
        let open_until = *self.open_until.lock().expect("breaker lock");
        match open_until {
            Some(until) if Instant::now() < until => {
                let left = until - Instant::now();
                Err(QueryError::Paused {
                    detail: format!(
                        "log search is paused for {left:?} after {} consecutive ClickHouse \
                         failures",
                        self.threshold
                    ),
                    // Whole seconds, rounded up: a client retrying then finds it closed.
                    retry_after_secs: left.as_secs() as u32 + 1,
                })
            }
            _ => Ok(()),
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().expect("breaker lock") = None;
    }

    fn failed(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            self.failures.store(0, Ordering::Relaxed);
            *self.open_until.lock().expect("breaker lock") = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_cools_down() {
        let breaker = Breaker::new(2, Duration::from_millis(50));
        breaker.failed();
        breaker.succeeded();
        breaker.failed();
        assert!(breaker.check().is_ok(), "the success reset the count");
        breaker.failed();
        assert!(matches!(
            breaker.check(),
            Err(QueryError::Paused {
                retry_after_secs: 1,
                ..
            })
        ));
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.check().is_ok());
    }
}

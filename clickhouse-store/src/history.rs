//! The `job_events` table as its sink and `ordo replay` use it: batches of rows in, the type
//! and queue of jobs whose `JobSubmitted` is stored, and the replay's blue/green pieces (a
//! scratch table of the same shape, the atomic exchange with the live one, the comparison
//! of two tables for `--verify`).
//!
//! Inserts carry no deduplication token: the table keeps no deduplication window, and a
//! redelivered event has the same (tenant, job_id, sequence), which ReplacingMergeTree
//! keeps once.

use crate::insert::insert;
use crate::{ClickHouseConfig, JobEventRow, StoreError};
use clickhouse::{Client, Row};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use uuid::Uuid;

/// The live table.
pub const JOB_EVENTS: &str = "job_events";

/// The columns whose hash stands for a row's content when two tables are compared.
const CONTENT: &str = "event_id, event_type, event_version, occurred_at, actor, correlation_id, \
                       job_type, queue, attempt, worker_id, error, reason, data";

/// A job's type and queue, as its `JobSubmitted` row has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKind {
    pub job_type: String,
    pub queue: String,
}

#[derive(Row, Deserialize)]
struct KindRow {
    #[serde(with = "clickhouse::serde::uuid")]
    job_id: Uuid,
    job_type: String,
    queue: String,
}

/// An event row, identified by its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Row, Deserialize)]
struct KeyHash {
    tenant: String,
    job_id: String,
    sequence: u64,
    hash: u64,
}

/// One job-events table of a database: `job_events`, or a replay's scratch table.
#[derive(Clone)]
pub struct JobEventsTable {
    config: ClickHouseConfig,
    /// One client, so that the insert's schema is fetched once.
    client: Client,
    name: String,
}

impl JobEventsTable {
    /// The live `job_events`.
    pub fn live(config: &ClickHouseConfig) -> Self {
        Self::named(config, JOB_EVENTS)
    }

    /// The table `name` (letters, digits and `_`) of the configured database.
    pub fn named(config: &ClickHouseConfig, name: &str) -> Self {
        Self {
            config: config.clone(),
            client: config.client(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn insert(&self, rows: &[JobEventRow]) -> Result<u64, StoreError> {
        insert(&self.config, &self.client, &self.name, rows, None).await
    }

    /// The type and queue of those of `jobs` (tenant, job id) whose `JobSubmitted` is stored.
    pub async fn kinds(
        &self,
        jobs: &[(String, Uuid)],
    ) -> Result<HashMap<Uuid, JobKind>, StoreError> {
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let mut tenants: Vec<&str> = jobs.iter().map(|(t, _)| t.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let ids: Vec<String> = jobs.iter().map(|(_, id)| id.to_string()).collect();
        let rows = self
            .config
            .bounded(
                "SELECT job kinds",
                self.client
                    .query(&format!(
                        "SELECT job_id, any(job_type) AS job_type, any(queue) AS queue FROM {} \
                         WHERE tenant IN ? AND job_id IN ? AND sequence = 1 GROUP BY job_id",
                        self.name
                    ))
                    .bind(tenants)
                    .bind(ids)
                    .fetch_all::<KindRow>(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let kind = JobKind {
                    job_type: r.job_type,
                    queue: r.queue,
                };
                (r.job_id, kind)
            })
            .collect())
    }

    /// A new empty table `name` shaped like this one (columns, engine, keys).
    pub async fn create_like(&self, name: &str) -> Result<JobEventsTable, StoreError> {
        self.ddl(&format!("CREATE TABLE {name} AS {}", self.name))
            .await?;
        Ok(Self::named(&self.config, name))
    }

    /// Swaps this table's contents with `other`'s in one atomic step: readers and the sink
    /// see the one or the other, never neither.
    pub async fn exchange(&self, other: &JobEventsTable) -> Result<(), StoreError> {
        self.ddl(&format!("EXCHANGE TABLES {} AND {}", self.name, other.name))
            .await
    }

    pub async fn drop_table(self) -> Result<(), StoreError> {
        self.ddl(&format!("DROP TABLE IF EXISTS {}", self.name))
            .await
    }

    async fn ddl(&self, sql: &str) -> Result<(), StoreError> {
        self.config
            .bounded(sql, self.client.query(sql).execute())
            .await
    }

    /// Every row in which this table differs from `expected` (each read with FINAL: one
    /// copy per key), at most `limit` from each side, and how many differ in all.
    pub async fn differences(
        &self,
        expected: &JobEventsTable,
        limit: u64,
    ) -> Result<(Vec<Difference>, u64), StoreError> {
        let (only_here, here_count) = self.except(expected, limit).await?;
        let (only_there, there_count) = expected.except(self, limit).await?;
        let mut keyed: BTreeMap<(String, String, u64), (bool, bool)> = BTreeMap::new();
        for row in &only_here {
            keyed.entry(key(row)).or_default().0 = true;
        }
        for row in &only_there {
            keyed.entry(key(row)).or_default().1 = true;
        }
        let changed: Vec<_> = keyed
            .iter()
            .filter(|(_, sides)| **sides == (true, true))
            .map(|(key, _)| key.clone())
            .collect();
        let (here_rows, there_rows) = (self.rows(&changed).await?, expected.rows(&changed).await?);
        let differences = keyed
            .into_iter()
            .map(|((tenant, job_id, sequence), sides)| {
                let kind = match sides {
                    (true, false) => DifferenceKind::Unexpected,
                    (false, true) => DifferenceKind::Missing,
                    _ => {
                        let at = (tenant.clone(), job_id.clone(), sequence);
                        DifferenceKind::Changed {
                            columns: changed_columns(here_rows.get(&at), there_rows.get(&at)),
                        }
                    }
                };
                Difference {
                    tenant,
                    job_id,
                    sequence,
                    kind,
                }
            })
            .collect();
        // A changed row counts once, not once per side.
        let changed = changed.len() as u64;
        Ok((differences, here_count + there_count - changed))
    }

    /// Rows of this table (key and content hash) that `other` does not have, at most
    /// `limit`, and how many there are.
    async fn except(
        &self,
        other: &JobEventsTable,
        limit: u64,
    ) -> Result<(Vec<KeyHash>, u64), StoreError> {
        let keyed = |table: &str| {
            format!(
                "SELECT tenant, toString(job_id) AS job_id, sequence, cityHash64({CONTENT}) AS hash \
                 FROM {table} FINAL"
            )
        };
        let except = format!("{} EXCEPT {}", keyed(&self.name), keyed(&other.name));
        let rows = self
            .config
            .bounded(
                "compare job-events tables",
                self.client
                    .query(&format!(
                        "{except} ORDER BY tenant, job_id, sequence LIMIT ?"
                    ))
                    .bind(limit)
                    .fetch_all::<KeyHash>(),
            )
            .await?;
        let count = self
            .config
            .bounded(
                "count differences",
                self.client
                    .query(&format!("SELECT count() FROM ({except})"))
                    .fetch_one::<u64>(),
            )
            .await?;
        Ok((rows, count))
    }

    /// The rows with these keys, one copy each.
    async fn rows(
        &self,
        keys: &[(String, String, u64)],
    ) -> Result<HashMap<(String, String, u64), JobEventRow>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .config
            .bounded(
                "SELECT rows to compare",
                self.client
                    .query(&format!(
                        "SELECT ?fields FROM {} FINAL WHERE (tenant, toString(job_id), sequence) IN ?",
                        self.name
                    ))
                    .bind(keys)
                    .fetch_all::<JobEventRow>(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    (row.tenant.clone(), row.job_id.to_string(), row.sequence),
                    row,
                )
            })
            .collect())
    }
}

fn key(row: &KeyHash) -> (String, String, u64) {
    (row.tenant.clone(), row.job_id.clone(), row.sequence)
}

/// The columns in which two copies of an event differ.
fn changed_columns(a: Option<&JobEventRow>, b: Option<&JobEventRow>) -> Vec<&'static str> {
    let (Some(a), Some(b)) = (a, b) else {
        // Changed again between the comparison and this read.
        return vec!["(row changed while compared)"];
    };
    let columns: [(&'static str, bool); 13] = [
        ("event_id", a.event_id != b.event_id),
        ("event_type", a.event_type != b.event_type),
        ("event_version", a.event_version != b.event_version),
        ("occurred_at", a.occurred_at != b.occurred_at),
        ("actor", a.actor != b.actor),
        ("correlation_id", a.correlation_id != b.correlation_id),
        ("job_type", a.job_type != b.job_type),
        ("queue", a.queue != b.queue),
        ("attempt", a.attempt != b.attempt),
        ("worker_id", a.worker_id != b.worker_id),
        ("error", a.error != b.error),
        ("reason", a.reason != b.reason),
        ("data", a.data != b.data),
    ];
    columns
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

/// An event in which a job-events table differs from the one it was compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub tenant: String,
    pub job_id: String,
    pub sequence: u64,
    pub kind: DifferenceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DifferenceKind {
    /// Expected, not there.
    Missing,
    /// There, not expected.
    Unexpected,
    /// In both, with other values in these columns.
    Changed { columns: Vec<&'static str> },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event = format!("{}/{} #{}", self.tenant, self.job_id, self.sequence);
        match &self.kind {
            DifferenceKind::Missing => write!(f, "{event}: missing"),
            DifferenceKind::Unexpected => write!(f, "{event}: unexpected"),
            DifferenceKind::Changed { columns } => {
                write!(f, "{event}: differs in {}", columns.join(", "))
            }
        }
    }
}

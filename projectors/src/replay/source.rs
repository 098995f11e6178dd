//! Job events read back from the PostgreSQL event store, in append (`position`) order, in
//! keyset pages (`position > last`, never OFFSET, so every page costs the same).
//!
//! The source owns one connection of its own rather than borrowing the pool's: the job set of
//! a scoped replay lives in a temporary table of that session, and its longer statement
//! timeout must not leak back into the pool.

use super::Scope;
use chrono::{SecondsFormat, Utc};
use ordo_domain::envelope::keys;
use ordo_domain::EventEnvelope;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};
use std::time::Duration;

/// Longest wait for the source's own connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One row of the `events` table.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredEvent {
    pub position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

impl StoredEvent {
    /// The envelope the write side built for this event (command-api's store builds it with
    /// the same [`EventEnvelope::from_stored`] from the same columns).
    pub fn envelope(&self) -> Result<EventEnvelope, String> {
        EventEnvelope::from_stored(
            &self.aggregate_id,
            self.sequence as u64,
            &self.event_type,
            &self.event_version,
            &self.payload,
            &self.metadata,
        )
        .map_err(|e| e.reason)
    }

    pub fn event_id(&self) -> Option<String> {
        self.metadata
            .get(keys::EVENT_ID)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

pub(crate) struct EventSource {
    connection: PgConnection,
    /// Whether `replay_jobs` restricts the events to some jobs.
    scoped: bool,
    page_size: i64,
}

const COLUMNS: &str =
    "e.position, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata";

impl EventSource {
    /// Connects and, for a scoped replay, records the jobs of `scope` in the session's
    /// `replay_jobs` table.
    pub async fn open(
        pool: &PgPool,
        scope: &Scope,
        page_size: usize,
        statement_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let options = pool.connect_options();
        let mut connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect_with(options.as_ref()),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("PostgreSQL did not accept a connection within {CONNECT_TIMEOUT:?}")
        })??;
        sqlx::query(&format!(
            "SET statement_timeout = {}",
            statement_timeout.as_millis()
        ))
        .execute(&mut connection)
        .await?;
        let scoped = !matches!(scope, Scope::All);
        if scoped {
            sqlx::query("CREATE TEMPORARY TABLE replay_jobs (job_id text PRIMARY KEY)")
                .execute(&mut connection)
                .await?;
        }
        match scope {
            Scope::All => {}
            Scope::Jobs(ids) => {
                sqlx::query(
                    "INSERT INTO replay_jobs SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING",
                )
                .bind(ids)
                .execute(&mut connection)
                .await?;
            }
            Scope::Since(since) => {
                // `occurred_at` is stored as RFC 3339 UTC with microseconds (see
                // `CommandMetadata::into_map`), so text order is time order, and a text
                // comparison cannot fail on a malformed row the way a cast would.
                sqlx::query(
                    "INSERT INTO replay_jobs SELECT DISTINCT aggregate_id FROM events \
                     WHERE aggregate_type = 'job' AND metadata->>'occurred_at' >= $1",
                )
                .bind(
                    since
                        .with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::Micros, true),
                )
                .execute(&mut connection)
                .await?;
            }
        }
        if scoped {
            // Temporary tables are never auto-analyzed; without statistics the planner
            // guesses their size and may scan every event per page.
            sqlx::query("ANALYZE replay_jobs")
                .execute(&mut connection)
                .await?;
        }
        Ok(Self {
            connection,
            scoped,
            page_size: page_size as i64,
        })
    }

    fn tables(&self) -> &'static str {
        if self.scoped {
            "events e JOIN replay_jobs j ON j.job_id = e.aggregate_id"
        } else {
            "events e"
        }
    }

    /// The position of the last event appended so far (0 for an empty store).
    pub async fn last_position(&mut self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
            .fetch_one(&mut self.connection)
            .await
    }

    /// Events of the scope with a position in `(after, up_to]`.
    pub async fn count(&mut self, after: i64, up_to: i64) -> sqlx::Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE e.aggregate_type = 'job' AND e.position > $1 AND e.position <= $2",
            self.tables()
        );
        let count: i64 = sqlx::query_scalar(&sql)
            .bind(after)
            .bind(up_to)
            .fetch_one(&mut self.connection)
            .await?;
        Ok(count as u64)
    }

    /// The next page of the scope after position `after`, up to position `up_to`.
    pub async fn page(&mut self, after: i64, up_to: i64) -> sqlx::Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE e.aggregate_type = 'job' AND e.position > $1 \
             AND e.position <= $2 ORDER BY e.position LIMIT $3",
            self.tables()
        );
        sqlx::query_as(&sql)
            .bind(after)
            .bind(up_to)
            .bind(self.page_size)
            .fetch_all(&mut self.connection)
            .await
    }

    /// The jobs of a scoped replay that have events (sorted), and the requested ids that
    /// have none.
    pub async fn jobs(&mut self) -> sqlx::Result<(Vec<String>, Vec<String>)> {
        if !self.scoped {
            return Ok((Vec::new(), Vec::new()));
        }
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT j.job_id, EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'job' \
             AND e.aggregate_id = j.job_id AND e.sequence = 1) FROM replay_jobs j ORDER BY j.job_id",
        )
        .fetch_all(&mut self.connection)
        .await?;
        let (found, missing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, found)| *found);
        Ok((
            found.into_iter().map(|(id, _)| id).collect(),
            missing.into_iter().map(|(id, _)| id).collect(),
        ))
    }

    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// Whether the event store of `pool` has any job event.
pub async fn has_job_events(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'job')")
        .fetch_one(pool)
        .await
}

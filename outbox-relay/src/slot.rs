//! The replication slot and the SQL side of the relay: create the slot if missing, read where
//! it was last confirmed, measure the WAL it holds back, and delete published outbox rows.

use futures::stream::BoxStream;
use percent_encoding::percent_decode_str;
use pgwire_replication::{Lsn, ReplicationConfig};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Builds the replication connection settings from a `postgres://user:pass@host:port/db` URL,
/// the same one every other Ordo process uses.
pub fn replication_config(
    database_url: &str,
    slot: &str,
    publication: &str,
) -> anyhow::Result<ReplicationConfig> {
    let url = url::Url::parse(database_url)
        .map_err(|e| anyhow::anyhow!("ORDO_DATABASE_URL is not a URL ({e})"))?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let user = if url.username().is_empty() {
        "postgres".to_owned()
    } else {
        decode(url.username())
    };
    let database = url.path().trim_start_matches('/');
    anyhow::ensure!(!database.is_empty(), "ORDO_DATABASE_URL names no database");
    Ok(ReplicationConfig::new(
        url.host_str().unwrap_or("127.0.0.1"),
        user,
        url.password().map(decode).unwrap_or_default(),
        decode(database),
        slot,
        publication,
    )
    .with_port(url.port().unwrap_or(5432))
    .with_application_name(format!("ordo-relay-{slot}"))
    // A new commit is acknowledged within this interval; keepalives come more often than
    // PostgreSQL's wal_sender_timeout (60 s) requires.
    .with_status_interval(Duration::from_millis(200))
    .with_wakeup_interval(Duration::from_secs(5)))
}

/// Where a session starts.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// The position the slot last confirmed, where streaming resumes.
    pub start: Lsn,
    /// The slot has not yet published the rows committed before it existed.
    pub needs_sweep: bool,
}

/// Checks the publication exists (it comes with the migrations), creates the slot if it is
/// missing (or invalidated), and says whether the rows from before the slot still need publishing.
pub async fn prepare(pool: &PgPool, slot: &str, publication: &str) -> anyhow::Result<Prepared> {
    let publication_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(publication)
            .fetch_one(pool)
            .await?;
    anyhow::ensure!(
        publication_exists,
        "publication {publication:?} does not exist; run `ordo migrate` first"
    );
    // A slot PostgreSQL invalidated (its WAL went past `max_slot_wal_keep_size` while no relay
    // read it) can never be read again: every session would fail with SQLSTATE 55000 for
    // good. It is dropped and created anew below, and, as for any new slot, the rows still in
    // the outbox (never acknowledged by the broker) are published again.
    let dropped = sqlx::query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = $1 AND wal_status = 'lost' AND NOT active",
    )
    .bind(slot)
    .execute(pool)
    .await?;
    if dropped.rows_affected() > 0 {
        tracing::error!(
            slot,
            "the replication slot was invalidated (its WAL was removed); dropped it to create it \
             again and publish the outbox rows it had not delivered"
        );
    }
    let created = sqlx::query(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput') \
         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .execute(pool)
    .await;
    match created {
        Ok(done) if done.rows_affected() > 0 => {
            tracing::info!(slot, "replication slot created");
            // A slot dropped and created again has missed rows again.
            sqlx::query("DELETE FROM outbox_relay_slots WHERE slot = $1")
                .bind(slot)
                .execute(pool)
                .await?;
        }
        Ok(_) => {}
        // Another relay created it between our check and our create.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42710") => {}
        Err(e) => return Err(e.into()),
    }
    let confirmed: Option<String> = sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_one(pool)
    .await?;
    let swept: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox_relay_slots WHERE slot = $1)")
            .bind(slot)
            .fetch_one(pool)
            .await?;
    Ok(Prepared {
        start: confirmed
            .and_then(|lsn| Lsn::parse(&lsn).ok())
            .unwrap_or(Lsn::from_u64(0)),
        needs_sweep: !swept,
    })
}

/// Whether a walsender streams from `slot`. While `pg_create_logical_replication_slot` waits
/// for a consistent point the slot already shows as active, held by the creating backend with
/// no confirmed position yet; a slot held by a walsender is past that.
pub async fn is_streaming(pool: &PgPool, slot: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots s \
         JOIN pg_stat_replication r ON r.pid = s.active_pid \
         WHERE s.slot_name = $1 AND s.confirmed_flush_lsn IS NOT NULL)",
    )
    .bind(slot)
    .fetch_one(pool)
    .await
}

/// Records that the slot's sweep finished.
pub async fn mark_swept(pool: &PgPool, slot: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO outbox_relay_slots (slot) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(slot)
        .execute(pool)
        .await
        .map(drop)
}

/// The outbox rows present now, as text exactly as pgoutput renders them (the same type output
/// functions), in the column order of [`crate::route::OUTBOX_COLUMNS`], in order per key.
pub fn existing_rows(
    connection: &mut sqlx::PgConnection,
) -> BoxStream<'_, sqlx::Result<Vec<Option<String>>>> {
    sqlx::query_scalar(
        "SELECT ARRAY[id::text, aggregatetype, aggregateid, type, payload::text, sequence::text] \
         FROM outbox ORDER BY aggregateid, sequence",
    )
    .fetch(connection)
}

/// Bytes of WAL the slot keeps from being recycled: how far the server is ahead of the oldest
/// position the slot may still need.
pub async fn retained_wal_bytes(pool: &PgPool, slot: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Deletes outbox rows Kafka has acknowledged. The publication carries inserts only, so the
/// deletes never reach Kafka.
pub async fn delete_published(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<u64> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_part_of_the_url() {
        let c = replication_config(
            "postgres://ordo%40x:p%2Fw@db.example:6543/ordo_prod",
            "s",
            "p",
        )
        .unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.as_str()
            ),
            ("db.example", 6543, "ordo@x", "p/w")
        );
        assert_eq!(c.database, "ordo_prod");
    }

    #[test]
    fn defaults_and_refusals() {
        let c = replication_config("postgres://127.0.0.1/ordo", "s", "p").unwrap();
        assert_eq!((c.user.as_str(), c.port), ("postgres", 5432));
        assert!(replication_config("postgres://127.0.0.1", "s", "p").is_err());
        assert!(replication_config("not a url", "s", "p").is_err());
    }
}

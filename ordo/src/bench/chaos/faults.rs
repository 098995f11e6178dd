//! Faults and the time the platform takes to recover from each.
//!
//! Recovery, precisely: the time from the start of the fault (the kill, or the stop of
//! PostgreSQL) until the first job submitted after it completed, as the event store records
//! it: the earliest `occurred_at` of a JobCompleted whose job's JobSubmitted has an
//! `occurred_at` after the fault's start (both stamped by the API on this machine's clock;
//! `occurred_at` is stored as RFC 3339 UTC with microseconds, so text order is time
//! order). Every role took
//! part in that job (API, relay, projector, claim, worker), so it is the moment the platform
//! does work end to end again; the reaper's part shows in the settling at the end instead.

use super::stack::Stack;
use crate::cli::Fault;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// How often the event store is asked whether jobs complete again.
const POLL: Duration = Duration::from_millis(200);

/// What one fault did and how long the platform took to recover.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub fault: Fault,
    /// Seconds into the load.
    pub at: Duration,
    pub what: String,
    /// The kill (or stop) and the restart, until the process or service answered again.
    pub took: Duration,
    /// `None`: no job submitted after the fault completed within the recovery timeout.
    pub recovery: Option<Duration>,
    /// Injection failed (the service could not be restarted, say).
    pub error: Option<String>,
}

pub fn name(fault: Fault) -> &'static str {
    match fault {
        Fault::Api => "api",
        Fault::Relay => "relay",
        Fault::Projector => "projector",
        Fault::Worker => "worker",
        Fault::Reaper => "reaper",
        Fault::Postgres => "postgres",
        Fault::Redis => "redis",
        Fault::Broker => "broker",
    }
}

/// Injects `fault` and waits (up to `timeout`) for a job submitted after it to complete.
pub async fn strike(
    stack: &mut Stack,
    pool: &PgPool,
    fault: Fault,
    at: Duration,
    timeout: Duration,
) -> FaultRecord {
    // Before the fault: it may take PostgreSQL away.
    let position = last_position(pool, timeout).await;
    let started = Instant::now();
    let started_at = Utc::now();
    let injected = stack.inject(fault).await;
    let took = started.elapsed();
    let (what, error) = match injected {
        Ok(what) => (what, None),
        Err(e) => (format!("{} fault", name(fault)), Some(format!("{e:#}"))),
    };
    let recovery = match position {
        Some(position) => {
            first_completion(stack, pool, position, started, started_at, timeout).await
        }
        None => None,
    };
    FaultRecord {
        fault,
        at,
        what,
        took,
        recovery,
        error,
    }
}

/// The position of the last event so far; `None` if the store did not answer in time.
async fn last_position(pool: &PgPool, timeout: Duration) -> Option<i64> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        match sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(pool)
            .await
        {
            Ok(position) => return Some(position),
            Err(e) => tracing::warn!(error = %e, "reading the last position failed"),
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// Waits for the first completion of a job submitted after `position`; answers the time
/// from the fault to it (by the event's `occurred_at`, the clock of the same machine).
/// Meanwhile a role that exits by itself is started again ([`Stack::supervise`]).
pub async fn first_completion(
    stack: &mut Stack,
    pool: &PgPool,
    position: i64,
    started: Instant,
    started_at: DateTime<Utc>,
    timeout: Duration,
) -> Option<Duration> {
    while started.elapsed() < timeout {
        stack.supervise();
        // `position` only narrows the scan to the events written since the fault began.
        let first: sqlx::Result<Option<String>> = sqlx::query_scalar(
            "SELECT min(c.metadata->>'occurred_at') FROM events c \
             WHERE c.position > $1 AND c.event_type = 'JobCompleted' AND EXISTS ( \
                 SELECT 1 FROM events s WHERE s.aggregate_type = c.aggregate_type \
                 AND s.aggregate_id = c.aggregate_id AND s.sequence = 1 AND s.position > $1 \
                 AND s.metadata->>'occurred_at' > $2)",
        )
        .bind(position)
        .bind(started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .fetch_one(pool)
        .await;
        match first {
            Ok(Some(at)) => {
                return match DateTime::parse_from_rfc3339(&at) {
                    Ok(at) => Some(
                        (at.with_timezone(&Utc) - started_at)
                            .to_std()
                            .unwrap_or_default(),
                    ),
                    // Not expected: the write side stores RFC 3339; fall back to now.
                    Err(_) => Some(started.elapsed()),
                };
            }
            Ok(None) => {}
            // PostgreSQL restarting: the pool reconnects by itself.
            Err(e) => tracing::debug!(error = %e, "asking for a recovery failed"),
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

//! What happened to the measured jobs of a benchmark, read from Ordo's event store: how many
//! completed, how often each started, and submit → complete latency split at the start.

use sqlx::PgPool;
use std::time::Duration;

/// The measured jobs as the event store saw them, all from one query.
pub(super) struct Lifecycle {
    pub(super) jobs: i64,
    pub(super) completed: i64,
    /// JobStarted events, and the jobs that have exactly one.
    pub(super) starts: i64,
    pub(super) started_once: i64,
    pub(super) failures: i64,
    /// First JobSubmitted → last JobCompleted.
    pub(super) span: Duration,
    /// p50, p95, p99 in ms of submit → complete, submit → start and start → complete.
    pub(super) total_ms: Vec<f64>,
    pub(super) queued_ms: Vec<f64>,
    pub(super) running_ms: Vec<f64>,
}

impl Lifecycle {
    pub(super) async fn query(pool: &PgPool, after_position: i64) -> anyhow::Result<Self> {
        type Row = (
            i64,
            i64,
            i64,
            i64,
            i64,
            Option<f64>,
            Option<Vec<f64>>,
            Option<Vec<f64>>,
            Option<Vec<f64>>,
        );
        let row: Row = sqlx::query_as(
            "WITH run AS (
                 SELECT aggregate_id, event_type, (metadata->>'occurred_at')::timestamptz AS at
                 FROM events WHERE position > $1
             ), jobs AS (
                 SELECT min(at) FILTER (WHERE event_type = 'JobSubmitted') AS submitted,
                        min(at) FILTER (WHERE event_type = 'JobStarted') AS started,
                        max(at) FILTER (WHERE event_type = 'JobCompleted') AS completed,
                        count(*) FILTER (WHERE event_type = 'JobStarted') AS starts,
                        count(*) FILTER (WHERE event_type = 'JobFailed') AS failures
                 FROM run GROUP BY aggregate_id
             )
             SELECT count(*), count(completed),
                    coalesce(sum(starts), 0)::bigint,
                    count(*) FILTER (WHERE starts = 1),
                    coalesce(sum(failures), 0)::bigint,
                    extract(epoch FROM max(completed) - min(submitted))::float8,
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM completed - submitted)::float8 * 1e3),
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM started - submitted)::float8 * 1e3),
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM completed - started)::float8 * 1e3)
             FROM jobs",
        )
        .bind(after_position)
        .fetch_one(pool)
        .await?;
        let (jobs, completed, starts, started_once, failures, span, total, queued, running) = row;
        Ok(Self {
            jobs,
            completed,
            starts,
            started_once,
            failures,
            span: Duration::from_secs_f64(span.unwrap_or_default().max(0.0)),
            total_ms: total.unwrap_or_default(),
            queued_ms: queued.unwrap_or_default(),
            running_ms: running.unwrap_or_default(),
        })
    }

    pub(super) fn jobs_per_second(&self) -> f64 {
        self.completed as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

/// The i-th of the p50, p95, p99 triple, NaN when there were no jobs.
pub(super) fn ms(percentiles: &[f64], i: usize) -> f64 {
    percentiles.get(i).copied().unwrap_or(f64::NAN)
}

pub(super) fn percentiles(label: &str, values: &[f64]) -> String {
    format!(
        "{label:<46}           p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms",
        ms(values, 0),
        ms(values, 1),
        ms(values, 2),
    )
}

//! What happened to the measured jobs of a benchmark: how many completed, how often each
//! started, and enqueue → complete latency split at the start. Read from Ordo's event store
//! ([`Lifecycle::query`]) or built from a peer's own per-job records ([`Lifecycle::from_times`]),
//! with the same statistics either way, so both print alike ([`percentiles`]).

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

    /// The same figures as [`Lifecycle::query`] from per-job instants: percentiles
    /// interpolated as PostgreSQL's `percentile_cont`, a job without an instant left out of
    /// the latencies that need it (as SQL leaves out NULLs).
    pub(super) fn from_times(jobs: &[JobTimes]) -> Self {
        let latencies = |from: fn(&JobTimes) -> Option<f64>, to: fn(&JobTimes) -> Option<f64>| {
            let mut values: Vec<f64> = (jobs.iter())
                .filter_map(|job| Some(to(job)? - from(job)?))
                .collect();
            values.sort_unstable_by(f64::total_cmp);
            [0.5, 0.95, 0.99]
                .into_iter()
                .filter_map(|fraction| percentile_cont(&values, fraction))
                .collect::<Vec<_>>()
        };
        let enqueued = |job: &JobTimes| Some(job.enqueued);
        let started = |job: &JobTimes| job.started;
        let completed = |job: &JobTimes| job.completed;
        let first_enqueue = jobs.iter().map(|job| job.enqueued).min_by(f64::total_cmp);
        let last_complete = jobs.iter().filter_map(completed).max_by(f64::total_cmp);
        let span_ms = match (first_enqueue, last_complete) {
            (Some(first), Some(last)) => (last - first).max(0.0),
            _ => 0.0,
        };
        Self {
            jobs: jobs.len() as i64,
            completed: jobs.iter().filter(|job| job.completed.is_some()).count() as i64,
            starts: jobs.iter().map(|job| job.starts).sum(),
            started_once: jobs.iter().filter(|job| job.starts == 1).count() as i64,
            failures: jobs.iter().map(|job| job.failures).sum(),
            span: Duration::from_secs_f64(span_ms / 1e3),
            total_ms: latencies(enqueued, completed),
            queued_ms: latencies(enqueued, started),
            running_ms: latencies(started, completed),
        }
    }

    pub(super) fn jobs_per_second(&self) -> f64 {
        self.completed as f64 / self.span.as_secs_f64().max(1e-9)
    }
}

/// One job's instants in epoch milliseconds, as a peer system recorded them.
#[derive(Debug, Clone, Default)]
pub(super) struct JobTimes {
    pub(super) enqueued: f64,
    pub(super) started: Option<f64>,
    pub(super) completed: Option<f64>,
    /// Times the job started, and its failed attempts.
    pub(super) starts: i64,
    pub(super) failures: i64,
}

/// PostgreSQL's `percentile_cont(fraction)` of ascending `sorted`: linear interpolation
/// between the two nearest ranks; `None` for no values.
fn percentile_cont(sorted: &[f64], fraction: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = fraction * last as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    let (low, high) = (sorted[below], sorted[above.min(last)]);
    Some(low + (high - low) * (rank - below as f64))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_cont_interpolates_like_postgresql() {
        // SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY v)
        // FROM unnest('{1,2,3,4,10}'::float8[]) v  →  {3, 8.8, 9.76}
        let values = [1.0, 2.0, 3.0, 4.0, 10.0];
        let got: Vec<f64> = [0.5, 0.95, 0.99]
            .iter()
            .map(|&f| percentile_cont(&values, f).unwrap())
            .collect();
        for (got, want) in got.iter().zip([3.0, 8.8, 9.76]) {
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
        assert_eq!(percentile_cont(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile_cont(&[], 0.5), None);
    }

    #[test]
    fn from_times_counts_like_the_event_store_query() {
        let job = |enqueued: f64, started: f64, completed: Option<f64>, starts| JobTimes {
            enqueued,
            started: Some(started),
            completed,
            starts,
            failures: starts - 1,
        };
        let lifecycle = Lifecycle::from_times(&[
            job(1000.0, 1001.0, Some(1003.0), 1),
            job(1001.0, 1004.0, Some(1010.0), 2),
            job(1002.0, 1005.0, None, 1),
        ]);
        assert_eq!((lifecycle.jobs, lifecycle.completed), (3, 2));
        assert_eq!((lifecycle.starts, lifecycle.started_once), (4, 2));
        assert_eq!(lifecycle.failures, 1);
        assert_eq!(lifecycle.span, Duration::from_millis(10));
        // enqueue → complete of the two completed jobs: 3 and 9 ms.
        assert!((lifecycle.total_ms[0] - 6.0).abs() < 1e-9);
        // enqueue → start of all three: 1, 3, 3 ms.
        assert!((lifecycle.queued_ms[0] - 3.0).abs() < 1e-9);
        assert_eq!(lifecycle.running_ms.len(), 3);
    }
}

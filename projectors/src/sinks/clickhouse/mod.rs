//! The ClickHouse read models: [`logs`] (`clickhouse-logs`: the lines of `ordo.logs`, stored
//! exactly once) and [`history`] (`clickhouse-history`: every job event of
//! `outbox.event.job`), each a sink of the one consumer loop; [`job_rows`] turns a job event
//! into its row, for the history sink and for `ordo replay`. The SQL is
//! `ordo-clickhouse-store`'s.

pub mod history;
pub mod job_rows;
pub mod logs;

use ordo_clickhouse_store::StoreError;
use std::time::Duration;

/// Rows per insert unless configured: ClickHouse wants few large inserts (each makes parts
/// that merges must fold; about one a second is its usual advice).
pub const DEFAULT_MAX_BATCH_ROWS: usize = 50_000;

/// How long a batch waits for more records after its first, unless configured.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

/// The `kind` of a failed write: the store's own (`clickhouse_timeout`,
/// `clickhouse_unavailable`, `clickhouse_query`), or `clickhouse` for anything else.
fn error_kind(error: &anyhow::Error) -> &'static str {
    error
        .downcast_ref::<StoreError>()
        .map_or("clickhouse", StoreError::kind)
}

//! Many rows as one INSERT statement, bounded by the configured timeout like every other
//! call. Each insert may carry an `insert_deduplication_token`: ClickHouse then drops an
//! insert whose token it has seen among the table's last `non_replicated_deduplication_window`
//! inserts, part by part (a token stands for its first part, `token_1` for the second, …),
//! so an insert retried with its token after a failure stores only what the failed try did
//! not. Without a token, a table with such a window deduplicates by the data's hash instead,
//! which would drop a legitimate re-insert of rows removed since: inserts into `logs` carry
//! one.

use crate::{ClickHouseConfig, StoreError};
use clickhouse::{Client, RowOwned, RowWrite};
use std::borrow::Borrow;

/// Inserts `rows` into `table` as one statement; `token` deduplicates retries (see the
/// module docs), none for a table without a deduplication window. Returns the rows written.
pub(crate) async fn insert<T, R>(
    config: &ClickHouseConfig,
    client: &Client,
    table: &str,
    rows: &[R],
    token: Option<&str>,
) -> Result<u64, StoreError>
where
    T: RowOwned + RowWrite,
    R: Borrow<T> + Sync,
{
    let what = format!("INSERT INTO {table}");
    config
        .bounded(&what, async {
            let mut insert = client.insert::<T>(table).await?;
            if let Some(token) = token {
                insert = insert.with_setting("insert_deduplication_token", token);
            }
            let mut insert = insert
                // A batch whose lines span more than 100 days (a backfill) makes more parts
                // than ClickHouse allows one insert by default; a sink cannot split what the
                // topic holds, and refusing would stop it for good.
                .with_setting("throw_on_max_partitions_per_insert_block", "0");
            let mut written = 0;
            for row in rows {
                insert.write(row.borrow()).await?;
                written += 1;
            }
            insert.end().await?;
            Ok(written)
        })
        .await
}

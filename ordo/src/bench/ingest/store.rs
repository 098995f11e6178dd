//! The run's ClickHouse database: created with Ordo's migrations, watched while the sink
//! fills its `logs` table, measured (parts, compression), written straight with the
//! `clickhouse` crate for the raw limit, and dropped at the end.

use anyhow::Context;
use clickhouse::Row;
use ordo_clickhouse_store::{ClickHouseConfig, LogRow};
use serde::Deserialize;
use std::time::Duration;

/// `OPTIMIZE … FINAL` rewrites the whole table: longer than an ordinary call may take.
const OPTIMIZE_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Store {
    pub config: ClickHouseConfig,
    client: clickhouse::Client,
}

/// The active parts of `logs`.
#[derive(Debug, Clone, Copy, Row, Deserialize)]
pub struct Parts {
    pub parts: u64,
    pub rows: u64,
    /// Column data, compressed and not.
    pub compressed: u64,
    pub uncompressed: u64,
    /// Every file: column data, skip indexes, marks, the primary index.
    pub on_disk: u64,
}

impl Store {
    /// Creates the database and its tables with Ordo's migrations.
    pub async fn create(config: ClickHouseConfig) -> anyhow::Result<Self> {
        ordo_clickhouse_store::migrate(&config)
            .await
            .with_context(|| {
                format!(
                "create the run's ClickHouse database {} at {} (is ClickHouse up? `make services` \
                 starts it)",
                config.database, config.url
            )
            })?;
        let client = config.client();
        Ok(Self { config, client })
    }

    /// Drops the database (called however the run ended).
    pub async fn drop_database(config: &ClickHouseConfig) -> anyhow::Result<()> {
        // Through the server's default database: the dropped one may not be current.
        let server = ClickHouseConfig {
            database: "default".into(),
            ..config.clone()
        };
        let sql = format!("DROP DATABASE IF EXISTS {}", config.database);
        server
            .bounded(
                "drop the run's database",
                server.client().query(&sql).execute(),
            )
            .await?;
        Ok(())
    }

    pub async fn count(&self) -> anyhow::Result<u64> {
        let query = self.client.query("SELECT count() FROM logs");
        Ok(self
            .config
            .bounded("count the lines", query.fetch_one())
            .await?)
    }

    /// Which of the times `nanos` (of lines of tenant `tenant`) are in `logs`. The range
    /// lets the primary key (tenant, service, ts) skip all but the newest granules.
    pub async fn visible(&self, tenant: &str, nanos: &[i64]) -> anyhow::Result<Vec<i64>> {
        let (Some(first), Some(last)) = (nanos.iter().min(), nanos.iter().max()) else {
            return Ok(Vec::new());
        };
        let query = self
            .client
            .query(
                "SELECT toUnixTimestamp64Nano(ts) FROM logs WHERE tenant = ? \
                 AND ts BETWEEN fromUnixTimestamp64Nano(?) AND fromUnixTimestamp64Nano(?) \
                 AND has(?, toUnixTimestamp64Nano(ts))",
            )
            .bind(tenant)
            .bind(first)
            .bind(last)
            .bind(nanos);
        Ok(self
            .config
            .bounded("look up the sampled lines", query.fetch_all())
            .await?)
    }

    pub async fn parts(&self) -> anyhow::Result<Parts> {
        let query = self
            .client
            .query(
                "SELECT count() AS parts, sum(rows) AS rows, \
                 sum(data_compressed_bytes) AS compressed, \
                 sum(data_uncompressed_bytes) AS uncompressed, \
                 sum(bytes_on_disk) AS on_disk FROM system.parts \
                 WHERE database = ? AND table = 'logs' AND active",
            )
            .bind(&self.config.database);
        Ok(self
            .config
            .bounded("read the parts of logs", query.fetch_one())
            .await?)
    }

    /// Empties `logs`.
    pub async fn truncate(&self) -> anyhow::Result<()> {
        let query = self.client.query("TRUNCATE TABLE logs");
        self.config
            .bounded("TRUNCATE TABLE logs", query.execute())
            .await?;
        Ok(())
    }

    /// The `limit` columns of `logs` that take the most bytes on disk, largest first.
    pub async fn largest_columns(&self, limit: usize) -> anyhow::Result<Vec<(String, u64)>> {
        let query = self
            .client
            .query(
                "SELECT name, data_compressed_bytes FROM system.columns \
                 WHERE database = ? AND table = 'logs' \
                 ORDER BY data_compressed_bytes DESC LIMIT ?",
            )
            .bind(&self.config.database)
            .bind(limit as u64);
        Ok(self
            .config
            .bounded("read the columns of logs", query.fetch_all())
            .await?)
    }

    /// Merges every part of `logs` into as few as ClickHouse will: what the table becomes
    /// once background merges are done.
    pub async fn optimize(&self) -> anyhow::Result<()> {
        let config = ClickHouseConfig {
            timeout: OPTIMIZE_TIMEOUT,
            ..self.config.clone()
        };
        let query = config.client().query("OPTIMIZE TABLE logs FINAL");
        config
            .bounded("OPTIMIZE TABLE logs FINAL", query.execute())
            .await?;
        Ok(())
    }

    /// One INSERT of `rows` into `logs`.
    pub async fn insert(&self, rows: &[LogRow]) -> anyhow::Result<()> {
        let insert = async {
            let mut insert = self.client.insert::<LogRow>("logs").await?;
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        self.config.bounded("INSERT INTO logs", insert).await?;
        Ok(())
    }
}

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid ClickHouse setting: {0}")]
    Config(String),
    #[error("ClickHouse at {url} did not answer {what} within {after:?}")]
    Timeout {
        url: String,
        what: String,
        after: Duration,
    },
    #[error("ClickHouse at {url} failed {what}: {source}")]
    Query {
        url: String,
        what: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error(
        "migration {file} was changed after it was applied to ClickHouse database {database} \
         (applied checksum {applied}, file checksum {file_checksum}); applied migrations must \
         not change: restore the file and add a new migration for the change"
    )]
    ChangedMigration {
        database: String,
        file: String,
        applied: String,
        file_checksum: String,
    },
    #[error(
        "ClickHouse database {database} has migration {version} ({name}) applied, which this \
         build does not know: it was migrated by a newer Ordo"
    )]
    UnknownMigration {
        database: String,
        version: u32,
        name: String,
    },
    #[error("invalid migration {file}: {reason}")]
    InvalidMigration { file: String, reason: String },
}

impl StoreError {
    /// A bounded label for metrics: `clickhouse_timeout` (no answer in time),
    /// `clickhouse_unavailable` (no connection), `clickhouse_query` (the server refused or
    /// failed the statement), `clickhouse_schema` (migrations and settings).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "clickhouse_timeout",
            Self::Query {
                source: clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut,
                ..
            } => "clickhouse_unavailable",
            Self::Query { .. } => "clickhouse_query",
            Self::Config(_)
            | Self::ChangedMigration { .. }
            | Self::UnknownMigration { .. }
            | Self::InvalidMigration { .. } => "clickhouse_schema",
        }
    }
}

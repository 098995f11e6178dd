//! The migration runner for `migrations/clickhouse/*.sql`.
//!
//! A file `NNNN_name.sql` is migration NNNN; files apply in order of their number, each
//! once per database, recorded in `{database}.schema_migrations` (version, name, SHA-256 of
//! the file as written, time). A file may hold several statements separated by `;` and uses
//! two placeholders: `${database}` and `${log_retention_days}`. The checksum covers the file,
//! not the substituted text, so another database or retention does not count as a change;
//! a changed applied file does, and is refused. ClickHouse DDL is not transactional: a
//! migration that fails half-way is not recorded and runs whole next time, so every
//! statement must be safe to repeat (`IF NOT EXISTS`).
//!
//! After the migrations, the log retention is reconciled: if the TTL of `logs` (or of the
//! registry's `service_hourly`, kept as long) keeps another number of days than configured,
//! `ALTER TABLE … MODIFY TTL` sets it (see the `logs` migration for why that is cheap).

use crate::{ClickHouseConfig, StoreError};
use clickhouse::Row;
use serde::Deserialize;
use sha2::{Digest, Sha256};

const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// One migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    /// The file name without `.sql`, e.g. `0001_logs`.
    pub name: String,
    pub sql: String,
    /// SHA-256 of `sql`, lower-case hex.
    pub checksum: String,
}

impl Migration {
    /// `file` is `NNNN_name.sql`.
    pub fn new(file: &str, sql: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidMigration {
            file: file.into(),
            reason: reason.into(),
        };
        let name = file
            .strip_suffix(".sql")
            .ok_or_else(|| invalid("not a .sql file"))?;
        let version = name
            .split_once('_')
            .and_then(|(number, _)| number.parse().ok())
            .ok_or_else(|| invalid("the name must be NNNN_name.sql"))?;
        Ok(Self {
            version,
            name: name.into(),
            sql: sql.into(),
            checksum: hex(&Sha256::digest(sql.as_bytes())),
        })
    }

    /// The statements with the placeholders substituted and comments removed.
    fn statements(&self, config: &ClickHouseConfig) -> Result<Vec<String>, StoreError> {
        let sql = self.sql.replace("${database}", &config.database).replace(
            "${log_retention_days}",
            &config.log_retention_days.to_string(),
        );
        let statements = split_statements(&sql);
        if statements.iter().any(|s| s.contains("${")) {
            return Err(StoreError::InvalidMigration {
                file: format!("{}.sql", self.name),
                reason: "unknown placeholder (known: ${database}, ${log_retention_days})".into(),
            });
        }
        Ok(statements)
    }
}

/// What a migration run did.
#[derive(Debug, Default)]
pub struct MigrationReport {
    /// The migrations applied by this run, in order.
    pub applied: Vec<String>,
    /// `Some((from, to))` when the log retention was changed.
    pub retention_changed: Option<(u32, u32)>,
}

/// A migration as recorded in `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    pub checksum: String,
}

/// Applies migrations to the database of a [`ClickHouseConfig`].
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

impl Migrator {
    /// The migrations of `migrations/clickhouse`, embedded at build time.
    pub fn embedded() -> Self {
        let migrations = EMBEDDED
            .iter()
            .map(|(file, sql)| Migration::new(file, sql))
            .collect::<Result<_, _>>()
            .expect("migrations/clickhouse holds NNNN_name.sql files (checked by the tests)");
        Self::new(migrations)
    }

    /// These migrations, in order of version.
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(|m| m.version);
        Self { migrations }
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Creates the database if needed, applies what is not applied yet, checks what is, and
    /// sets the log retention.
    pub async fn run(&self, config: &ClickHouseConfig) -> Result<MigrationReport, StoreError> {
        config.validate()?;
        let db = &config.database;
        let server = config.server_client();
        config
            .bounded(
                "CREATE DATABASE",
                server
                    .query_raw(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
                    .execute(),
            )
            .await?;
        config
            .bounded(
                "CREATE TABLE schema_migrations",
                server
                    .query_raw(&format!(
                        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (\
                         version UInt32, name String, checksum String, \
                         applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
                         ENGINE = MergeTree ORDER BY version"
                    ))
                    .execute(),
            )
            .await?;
        let applied = self.applied(config).await?;
        for record in &applied {
            let Some(migration) = self.migrations.iter().find(|m| m.version == record.version)
            else {
                return Err(StoreError::UnknownMigration {
                    database: db.clone(),
                    version: record.version,
                    name: record.name.clone(),
                });
            };
            if migration.checksum != record.checksum {
                return Err(StoreError::ChangedMigration {
                    database: db.clone(),
                    file: format!("{}.sql", migration.name),
                    applied: record.checksum.clone(),
                    file_checksum: migration.checksum.clone(),
                });
            }
        }
        let mut report = MigrationReport::default();
        for migration in &self.migrations {
            if applied.iter().any(|a| a.version == migration.version) {
                continue;
            }
            for statement in migration.statements(config)? {
                config
                    .bounded(
                        &format!("migration {}", migration.name),
                        server.query_raw(&statement).execute(),
                    )
                    .await?;
            }
            config
                .bounded(
                    "INSERT INTO schema_migrations",
                    server
                        .query(&format!(
                            "INSERT INTO {db}.schema_migrations (version, name, checksum) \
                             VALUES (?, ?, ?)"
                        ))
                        .bind(migration.version)
                        .bind(&migration.name)
                        .bind(&migration.checksum)
                        .execute(),
                )
                .await?;
            tracing::info!(database = %db, migration = %migration.name, "ClickHouse migration applied");
            report.applied.push(migration.name.clone());
        }
        report.retention_changed = apply_log_retention(config).await?;
        Ok(report)
    }

    /// The migrations recorded in the database, by version (the first record of each).
    pub async fn applied(
        &self,
        config: &ClickHouseConfig,
    ) -> Result<Vec<AppliedMigration>, StoreError> {
        let db = &config.database;
        config
            .bounded(
                "SELECT FROM schema_migrations",
                config
                    .server_client()
                    .query_raw(&format!(
                        "SELECT version, argMin(name, applied_at) AS name, \
                         argMin(checksum, applied_at) AS checksum \
                         FROM {db}.schema_migrations GROUP BY version ORDER BY version"
                    ))
                    .fetch_all::<AppliedMigration>(),
            )
            .await
    }
}

/// Applies the embedded migrations (`ordo migrate`, `ordo dev`).
pub async fn migrate(config: &ClickHouseConfig) -> Result<MigrationReport, StoreError> {
    Migrator::embedded().run(config).await
}

/// The tables kept for the log retention, and the column their TTL counts from.
const RETAINED: [(&str, &str); 2] = [("logs", "toDateTime(ts)"), ("service_hourly", "hour")];

/// Sets the TTL of the [`RETAINED`] tables to the configured retention where it keeps
/// another number of days. Returns the change made to `logs`, if any.
async fn apply_log_retention(config: &ClickHouseConfig) -> Result<Option<(u32, u32)>, StoreError> {
    let mut logs_changed = None;
    for (table, column) in RETAINED {
        let changed = apply_retention(config, table, column).await?;
        if table == "logs" {
            logs_changed = changed;
        }
    }
    Ok(logs_changed)
}

/// Sets `table`'s TTL (`column` + the retention) if it keeps another number of days.
async fn apply_retention(
    config: &ClickHouseConfig,
    table: &str,
    column: &str,
) -> Result<Option<(u32, u32)>, StoreError> {
    let db = &config.database;
    let create = config
        .bounded(
            &format!("SELECT the {table} TTL"),
            config
                .server_client()
                .query(
                    "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?",
                )
                .bind(db)
                .bind(table)
                .fetch_optional::<String>(),
        )
        .await?;
    let Some(current) = create.as_deref().and_then(retention_days) else {
        return Ok(None);
    };
    let wanted = config.log_retention_days;
    if current == wanted {
        return Ok(None);
    }
    config
        .bounded(
            &format!("ALTER TABLE {table} MODIFY TTL"),
            config
                .server_client()
                .query_raw(&format!(
                    "ALTER TABLE {db}.{table} MODIFY TTL {column} + toIntervalDay({wanted})"
                ))
                .execute(),
        )
        .await?;
    tracing::info!(database = %db, table, from = current, to = wanted, "log retention changed");
    Ok(Some((current, wanted)))
}

/// The days of `toIntervalDay(N)` in a table's TTL clause.
fn retention_days(create_table_query: &str) -> Option<u32> {
    let ttl = &create_table_query[create_table_query.find(" TTL ")?..];
    let days = &ttl[ttl.find("toIntervalDay(")? + "toIntervalDay(".len()..];
    days[..days.find(')')?].trim().parse().ok()
}

/// Splits SQL at `;` outside quotes and comments, dropping comments and empty statements.
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                current.push(' ');
            }
            '\'' | '"' | '`' => {
                current.push(c);
                while let Some(inner) = chars.next() {
                    current.push(inner);
                    if inner == '\\' {
                        if let Some(escaped) = chars.next() {
                            current.push(escaped);
                        }
                    } else if inner == c {
                        break;
                    }
                }
            }
            ';' => statements.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_numbered_in_order() {
        let migrator = Migrator::embedded();
        let versions: Vec<u32> = migrator.migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
        let config = ClickHouseConfig::new("http://h");
        for migration in migrator.migrations() {
            assert!(!migration.statements(&config).unwrap().is_empty());
        }
    }

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "-- a comment; with 'quote\nCREATE TABLE t (a String DEFAULT ';') /* x; */;\n\
                   SELECT `a;b`, 'it\\'s; fine';\n-- trailing\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE t (a String DEFAULT ';')".to_owned(),
                "SELECT `a;b`, 'it\\'s; fine'".to_owned()
            ]
        );
    }

    #[test]
    fn placeholders_are_substituted_and_unknown_ones_refused() {
        let config = ClickHouseConfig {
            database: "scratch".into(),
            log_retention_days: 3,
            ..ClickHouseConfig::new("http://h")
        };
        let migration = Migration::new(
            "0007_x.sql",
            "CREATE TABLE ${database}.t TTL d + toIntervalDay(${log_retention_days})",
        )
        .unwrap();
        assert_eq!(migration.version, 7);
        assert_eq!(
            migration.statements(&config).unwrap(),
            vec!["CREATE TABLE scratch.t TTL d + toIntervalDay(3)"]
        );
        let unknown = Migration::new("0008_y.sql", "SELECT ${nope}").unwrap();
        assert!(unknown.statements(&config).is_err());
        assert!(Migration::new("x.sql", "").is_err());
    }

    #[test]
    fn retention_is_read_from_the_ttl_clause() {
        let create = "CREATE TABLE d.logs (`ts` DateTime64(9)) ENGINE = MergeTree \
                      ORDER BY ts TTL toDateTime(ts) + toIntervalDay(14) SETTINGS x = 1";
        assert_eq!(retention_days(create), Some(14));
        assert_eq!(retention_days("CREATE TABLE d.logs (a UInt8)"), None);
    }
}

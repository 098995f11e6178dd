//! PostgreSQL connection set-up. Every query is bounded twice: by the pool's acquire timeout
//! and by a server-side `statement_timeout`, so a stuck database surfaces as an error.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The numbered migrations of `migrations/postgres`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 32,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens a pool lazily: the first query connects, so a service starts (and reports not ready)
/// while PostgreSQL is still coming up.
pub fn connect(config: &DbConfig) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(&config.url)?.options([(
        "statement_timeout",
        config.statement_timeout.as_millis().to_string(),
    )]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options))
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates (or re-creates, empty) the database `name` on the server of `url`, runs the
/// migrations in it and returns its URL. Tests and benchmarks use one per run so runs never
/// see each other's rows.
pub async fn scratch_database(url: &str, name: &str) -> Result<String, sqlx::Error> {
    drop_database(url, name).await?;
    let admin = connect(&DbConfig::new(with_database(url, "postgres")))?;
    sqlx::query(&format!("CREATE DATABASE {}", quote_ident(name)))
        .execute(&admin)
        .await?;
    admin.close().await;
    let scratch = with_database(url, name);
    let pool = connect(&DbConfig::new(scratch.clone()))?;
    migrate(&pool).await?;
    pool.close().await;
    Ok(scratch)
}

/// Drops the database `name` on the server of `url`, closing its connections first and
/// dropping its logical replication slots, which would otherwise block the drop.
pub async fn drop_database(url: &str, name: &str) -> Result<(), sqlx::Error> {
    let admin = connect(&DbConfig::new(with_database(url, "postgres")))?;
    sqlx::query(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
         WHERE database = $1 AND active_pid IS NOT NULL",
    )
    .bind(name)
    .execute(&admin)
    .await?;
    // A terminated walsender releases its slot a moment later; retry until it is free.
    for attempt in 0..50 {
        let dropped = sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE database = $1",
        )
        .bind(name)
        .execute(&admin)
        .await;
        match dropped {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && attempt < 49 =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                other?;
                break;
            }
        }
    }
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}

/// A PostgreSQL identifier in double quotes, safe for DDL that cannot take bind parameters.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database of `url` if it does not exist yet (the local stack's first start).
pub async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = connect(&DbConfig::new(with_database(url, "postgres")))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .execute(&admin)
            .await?;
    }
    admin.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/ordo", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/ordo?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

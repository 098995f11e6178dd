use crate::StoreError;
use std::future::Future;
use std::time::Duration;

/// Where the ClickHouse read models live and how long any call to it may take.
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// The HTTP interface, `http(s)://host:port` (8123 / 8443 on a server).
    pub url: String,
    pub user: String,
    pub password: Option<String>,
    /// Database of Ordo's tables; created by the migrations if missing.
    pub database: String,
    /// Bound of every call: the client gives up after it, and the server stops the query
    /// (`max_execution_time`).
    pub timeout: Duration,
    /// Days a log line is kept (the `logs` TTL).
    pub log_retention_days: u32,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .field("log_retention_days", &self.log_retention_days)
            .finish()
    }
}

pub const DEFAULT_URL: &str = "http://127.0.0.1:8123";
pub const DEFAULT_DATABASE: &str = "ordo";
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 14;

impl ClickHouseConfig {
    /// `url` with the defaults: user `default` without password, database `ordo`, 10 s per
    /// call, 14 days of logs.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: "default".into(),
            password: None,
            database: DEFAULT_DATABASE.into(),
            timeout: Duration::from_secs(10),
            log_retention_days: DEFAULT_LOG_RETENTION_DAYS,
        }
    }

    /// Checks what would otherwise fail later, or be substituted into DDL unchecked.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason: String| Err(StoreError::Config(reason));
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad(format!(
                "ORDO_CLICKHOUSE_URL must be the http(s) URL of the HTTP interface, got {:?}",
                self.url
            ));
        }
        if !is_identifier(&self.database) {
            return bad(format!(
                "ORDO_CLICKHOUSE_DATABASE must be letters, digits and _ (not first a digit), got {:?}",
                self.database
            ));
        }
        if !(1..=36_500).contains(&self.log_retention_days) {
            return bad(format!(
                "ORDO_LOG_RETENTION_DAYS must be 1 to 36500, got {}",
                self.log_retention_days
            ));
        }
        if self.timeout < Duration::from_millis(1) {
            return bad("the ClickHouse timeout must be at least 1 ms".into());
        }
        Ok(())
    }

    /// A client of the configured database.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// A client of the server, without a database (to create it).
    pub(crate) fn server_client(&self) -> clickhouse::Client {
        let client = clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            // Whole seconds, at least one: the server stops a query the client gave up on.
            .with_setting(
                "max_execution_time",
                self.timeout.as_secs().max(1).to_string(),
            );
        match &self.password {
            Some(password) => client.with_password(password),
            None => client,
        }
    }

    /// Runs `call` within the timeout; `what` names it in errors.
    pub async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(StoreError::Query {
                url: self.url.clone(),
                what: what.into(),
                source,
            }),
            Err(_) => Err(StoreError::Timeout {
                url: self.url.clone(),
                what: what.into(),
                after: self.timeout,
            }),
        }
    }
}

/// A name that needs no quoting in ClickHouse SQL.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_would_break_the_ddl() {
        assert!(ClickHouseConfig::new("http://h:8123").validate().is_ok());
        let mut config = ClickHouseConfig::new("h:8123");
        assert!(config.validate().is_err());
        config.url = "https://h:8443".into();
        config.database = "ordo; DROP".into();
        assert!(config.validate().is_err());
        config.database = "ordo_2".into();
        config.log_retention_days = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = ClickHouseConfig {
            password: Some("secret".into()),
            ..ClickHouseConfig::new(DEFAULT_URL)
        };
        assert!(!format!("{config:?}").contains("secret"));
    }
}

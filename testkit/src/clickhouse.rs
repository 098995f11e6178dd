//! A ClickHouse database per test, on the local stack's ClickHouse (`ORDO_CLICKHOUSE_URL`)
//! or a private one, dropped with the value.

use crate::stack::{clickhouse_url, unique};
use std::time::Duration;

/// A database name no other run uses; the database itself is created by the migrations
/// (or the test).
pub struct TestClickHouse {
    pub url: String,
    pub database: String,
}

impl TestClickHouse {
    /// On the local stack's ClickHouse.
    pub fn new() -> Self {
        Self::on(&clickhouse_url())
    }

    /// On the ClickHouse at `url`.
    pub fn on(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            database: unique("ordo_test_"),
        }
    }
}

impl Default for TestClickHouse {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        // Async clean-up cannot run in Drop; a short-lived thread with its own runtime can.
        let (url, sql) = (
            self.url.clone(),
            format!("DROP DATABASE IF EXISTS {}", self.database),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                reqwest::Client::new()
                    .post(&url)
                    .timeout(Duration::from_secs(30))
                    .body(sql)
                    .send()
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
    }
}

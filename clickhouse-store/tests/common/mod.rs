//! A ClickHouse database per test on the local stack's ClickHouse (`make services`),
//! dropped with the value.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use ordo_clickhouse_store::ClickHouseConfig;
use ordo_testkit::stack::{clickhouse_url, unique};
use std::time::Duration;

pub struct TestDatabase {
    pub config: ClickHouseConfig,
}

impl TestDatabase {
    /// A name no other run uses; the database itself is created by the migrations or
    /// [`TestDatabase::created`].
    pub fn new() -> Self {
        Self {
            config: ClickHouseConfig {
                database: unique("ordo_test_"),
                timeout: Duration::from_secs(30),
                ..ClickHouseConfig::new(clickhouse_url())
            },
        }
    }

    pub async fn created() -> Self {
        let db = Self::new();
        db.server()
            .query_raw(&format!("CREATE DATABASE {}", db.config.database))
            .execute()
            .await
            .expect("ClickHouse of the local stack answers (run `make services`)");
        db
    }

    pub fn client(&self) -> clickhouse::Client {
        self.config.client()
    }

    fn server(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(&self.config.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Async clean-up cannot run in Drop; a short-lived thread with its own runtime can.
        let server = self.server();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.config.database);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(server.query_raw(&sql).execute())
                .map_err(std::io::Error::other)
        })
        .join();
    }
}

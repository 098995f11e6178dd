//! A ClickHouse database per test on the local stack's ClickHouse (`make services`),
//! dropped with the value.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use ordo_clickhouse_store::ClickHouseConfig;
use ordo_testkit::TestClickHouse;
use std::time::Duration;

pub struct TestDatabase {
    pub config: ClickHouseConfig,
    _database: TestClickHouse,
}

impl TestDatabase {
    /// A name no other run uses; the database itself is created by the migrations or
    /// [`TestDatabase::created`].
    pub fn new() -> Self {
        let database = TestClickHouse::new();
        Self {
            config: ClickHouseConfig {
                database: database.database.clone(),
                timeout: Duration::from_secs(30),
                ..ClickHouseConfig::new(&database.url)
            },
            _database: database,
        }
    }

    pub async fn created() -> Self {
        let db = Self::new();
        clickhouse::Client::default()
            .with_url(&db.config.url)
            .query_raw(&format!("CREATE DATABASE {}", db.config.database))
            .execute()
            .await
            .expect("ClickHouse of the local stack answers (run `make services`)");
        db
    }

    pub fn client(&self) -> clickhouse::Client {
        self.config.client()
    }
}

use crate::stack::database_url;
use ordo_common::db::{self, DbConfig};
use sqlx::PgPool;

/// A migrated database that only this test uses; dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
        let url = db::scratch_database(&database_url(), &name)
            .await
            .expect("PostgreSQL of the local stack is reachable (run `make services`)");
        let pool = db::connect(&DbConfig::new(url.clone())).expect("valid url");
        Self { name, url, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Async clean-up cannot run in Drop; a short-lived thread with its own runtime can.
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(db::drop_database(&url, &name))
                .map_err(std::io::Error::other)
        })
        .join();
    }
}

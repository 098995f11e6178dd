//! Test support shared by the integration tests of every crate (feature `test-support`): a
//! Redis key prefix per test on the real Redis of `ORDO_REDIS_URL`.

use crate::redis_views;
use redis::aio::ConnectionManager;

pub fn redis_url() -> String {
    std::env::var("ORDO_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix only this test uses, with a connection; on drop every key starting with the
/// prefix is deleted (its namespaces `{prefix}` and `{prefix}.*` and the pointer).
pub struct TestPrefix {
    pub prefix: String,
    pub redis: ConnectionManager,
}

impl TestPrefix {
    pub async fn new() -> Self {
        let redis = redis_views::connect(&redis_url())
            .await
            .expect("Redis of the local stack is reachable (run `make services`)");
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("ordo-test-{}", &id[..16]),
            redis,
        }
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        // Async clean-up cannot run in Drop; a short-lived thread with its own connection can.
        let pattern = format!("{}*", self.prefix);
        let _ = std::thread::spawn(move || {
            let mut c = redis::Client::open(redis_url())?.get_connection()?;
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1_000)
                    .query(&mut c)?;
                if !keys.is_empty() {
                    redis::cmd("UNLINK").arg(keys).query::<()>(&mut c)?;
                }
                if next == 0 {
                    return Ok::<_, redis::RedisError>(());
                }
                cursor = next;
            }
        })
        .join();
    }
}

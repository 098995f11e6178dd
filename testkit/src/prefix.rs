use crate::stack::redis_url;
use redis::aio::ConnectionManager;

/// A key prefix only this test uses, with a connection; on drop every key starting with the
/// prefix is deleted (its namespaces `{prefix}` and `{prefix}.*` and the pointer).
pub struct TestPrefix {
    pub prefix: String,
    pub redis: ConnectionManager,
}

impl TestPrefix {
    pub async fn new() -> Self {
        let redis = connect().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("ordo-test-{}", &id[..16]),
            redis,
        }
    }

    /// A client of the same Redis (for subscriptions).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(redis_url()).expect("valid Redis url")
    }
}

/// A connection to the local stack's Redis.
async fn connect() -> ConnectionManager {
    let client = redis::Client::open(redis_url()).expect("valid Redis url");
    ConnectionManager::new(client)
        .await
        .expect("Redis of the local stack is reachable (run `make services`)")
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

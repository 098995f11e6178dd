use crate::stack::redis_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

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

/// A connection to the local stack's Redis; calls fail after 5 s instead of hanging a test
/// when Redis is down.
async fn connect() -> ConnectionManager {
    let client = redis::Client::open(redis_url()).expect("valid Redis url");
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(5))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, config)
        .await
        .expect("Redis of the local stack is reachable (run `make services`)")
}

impl TestPrefix {
    /// Deletes every key of the deployment (its namespaces, pointer and locks), as a Redis
    /// restarted without persistence or `FLUSHDB` would, leaving other tests' keys alone.
    pub fn flush(&self) {
        delete_keys(format!("{}*", self.prefix));
    }
}

/// Deletes the keys matching `pattern` (SCAN + UNLINK) from a short-lived thread with its own
/// connection, so it also works where async code cannot run (in `Drop`).
fn delete_keys(pattern: String) {
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

impl Drop for TestPrefix {
    fn drop(&mut self) {
        self.flush();
    }
}

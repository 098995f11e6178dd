//! Which namespace of the read model is live. Readers and the projector resolve it from the
//! pointer key (see [`crate::keys`]) so that a blue/green replay can switch everyone with one
//! `SET`.

use crate::keys;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult};

/// The live namespace under `prefix`: the pointer's value, or the prefix itself when no
/// replay has switched it yet.
pub async fn active(connection: &mut ConnectionManager, prefix: &str) -> RedisResult<String> {
    let pointer: Option<String> = connection.get(keys::active_pointer(prefix)).await?;
    Ok(pointer.unwrap_or_else(|| prefix.to_owned()))
}

/// Makes `namespace` the live one; returns the namespace that was live before.
pub async fn switch(
    connection: &mut ConnectionManager,
    prefix: &str,
    namespace: &str,
) -> RedisResult<String> {
    let previous: Option<String> = redis::cmd("SET")
        .arg(keys::active_pointer(prefix))
        .arg(namespace)
        .arg("GET")
        .query_async(connection)
        .await?;
    Ok(previous.unwrap_or_else(|| prefix.to_owned()))
}

/// Deletes every key of `namespace` (SCAN + UNLINK in batches, so Redis is never blocked),
/// except a pointer key of the same name; returns how many were deleted. The caller makes
/// sure it is not the live namespace.
pub async fn delete(connection: &mut ConnectionManager, namespace: &str) -> RedisResult<u64> {
    let pointer = keys::active_pointer(namespace);
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(connection)
            .await?;
        let batch: Vec<String> = batch.into_iter().filter(|k| *k != pointer).collect();
        if !batch.is_empty() {
            deleted += connection.unlink::<_, u64>(&batch).await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

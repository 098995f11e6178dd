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

/// The keys of a namespace, in SCAN batches of about `count` (so Redis is never blocked),
/// leaving out a pointer key of the same name.
pub(crate) struct KeyScan {
    pattern: String,
    pointer: String,
    count: usize,
    /// `None` once SCAN has gone round.
    cursor: Option<u64>,
}

impl KeyScan {
    pub(crate) fn new(namespace: &str, count: usize) -> Self {
        Self {
            pattern: format!("{}:*", escape_glob(namespace)),
            pointer: keys::active_pointer(namespace),
            count,
            cursor: Some(0),
        }
    }

    /// The next batch (possibly empty), or `None` when every key was seen.
    pub(crate) async fn next(
        &mut self,
        connection: &mut ConnectionManager,
    ) -> RedisResult<Option<Vec<String>>> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.count)
            .query_async(connection)
            .await?;
        self.cursor = (next != 0).then_some(next);
        Ok(Some(
            batch.into_iter().filter(|k| *k != self.pointer).collect(),
        ))
    }
}

/// `namespace` escaped for a SCAN MATCH pattern.
pub(crate) fn escape_glob(namespace: &str) -> String {
    let mut escaped = String::with_capacity(namespace.len());
    for c in namespace.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whether `namespace` has any key (its pointer aside).
pub async fn has_keys(connection: &mut ConnectionManager, namespace: &str) -> RedisResult<bool> {
    let mut scan = KeyScan::new(namespace, 10_000);
    while let Some(batch) = scan.next(connection).await? {
        if !batch.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes every key of `namespace` (UNLINK in SCAN batches), except a pointer key of the
/// same name; returns how many were deleted. The caller makes sure it is not the live
/// namespace.
pub async fn delete(connection: &mut ConnectionManager, namespace: &str) -> RedisResult<u64> {
    let mut scan = KeyScan::new(namespace, 1_000);
    let mut deleted = 0;
    while let Some(batch) = scan.next(connection).await? {
        if !batch.is_empty() {
            deleted += connection.unlink::<_, u64>(&batch).await?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(escape_glob("a*b[1]"), "a\\*b\\[1\\]");
    }
}

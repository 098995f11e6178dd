//! Which namespace of the read model is live, and whether it is complete. Readers and the
//! projector resolve it from the pointer key (see [`crate::keys`]) so that a blue/green replay
//! can switch everyone with one `SET`; the namespace's marker says it holds everything the
//! event store held when it was built (see [`mark`]).

use crate::keys;
use chrono::{SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script};
use std::sync::LazyLock;

static LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/live.lua")));

/// The state of the live namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Marked complete: claims and repairs may trust it.
    Complete,
    /// No marker and no rebuild running: lost (Redis came back empty) or never built.
    Lost,
    /// No marker, and a rebuild holds the rebuild lock.
    Rebuilding,
}

/// The live namespace and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub namespace: String,
    pub state: ModelState,
}

/// The live namespace under `prefix` and its state, in one round trip.
pub async fn live(connection: &mut ConnectionManager, prefix: &str) -> RedisResult<Live> {
    let (namespace, marked, rebuilding): (String, bool, bool) = LIVE
        .arg(prefix)
        .arg(keys::REBUILD_LOCK)
        .invoke_async(connection)
        .await?;
    let state = match (marked, rebuilding) {
        (true, _) => ModelState::Complete,
        (false, true) => ModelState::Rebuilding,
        (false, false) => ModelState::Lost,
    };
    Ok(Live { namespace, state })
}

/// Marks `namespace` complete: it holds every event the store had (`events` of them) when
/// its build ended. `epoch` numbers the builds of a deployment (the rebuild lock's fencing
/// token).
pub async fn mark(
    connection: &mut ConnectionManager,
    namespace: &str,
    epoch: u64,
    events: u64,
) -> RedisResult<()> {
    let rebuilt_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    redis::cmd("HSET")
        .arg(keys::marker(namespace))
        .arg("epoch")
        .arg(epoch)
        .arg("rebuilt_at")
        .arg(rebuilt_at)
        .arg("events")
        .arg(events)
        .query_async(connection)
        .await
}

/// Removes the marker of `namespace`, which makes the projector role rebuild it (used when the
/// model is known to miss records: the broker lost some before they were applied).
pub async fn unmark(connection: &mut ConnectionManager, namespace: &str) -> RedisResult<()> {
    connection.del(keys::marker(namespace)).await
}

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
/// leaving out the deployment's keys a namespace named like the prefix shares its key space
/// with (the pointer, the locks).
pub(crate) struct KeyScan {
    namespace: String,
    pattern: String,
    count: usize,
    /// `None` once SCAN has gone round.
    cursor: Option<u64>,
}

impl KeyScan {
    pub(crate) fn new(namespace: &str, count: usize) -> Self {
        Self {
            namespace: namespace.to_owned(),
            pattern: format!("{}:*", escape_glob(namespace)),
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
            batch
                .into_iter()
                .filter(|key| !keys::is_deployment_key(&self.namespace, key))
                .collect(),
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

/// Whether `namespace` has any key (the deployment's aside).
pub async fn has_keys(connection: &mut ConnectionManager, namespace: &str) -> RedisResult<bool> {
    let mut scan = KeyScan::new(namespace, 10_000);
    while let Some(batch) = scan.next(connection).await? {
        if !batch.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes every key of `namespace` (UNLINK in SCAN batches), except the deployment's keys
/// of the same name; returns how many were deleted. The caller makes sure it is not the live
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

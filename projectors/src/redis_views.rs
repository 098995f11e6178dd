//! The Redis job-view and dispatch read model. Each update is one call of `lua/apply.lua`,
//! which checks the job's sequence, so duplicates and redeliveries change nothing; a batch of
//! updates goes to Redis as one pipeline.

use crate::keys;
use crate::view::ViewUpdate;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use std::time::Duration;

/// A self-reconnecting connection to the read model's Redis, with every call bounded: a
/// stalled Redis fails a call after 5 s instead of hanging a projector or a request.
pub async fn connect(url: &str) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(5))
        .set_number_of_retries(3)
        .set_max_delay(2_000);
    ConnectionManager::new_with_config(redis::Client::open(url)?, config).await
}

/// What the script did with one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already applied (sequence ≤ the view's).
    Duplicate,
    /// An earlier event of the job is missing; the view stays at `last`.
    Gap {
        last: u64,
    },
}

#[derive(Clone)]
pub struct RedisViews {
    connection: ConnectionManager,
    namespace: String,
    script: Script,
    /// Where jobs put in a ready set are announced ('' = nowhere).
    wake_channel: String,
}

impl RedisViews {
    pub fn new(connection: ConnectionManager, namespace: &str) -> Self {
        Self {
            connection,
            namespace: namespace.to_owned(),
            script: Script::new(include_str!("lua/apply.lua")),
            wake_channel: String::new(),
        }
    }

    /// Announces every job put in a ready set to the claims of the deployment under `prefix`
    /// waiting for one (see [`crate::dispatch::ReadyWakeups`]). The live projector does; a
    /// replay, which fills a namespace nobody claims from yet, does not.
    pub fn waking_claims(self, prefix: &str) -> Self {
        Self {
            wake_channel: keys::wake_channel(prefix),
            ..self
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Writes into `namespace` from now on (after a blue/green switch).
    pub fn set_namespace(&mut self, namespace: String) {
        self.namespace = namespace;
    }

    /// Applies `updates` in order, in one round trip.
    pub async fn apply(&mut self, updates: &[ViewUpdate]) -> RedisResult<Vec<Outcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        match self.pipeline(updates).await {
            // A restarted Redis forgets loaded scripts: load it again, once.
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                self.script
                    .prepare_invoke()
                    .load_async(&mut self.connection)
                    .await?;
                self.pipeline(updates).await
            }
            other => other,
        }
    }

    async fn pipeline(&mut self, updates: &[ViewUpdate]) -> RedisResult<Vec<Outcome>> {
        let mut pipe = redis::pipe();
        for update in updates {
            let (kind, ms) = update.dispatch.wire();
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(0)
                .arg(&self.namespace)
                .arg(&update.tenant)
                .arg(&update.job_id)
                .arg(update.sequence)
                .arg(update.at_ms)
                .arg(update.status.map(|s| s.as_str()).unwrap_or(""))
                .arg(kind)
                .arg(ms)
                .arg(&self.wake_channel)
                .arg(update.set.len());
            for (field, value) in &update.set {
                cmd.arg(*field).arg(value);
            }
            cmd.arg(update.clear.len());
            for field in &update.clear {
                cmd.arg(*field);
            }
            cmd.arg(update.labels.len());
            for label in &update.labels {
                cmd.arg(label);
            }
        }
        let replies: Vec<(i64, u64)> = pipe.query_async(&mut self.connection).await?;
        Ok(replies
            .into_iter()
            .map(|(code, last)| match code {
                1 => Outcome::Applied,
                0 => Outcome::Duplicate,
                _ => Outcome::Gap { last },
            })
            .collect())
    }
}

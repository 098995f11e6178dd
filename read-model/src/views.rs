//! Writing job views: each [`ViewUpdate`] is one call of `lua/apply.lua`, which checks the
//! job's sequence, so duplicates and redeliveries change nothing, and moves the job between
//! the dispatch sets; a batch of updates goes to Redis as one pipeline. `lua/forget.lua`
//! removes jobs again, so a repair can re-apply their history from sequence 1.

use crate::keys;
use crate::view::ViewUpdate;
use ordo_domain::JobStatus;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Pipeline, RedisResult, Script};
use std::sync::LazyLock;

// Hashed once per process and shared by every handle.
static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(scored_script!("lua/apply.lua")));
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/forget.lua")));

/// What the script did with one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// Already applied (sequence ≤ the view's).
    Duplicate,
    /// An earlier event of the job is missing; the view stays at `last`.
    Gap {
        last: u64,
    },
}

/// The job views (and dispatch sets) of one namespace (cheap to clone).
#[derive(Clone)]
pub struct JobViews {
    connection: ConnectionManager,
    namespace: String,
    /// Where jobs put in a ready set are announced ('' = nowhere).
    wake_channel: String,
}

impl JobViews {
    pub fn new(connection: ConnectionManager, namespace: &str) -> Self {
        Self {
            connection,
            namespace: namespace.to_owned(),
            wake_channel: String::new(),
        }
    }

    /// Announces every job put in a ready set to the claims of the deployment under `prefix`
    /// waiting for one (see [`crate::wakeups::ReadyWakeups`]). The live projector does; a
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

    /// The last event applied to the view of `job_id` (0 without a view).
    pub async fn sequence(&mut self, job_id: &str) -> RedisResult<u64> {
        let sequence: Option<u64> = self
            .connection
            .hget(keys::job(&self.namespace, job_id), "sequence")
            .await?;
        Ok(sequence.unwrap_or(0))
    }

    /// Applies `updates` in order, in one round trip.
    pub async fn apply(&mut self, updates: &[ViewUpdate]) -> RedisResult<Vec<ApplyOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for update in updates {
            let (kind, ms) = update.placement.wire();
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(APPLY.get_hash())
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
        let replies: Vec<(i64, u64)> = query_scripted(&mut self.connection, &APPLY, &pipe).await?;
        Ok(replies
            .into_iter()
            .map(|(code, last)| match code {
                1 => ApplyOutcome::Applied,
                0 => ApplyOutcome::Duplicate,
                _ => ApplyOutcome::Gap { last },
            })
            .collect())
    }

    /// Removes from the model every job whose first event is among `updates` (its hash, its
    /// index and dispatch entries, its share of the counters), in one round trip, so that
    /// applying `updates` afterwards rebuilds those jobs from scratch.
    pub async fn forget(&mut self, updates: &[ViewUpdate]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        for update in updates.iter().filter(|u| u.sequence == 1) {
            let field = |name: &str| {
                update
                    .set
                    .iter()
                    .find(|(f, _)| *f == name)
                    .map_or("", |(_, v)| v.as_str())
            };
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(FORGET.get_hash())
                .arg(0)
                .arg(&self.namespace)
                .arg(&update.job_id)
                .arg(&update.tenant)
                .arg(field("type"))
                .arg(field("queue"))
                .arg(JobStatus::ALL.len());
            for status in JobStatus::ALL {
                cmd.arg(status.as_str());
            }
            cmd.arg(update.labels.len()).arg(&update.labels).ignore();
        }
        if pipe.cmd_iter().next().is_none() {
            return Ok(());
        }
        query_scripted(&mut self.connection, &FORGET, &pipe).await
    }
}

/// Runs a pipeline of EVALSHA calls of `script`. A restarted Redis forgets loaded scripts:
/// on NOSCRIPT the script is loaded and the pipeline sent again, once (the script refused the
/// whole pipeline, so nothing of it ran).
async fn query_scripted<T: redis::FromRedisValue>(
    connection: &mut ConnectionManager,
    script: &Script,
    pipe: &Pipeline,
) -> RedisResult<T> {
    match pipe.query_async(connection).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            script.prepare_invoke().load_async(connection).await?;
            pipe.query_async(connection).await
        }
        other => other,
    }
}

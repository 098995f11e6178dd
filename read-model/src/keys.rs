//! The Redis key layout of the read model, shared by the projector that writes it and the
//! query API that reads it. Every key starts with a namespace, so a replay can build a
//! complete second copy beside the live one and readers switch over at once.
//!
//! Names may contain `:` (types, queues) but never `/`, which therefore separates the type
//! from the status in counter fields; tenants cannot contain `:`, so a tenant can never name
//! another tenant's keys.
//!
//! A deployment has a key *prefix* (`ordo` by default; tests use one per run). The key
//! `{prefix}:active` names the live namespace; while it is unset the live namespace is the
//! prefix itself. `ordo replay --into NS` fills namespace `NS` and then sets the pointer.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{ns}:job:{id}` | hash | the job view; field `sequence` is the last applied event |
//! | `{ns}:idx:{tenant}:all` | zset | every job, by submit time (ms) |
//! | `{ns}:idx:{tenant}:status:{STATUS}` | zset | jobs in that status, by time of entry |
//! | `{ns}:idx:{tenant}:type:{type}`, `…:queue:{queue}`, `…:label:{k}={v}` | zset | by submit time |
//! | `{ns}:count:{tenant}` | hash | `status:{S}`, `type:{T}`, `type:{T}/status:{S}` → count |
//! | `{ns}:ready:{tenant}:{queue}` | zset | claimable jobs; score (9 − priority)·10¹³ + enqueue ms |
//! | `{ns}:scheduled:{tenant}:{queue}` | zset | delayed starts and retry backoffs, by due ms |
//! | `{ns}:running:{tenant}:{queue}` | zset | claimed jobs, by lease expiry ms |
//! | `{ns}:queues` | set | `{tenant}:{queue}` of every queue seen |
//! | `{ns}:model` | hash | the marker of a complete namespace: `epoch`, `rebuilt_at`, `events` |
//!
//! The marker is written last, when a namespace holds everything the event store held (a
//! rebuild ended, or a first start found an empty store). A live namespace without it was lost
//! (Redis restarted empty, was flushed, failed over to an empty replica) or is being rebuilt:
//! claims answer 503 and the projector role rebuilds it (see `ordo_projectors::rebuild`).
//!
//! Keys of the deployment rather than of a namespace: `{prefix}:active`, and the singleton
//! locks `{prefix}:lock:{name}` (with their fencing counters); a namespace named like the
//! prefix never counts them as its own.
//!
//! Beside the keys, the channel `{prefix}:wake` carries `{tenant}:{queue}` each time the live
//! projector puts a job in a ready set (see [`crate::wakeups::ReadyWakeups`]).

pub const DEFAULT_PREFIX: &str = "ordo";

/// The key naming the live namespace of a prefix.
pub fn active_pointer(prefix: &str) -> String {
    format!("{prefix}:active")
}

/// The Pub/Sub channel announcing ready jobs of a deployment (whatever namespace is live).
pub fn wake_channel(prefix: &str) -> String {
    format!("{prefix}:wake")
}

/// The marker of a complete namespace (see above).
pub fn marker(namespace: &str) -> String {
    format!("{namespace}:model")
}

/// The singleton lock `name` of a deployment.
pub fn lock(prefix: &str, name: &str) -> String {
    format!("{prefix}:lock:{name}")
}

/// The lock held while a namespace of the read model is rebuilt, by `ordo replay` or by the
/// projector role healing a lost model: one rebuild at a time.
pub const REBUILD_LOCK: &str = "rebuild";

/// Whether `key` belongs to the deployment `namespace` may also name (a pointer or a lock),
/// not to the namespace's model.
pub fn is_deployment_key(namespace: &str, key: &str) -> bool {
    key.strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == "active" || rest.starts_with("lock:"))
}

pub fn job(namespace: &str, job_id: &str) -> String {
    format!("{namespace}:job:{job_id}")
}

pub fn index(namespace: &str, tenant: &str, index: &str) -> String {
    format!("{namespace}:idx:{tenant}:{index}")
}

pub fn counts(namespace: &str, tenant: &str) -> String {
    format!("{namespace}:count:{tenant}")
}

/// `kind` is `ready`, `scheduled` or `running`.
pub fn dispatch(namespace: &str, kind: &str, tenant: &str, queue: &str) -> String {
    format!("{namespace}:{kind}:{tenant}:{queue}")
}

pub fn queues(namespace: &str) -> String {
    format!("{namespace}:queues")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_locks_are_the_deployment_s() {
        assert!(is_deployment_key("ordo", "ordo:active"));
        assert!(is_deployment_key("ordo", &lock("ordo", "reaper")));
        assert!(is_deployment_key("ordo", "ordo:lock:rebuild:fence"));
        assert!(!is_deployment_key("ordo", &job("ordo", "lock")));
        assert!(!is_deployment_key("ordo", &marker("ordo")));
        assert!(!is_deployment_key("ordo.r1", "ordo:active"));
    }
}

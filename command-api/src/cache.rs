//! The write side's cache of live jobs.
//!
//! Every command but submit needs the job as its events make it, and loading it costs a round
//! trip to PostgreSQL and a replay of the job's events: two of the five statements of a job's
//! lifecycle (submit, start, complete). The bus keeps the state each successful command leaves
//! behind and starts from it next time.
//!
//! A cached state goes stale only when another process (a second API, a reaper) wrote the job
//! since. That cannot produce a wrong write: an append at sequence n + 1 commits only if the
//! store holds exactly the n events the cached state was built from, so a command that succeeds
//! against a cached state is right. A stale state shows up as a conflict on append or as a
//! command the aggregate refuses, and the bus then runs the command once more against the
//! event store (see [`crate::bus`]).
//!
//! Finished jobs leave the cache (few commands follow them), and the cache is bounded by an
//! estimate of its memory, so a large backlog of queued jobs evicts rather than grows.

use ordo_domain::Job;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Estimated bytes of cached jobs kept by default.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;
/// What a job costs beside its payload and labels: the aggregate, the spec's strings, the
/// cache's own entry.
const JOB_OVERHEAD_BYTES: u64 = 512;
/// Jobs a typical entry weighs in at, to size the cache's tables up front.
const TYPICAL_JOB_BYTES: u64 = 1024;

/// A job's state after its `sequence`-th event.
#[derive(Debug)]
pub struct CachedJob {
    pub job: Job,
    pub sequence: usize,
    weight: u64,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<Uuid, Arc<CachedJob>> for ByWeight {
    fn weight(&self, _: &Uuid, cached: &Arc<CachedJob>) -> u64 {
        cached.weight
    }
}

pub struct JobCache {
    jobs: Cache<Uuid, Arc<CachedJob>, ByWeight>,
}

impl JobCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_jobs = (capacity_bytes / TYPICAL_JOB_BYTES).max(1) as usize;
        Self {
            jobs: Cache::with_weighter(estimated_jobs, capacity_bytes, ByWeight),
        }
    }

    pub fn get(&self, job_id: &Uuid) -> Option<Arc<CachedJob>> {
        self.jobs.get(job_id)
    }

    /// Records the job's state after its `sequence`-th event; a finished job is dropped instead.
    pub fn put(&self, job_id: Uuid, job: Job, sequence: usize) -> Arc<CachedJob> {
        let finished = job.status().is_some_and(|s| s.is_terminal());
        // Weighed only when kept: a complete, the commonest last command, skips the walk.
        let weight = if finished { 0 } else { estimated_bytes(&job) };
        let cached = Arc::new(CachedJob {
            job,
            sequence,
            weight,
        });
        if finished {
            self.jobs.remove(&job_id);
        } else {
            self.jobs.insert(job_id, cached.clone());
        }
        cached
    }

    pub fn forget(&self, job_id: &Uuid) {
        self.jobs.remove(job_id);
    }
}

fn estimated_bytes(job: &Job) -> u64 {
    JOB_OVERHEAD_BYTES
        + job.spec().map_or(0, |spec| {
            json_bytes(&spec.payload)
                + spec
                    .labels
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) as u64)
                    .sum::<u64>()
        })
}

/// Roughly the bytes a JSON value takes in memory: its strings plus a word or two per node.
fn json_bytes(value: &Value) -> u64 {
    const NODE: u64 = 32;
    match value {
        Value::String(s) => NODE + s.len() as u64,
        Value::Array(items) => NODE + items.iter().map(json_bytes).sum::<u64>(),
        Value::Object(map) => {
            NODE + map
                .iter()
                .map(|(k, v)| k.len() as u64 + json_bytes(v))
                .sum::<u64>()
        }
        _ => NODE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_bytes_grows_with_the_strings_it_holds() {
        let small = json_bytes(&json!({"ms": 5}));
        let large = json_bytes(&json!({"ms": 5, "blob": "x".repeat(10_000)}));
        assert!(small < 100, "{small}");
        assert!(large > 10_000, "{large}");
    }

    #[test]
    fn a_cache_too_small_for_a_job_keeps_nothing() {
        let cache = JobCache::new(JOB_OVERHEAD_BYTES / 2);
        cache.put(Uuid::now_v7(), Job::default(), 1);
        assert_eq!(cache.jobs.len(), 0);
    }
}

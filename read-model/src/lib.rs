//! Ordo's Redis read model, in one place: every key, every script and every call that reads
//! or writes it goes through this crate. The projector writes job events through it, the
//! command API claims and releases jobs and the reaper finds expired leases through it, the
//! query API reads views through it; none of them knows a key name or a score formula.
//!
//! - [`keys`]: the key layout (one table of every key);
//! - [`namespace`]: the live namespace pointer and whole-namespace scans (blue/green replays);
//! - [`view`]: what one job event changes in a job's view, computed from the event (pure);
//! - [`views`]: [`JobViews`] applies those changes with a sequence-checked script and forgets
//!   jobs for a repair;
//! - [`dispatch`]: [`DispatchQueues`]: claims, released claims, expired leases;
//! - [`wakeups`]: [`ReadyWakeups`], the Pub/Sub hints that wake claims waiting on a queue;
//! - [`lock`]: a singleton lock with fencing tokens (the lease reaper);
//! - [`compare`]: two namespaces compared key by key (`ordo replay --verify`).
//!
//! The scripts live in `src/lua/`; `score.lua` holds the ready-set score formula, and every
//! script that puts a job in a ready set is compiled with it in front ([`scored_script!`]).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use std::time::Duration;

/// `lua/score.lua` followed by the script in `$file`, as one script text.
macro_rules! scored_script {
    ($file:literal) => {
        concat!(include_str!("lua/score.lua"), include_str!($file))
    };
}

pub mod compare;
pub mod dispatch;
pub mod keys;
pub mod lock;
pub mod namespace;
pub mod view;
pub mod views;
pub mod wakeups;

pub use compare::Difference;
pub use dispatch::{Claim, DispatchQueues, ExpiredLease, TenantQueue};
pub use lock::SingletonLock;
pub use view::{Placement, ViewUpdate};
pub use views::{ApplyOutcome, JobViews};
pub use wakeups::ReadyWakeups;

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

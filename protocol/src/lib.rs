//! What a worker (Ordo's own runtime, or a user's binary embedding it) shares with the server,
//! kept to serde, chrono, uuid and rand so that embedding a worker builds nothing heavier:
//!
//! - [`worker`]: the JSON of the worker protocol and its bounds (lease, claim size, claim wait);
//! - [`tenant`]: the header that names the tenant of a request;
//! - [`jobs`]: the JSON of a bulk submit, which a worker uses to enqueue follow-up jobs;
//! - [`logs`]: log levels and the record contract of topic `ordo.logs`, which producers of
//!   log lines and the logs store share;
//! - [`backoff`]: exponential backoff with jitter for every retry loop.

pub mod backoff;
pub mod jobs;
pub mod logs;
pub mod tenant;
pub mod worker;

pub use backoff::Backoff;

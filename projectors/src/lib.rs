//! Ordo's projectors: the read models built from the event stream.
//!
//! - [`view`] computes, from one event alone, what it changes in a job's view (pure);
//! - [`redis_views`] applies those changes with a sequence-checked Lua script, so duplicates
//!   and redeliveries change nothing and a gap is refused rather than skipped;
//! - [`keys`] is the Redis key layout, shared with the query API;
//! - [`namespace`] resolves and switches the live namespace (blue/green replays).
//!
//! Still to come (issue 4): the Kafka consumer loop with offset commits after writes and a
//! parking topic, `ordo serve projector`, the query API and replay.

pub mod keys;
pub mod namespace;
pub mod redis_views;
pub mod view;

pub use redis_views::{Outcome, RedisViews};
pub use view::{Dispatch, ViewUpdate};

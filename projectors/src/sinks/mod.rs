//! The read models the projector writes, one module per sink, each the same layout: the
//! sink's struct and constructor, its item, `Sink::decode`, `Sink::write`, and the hooks it
//! uses; then its tests' helpers, if any.

pub mod redis_views;

pub use redis_views::RedisViews;

//! One module per route group.

pub mod health;
pub mod jobs;
pub mod logs;
pub mod queues;
pub mod services;
pub mod stats;

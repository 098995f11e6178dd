//! Injected sources of time and randomness. The aggregate never reads the system clock or a
//! global RNG itself, so given/when/then tests and property tests are deterministic.

use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::Arc;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The random source of full jitter: a uniformly drawn value in `0..=max`.
pub trait Jitter: Send + Sync {
    fn up_to(&self, max: u64) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRngJitter;

impl Jitter for ThreadRngJitter {
    fn up_to(&self, max: u64) -> u64 {
        rand::rng().random_range(0..=max)
    }
}

/// The `Services` of the [`crate::Job`] aggregate.
#[derive(Clone)]
pub struct JobServices {
    pub clock: Arc<dyn Clock>,
    pub jitter: Arc<dyn Jitter>,
}

impl JobServices {
    pub fn new(clock: Arc<dyn Clock>, jitter: Arc<dyn Jitter>) -> Self {
        Self { clock, jitter }
    }

    /// The production services: the system clock and a thread-local RNG.
    pub fn system() -> Self {
        Self::new(Arc::new(SystemClock), Arc::new(ThreadRngJitter))
    }
}

impl Default for JobServices {
    fn default() -> Self {
        Self::system()
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(start))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Jitter that always draws the same fraction of the ceiling (0.0 = no delay, 1.0 = full).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn up_to(&self, max: u64) -> u64 {
        (max as f64 * self.0.clamp(0.0, 1.0)).round() as u64
    }
}

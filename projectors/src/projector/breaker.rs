//! The circuit breaker around a sink. A few failures in a row are retried in place; after
//! `threshold` of them the breaker opens for a cool-down that grows with each failed trial
//! (capped), then lets one trial write through (half-open): success closes it, failure
//! opens it again. The loop pauses its partitions while the breaker is open, so it can keep
//! polling the consumer (and stay in the group) without fetching past the waiting batch.
//! The in-place retries do not poll: they last at most `threshold` × the backoff's cap
//! (5 × 5 s by default), far below librdkafka's `max.poll.interval.ms` (5 minutes).

use crate::metrics::{BreakerState, ProjectorMetrics};
use ordo_protocol::Backoff;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed writes that open the breaker.
    pub threshold: u32,
    /// Cool-down of the open breaker, growing with each failed trial.
    pub cool_down: Backoff,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }
}

/// What the loop does before its next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Write,
    /// The breaker is open until then: pause, keep polling, then try once.
    OpenUntil(Instant),
}

pub(super) struct Breaker {
    config: BreakerConfig,
    /// The backoff of the in-place retries while closed.
    retry: Backoff,
    state: BreakerState,
    /// Consecutive failures while closed.
    failures: u32,
    /// Consecutive failed trials since it opened, for the cool-down.
    trials: u32,
    open_until: Instant,
    metrics: ProjectorMetrics,
    sink: &'static str,
}

impl Breaker {
    pub fn new(
        config: BreakerConfig,
        retry: Backoff,
        metrics: ProjectorMetrics,
        sink: &'static str,
    ) -> Self {
        Self {
            config,
            retry,
            state: BreakerState::Closed,
            failures: 0,
            trials: 0,
            open_until: Instant::now(),
            metrics,
            sink,
        }
    }

    /// When the next write may go; an open breaker whose cool-down is over turns half-open.
    pub fn next(&mut self) -> Next {
        match self.state {
            BreakerState::Open if Instant::now() < self.open_until => {
                Next::OpenUntil(self.open_until)
            }
            BreakerState::Open => {
                self.enter(BreakerState::HalfOpen);
                Next::Write
            }
            BreakerState::HalfOpen | BreakerState::Closed => Next::Write,
        }
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.trials = 0;
        if self.state != BreakerState::Closed {
            self.enter(BreakerState::Closed);
        }
    }

    /// Counts a failed write: `Some(wait)` before an in-place retry while the breaker stays
    /// closed, `None` when it opened.
    pub fn failed(&mut self) -> Option<Duration> {
        match self.state {
            BreakerState::Closed => {
                self.failures += 1;
                if self.failures < self.config.threshold {
                    return Some(self.retry.delay(self.failures));
                }
            }
            BreakerState::HalfOpen | BreakerState::Open => self.trials += 1,
        }
        self.open_until = Instant::now() + self.config.cool_down.delay(self.trials + 1);
        self.enter(BreakerState::Open);
        None
    }

    fn enter(&mut self, state: BreakerState) {
        let (sink, from, failures) = (self.sink, self.state, self.failures + self.trials);
        match state {
            BreakerState::Closed => {
                tracing::info!(sink, ?from, "sink circuit breaker closed: writes go on")
            }
            _ => tracing::warn!(sink, ?from, to = ?state, failures, "sink circuit breaker"),
        }
        self.state = state;
        self.metrics.breaker(state);
    }
}

//! Exponential backoff with jitter for every retry loop of Ordo's services.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The wait before retry number `failures` (1 = first retry): uniform in [c/2, c] for
    /// c = min(max, initial × 2^(failures−1)), so processes that failed together do not
    /// retry in lockstep.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        exp.min(self.max)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        for failures in 1..40 {
            let d = backoff.delay(failures);
            let ceiling = (backoff.initial * 2u32.pow((failures - 1).min(16))).min(backoff.max);
            assert!(d <= ceiling && d >= ceiling / 2, "{failures}: {d:?}");
        }
    }
}

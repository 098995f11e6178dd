//! Retry policy: exponential backoff with full jitter and a cap
//! (`delay = uniform(0, min(max_delay, initial_delay * multiplier^(attempt-1)))`).
//! Full jitter spreads retries of jobs that failed together, so a recovering dependency is not
//! hit by a synchronized wave.

use crate::services::Jitter;
use crate::validation::ValidationError;
use serde::{Deserialize, Serialize};

pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
pub const MAX_DELAY_LIMIT_MS: u64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts per cycle, the first included; 1 means never retry.
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub multiplier: f64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay_ms: 1_000,
            multiplier: 2.0,
            max_delay_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// Checks the bounds; the error names the field at fault.
    pub fn validate(self) -> Result<Self, ValidationError> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(ValidationError::new(
                "max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if !(self.multiplier.is_finite() && (1.0..=10.0).contains(&self.multiplier)) {
            return Err(ValidationError::new(
                "backoff.multiplier",
                "must be between 1.0 and 10.0",
            ));
        }
        if self.max_delay_ms > MAX_DELAY_LIMIT_MS {
            return Err(ValidationError::new(
                "backoff.max_delay_ms",
                format!("must be at most {MAX_DELAY_LIMIT_MS} (7 days)"),
            ));
        }
        if self.initial_delay_ms > self.max_delay_ms {
            return Err(ValidationError::new(
                "backoff.initial_delay_ms",
                "must not exceed backoff.max_delay_ms",
            ));
        }
        Ok(self)
    }

    /// The backoff ceiling after `failed_attempt` (1-based) failed: the exponential curve, capped.
    pub fn ceiling_ms(&self, failed_attempt: u32) -> u64 {
        let exponent = failed_attempt.saturating_sub(1).min(1_000) as i32;
        let raw = self.initial_delay_ms as f64 * self.multiplier.powi(exponent);
        if raw.is_finite() && raw < self.max_delay_ms as f64 {
            raw as u64
        } else {
            self.max_delay_ms
        }
    }

    /// The delay before the next attempt: full jitter over [`Self::ceiling_ms`].
    pub fn delay_ms(&self, failed_attempt: u32, jitter: &dyn Jitter) -> u64 {
        let ceiling = self.ceiling_ms(failed_attempt);
        jitter.up_to(ceiling).min(ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Max;
    impl Jitter for Max {
        fn up_to(&self, max: u64) -> u64 {
            max
        }
    }

    #[test]
    fn ceiling_grows_exponentially_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay_ms: 100,
            multiplier: 2.0,
            max_delay_ms: 1_000,
        };
        let ceilings: Vec<u64> = (1..=6).map(|a| p.ceiling_ms(a)).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(p.delay_ms(3, &Max), 400);
        assert_eq!(p.ceiling_ms(u32::MAX), 1_000);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_attempts");
        let bad = RetryPolicy {
            multiplier: f64::NAN,
            ..RetryPolicy::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "backoff.multiplier");
        let bad = RetryPolicy {
            initial_delay_ms: 10_000,
            max_delay_ms: 1_000,
            ..RetryPolicy::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().field,
            "backoff.initial_delay_ms"
        );
    }
}

//! `fail`: fails on purpose, to exercise retries, backoff and dead letters.
//!
//! Payload, with exactly one of `times` and `probability`:
//! - `{"times": N}`: attempts 1..=N fail, later ones succeed;
//! - `{"probability": p}`: each attempt fails with probability p (0 never, 1 always);
//! - `"retryable": false` (optional, default true) makes the failures permanent;
//! - `"message": "..."` (optional) replaces the error message.
//!
//! Success is `{"ok": true, "attempt": A}`.

use async_trait::async_trait;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{invalid_payload, parse_payload};
use crate::handler::{JobContext, JobFailure, JobHandler};

const SHAPE: &str = r#"{"times": <non-negative integer>} or {"probability": <number from 0 to 1>}, with optional "retryable": <bool> and "message": <string>"#;

#[derive(Debug, Clone, Copy, Default)]
pub struct Fail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    times: Option<u32>,
    probability: Option<f64>,
    #[serde(default = "yes")]
    retryable: bool,
    message: Option<String>,
}

fn yes() -> bool {
    true
}

fn invalid(problem: impl std::fmt::Display) -> JobFailure {
    invalid_payload("fail", SHAPE, problem)
}

/// Kept out of the async fn: the thread-local RNG is not `Send`.
fn chance(probability: f64) -> bool {
    rand::rng().random_bool(probability)
}

#[async_trait]
impl JobHandler for Fail {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
        let p: Payload = parse_payload("fail", SHAPE, &job.payload)?;
        let default_message = match (p.times, p.probability) {
            (Some(_), Some(_)) => return Err(invalid("both times and probability given")),
            (None, None) => return Err(invalid("neither times nor probability given")),
            (Some(times), None) => (job.attempt <= times).then(|| {
                format!(
                    "fail: attempt {} of the first {times} that fail",
                    job.attempt
                )
            }),
            (None, Some(probability)) => {
                if !(0.0..=1.0).contains(&probability) {
                    return Err(invalid("probability must be from 0 to 1"));
                }
                chance(probability)
                    .then(|| format!("fail: failed at random (probability {probability})"))
            }
        };
        match default_message {
            None => Ok(json!({ "ok": true, "attempt": job.attempt })),
            Some(default_message) => {
                let error = p.message.unwrap_or(default_message);
                Err(JobFailure {
                    error,
                    retryable: p.retryable,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    async fn attempt(payload: Value, attempt: u32) -> Result<Value, JobFailure> {
        let job = JobContext::new(Uuid::now_v7(), "fail", payload, Duration::from_secs(1))
            .with_attempt(attempt, Some(5));
        Fail.run(&job).await
    }

    #[tokio::test]
    async fn times_fails_the_first_attempts_then_succeeds() {
        for a in 1..=2 {
            let failure = attempt(json!({"times": 2}), a).await.unwrap_err();
            assert!(failure.retryable);
            assert_eq!(
                failure.error,
                format!("fail: attempt {a} of the first 2 that fail")
            );
        }
        assert_eq!(
            attempt(json!({"times": 2}), 3).await,
            Ok(json!({"ok": true, "attempt": 3}))
        );
        assert_eq!(
            attempt(json!({"times": 0}), 1).await,
            Ok(json!({"ok": true, "attempt": 1}))
        );
    }

    #[tokio::test]
    async fn retryable_false_makes_failures_permanent_and_message_replaces_the_error() {
        let failure = attempt(json!({"times": 1, "retryable": false}), 1)
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            JobFailure::permanent("fail: attempt 1 of the first 1 that fail")
        );
        let failure = attempt(
            json!({"probability": 1, "retryable": false, "message": "boom"}),
            1,
        )
        .await;
        assert_eq!(failure, Err(JobFailure::permanent("boom")));
    }

    #[tokio::test]
    async fn probability_zero_never_fails_one_always_fails_and_a_half_fails_about_half() {
        for a in 1..=50 {
            assert!(attempt(json!({"probability": 0}), a).await.is_ok());
            let failure = attempt(json!({"probability": 1.0}), a).await.unwrap_err();
            assert_eq!(
                failure,
                JobFailure::retryable("fail: failed at random (probability 1)")
            );
        }
        let mut failures = 0;
        for _ in 0..2000 {
            failures += usize::from(attempt(json!({"probability": 0.5}), 1).await.is_err());
        }
        // Binomial(2000, 0.5): mean 1000, standard deviation ~22; this is > 9 of them.
        assert!((800..=1200).contains(&failures), "{failures}");
    }

    #[tokio::test]
    async fn invalid_payloads_are_permanent_failures() {
        for (payload, problem) in [
            (Value::Null, "invalid type: null"),
            (json!({}), "neither times nor probability given"),
            (
                json!({"times": 1, "probability": 0.5}),
                "both times and probability given",
            ),
            (
                json!({"probability": 1.5}),
                "probability must be from 0 to 1",
            ),
            (
                json!({"probability": -0.1}),
                "probability must be from 0 to 1",
            ),
            (json!({"times": -1}), "invalid value: integer `-1`"),
            (
                json!({"times": 1, "retryable": "no"}),
                "invalid type: string",
            ),
            (json!({"tmes": 1}), "unknown field `tmes`"),
        ] {
            let failure = attempt(payload.clone(), 1).await.unwrap_err();
            crate::builtin::assert_invalid_payload(&failure, "fail", &payload, problem);
        }
    }
}

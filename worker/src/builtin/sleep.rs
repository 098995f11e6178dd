//! `sleep`: waits, then succeeds with `{"slept_ms": N}`; stops at once when cancelled.
//!
//! Payload: `{"ms": N}`, N a non-negative integer (milliseconds). The job's timeout still
//! applies: a sleep longer than it fails as timed out.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse_payload;
use crate::handler::{JobContext, JobFailure, JobHandler};

const SHAPE: &str = r#"{"ms": <non-negative integer>}"#;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    ms: u64,
}

#[async_trait]
impl JobHandler for Sleep {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
        let Payload { ms } = parse_payload("sleep", SHAPE, &job.payload)?;
        job.log.info(format!("sleeping {ms} ms"));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {
                job.log.info("woke up");
                Ok(json!({ "slept_ms": ms }))
            }
            () = job.cancel.cancelled() => {
                job.log.warn("cancelled while sleeping");
                Err(JobFailure::cancelled())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use uuid::Uuid;

    use super::*;

    fn job(payload: Value) -> JobContext {
        JobContext::new(Uuid::now_v7(), "sleep", payload, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn sleeps_the_given_time() {
        let started = Instant::now();
        assert_eq!(
            Sleep.run(&job(json!({"ms": 30}))).await,
            Ok(json!({"slept_ms": 30}))
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn bad_payloads_are_permanent_failures_saying_what_to_fix() {
        for payload in [
            Value::Null,
            json!({}),
            json!({"ms": -1}),
            json!({"ms": "10"}),
            json!(5),
            json!({"ms": 1, "msec": 2}),
        ] {
            let failure = Sleep.run(&job(payload.clone())).await.unwrap_err();
            assert!(!failure.retryable, "{payload}");
            assert!(
                failure.error.starts_with("sleep: invalid payload"),
                "{}",
                failure.error
            );
            assert!(failure
                .error
                .contains(r#"expected {"ms": <non-negative integer>}"#));
        }
    }

    #[tokio::test]
    async fn cancellation_stops_it_promptly() {
        let job = job(json!({"ms": 60_000}));
        let cancel = job.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        assert_eq!(Sleep.run(&job).await, Err(JobFailure::cancelled()));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

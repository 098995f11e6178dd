//! `noop`: succeeds at once with `{"ok": true}`.
//!
//! Payload: anything (ignored).

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::handler::{JobContext, JobFailure, JobHandler};

#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn run(&self, _job: &JobContext) -> Result<Value, JobFailure> {
        Ok(json!({ "ok": true }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    #[tokio::test]
    async fn succeeds_whatever_the_payload() {
        for payload in [Value::Null, json!({"anything": [1, 2]}), json!("text")] {
            let job = JobContext::new(Uuid::nil(), "noop", payload, Duration::from_secs(1));
            assert_eq!(Noop.run(&job).await, Ok(json!({"ok": true})));
        }
    }
}

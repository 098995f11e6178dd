//! The failures of one Kafka call retried until it succeeds, with capped exponential backoff
//! between them, each one logged and counted. There is no attempt limit: a projector that
//! gave up would only stop its read model, so it waits the outage out (or the shutdown).

use crate::metrics::ProjectorMetrics;
use ordo_protocol::Backoff;
use std::fmt::Display;
use tokio_util::sync::CancellationToken;

pub(super) struct Retry {
    backoff: Backoff,
    kind: &'static str,
    failures: u32,
}

impl Retry {
    pub fn new(backoff: Backoff, kind: &'static str) -> Self {
        Self {
            backoff,
            kind,
            failures: 0,
        }
    }

    /// Records a failure and waits before the next attempt; `false` when shutdown came first.
    pub async fn failed(
        &mut self,
        error: impl Display,
        metrics: &ProjectorMetrics,
        shutdown: &CancellationToken,
    ) -> bool {
        self.failures += 1;
        metrics.error(self.kind);
        let delay = self.backoff.delay(self.failures);
        tracing::warn!(
            %error,
            kind = self.kind,
            attempt = self.failures,
            retry_in_ms = delay.as_millis() as u64,
            "projector call failed; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

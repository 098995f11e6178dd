//! What every protocol's request goes through, outside the HTTP handlers: admission (a
//! bounded number of requests in progress), the tenant, the body within its limits, then,
//! once a decoder has read the lines, the rules ([`crate::line::prepare`]), the tenant's
//! rate limit and Kafka. Nothing is produced unless the whole request passed, and a request
//! is answered with success only once Kafka has every record of it.

use crate::body::{content_encoding, decode_content};
use crate::error::IngestError;
use crate::limiter::{Decision, RateLimiter, TenantLimits};
use crate::line::{prepare, Adjusted, Line, LineRules};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use chrono::Utc;
use ordo_common::logs::{LogMetrics, LogSink};
use ordo_domain::spec::TenantId;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocols lines arrive by: the `protocol` label of the metrics and the `source` of
/// the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Native,
    Otlp,
    Elasticsearch,
    Loki,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Otlp => "otlp",
            Self::Elasticsearch => "elasticsearch",
            Self::Loki => "loki",
        }
    }
}

/// Settings of the role (the command line and environment map onto these).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Larger bodies, before or after decompression, are refused (413).
    pub max_body_bytes: usize,
    /// More lines in one request are refused (413), so that a body of tiny lines cannot
    /// take much more memory than its size.
    pub max_lines: usize,
    /// Requests in progress at once; more are refused (503 with Retry-After) rather than
    /// queued, which bounds the memory bodies take.
    pub max_in_flight: usize,
    pub rules: LineRules,
    /// Each tenant's rate limits, kept in Redis across instances.
    pub limits: TenantLimits,
}

impl IngestConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
    pub const DEFAULT_MAX_LINES: usize = 100_000;
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_lines: Self::DEFAULT_MAX_LINES,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            rules: LineRules::default(),
            limits: TenantLimits::DEFAULT,
        }
    }
}

/// A request admitted, its tenant known and its body read and decompressed.
pub struct Incoming {
    pub tenant: TenantId,
    /// The media type of `Content-Type`, lowercase, without parameters.
    pub media_type: String,
    pub body: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// What a request stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub lines: usize,
    pub adjusted: Adjusted,
}

/// The role's shared state: cheap to clone.
#[derive(Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
}

struct Inner {
    sink: LogSink,
    limiter: Option<RateLimiter>,
    metrics: LogMetrics,
    config: IngestConfig,
    in_flight: Arc<Semaphore>,
}

impl IngestService {
    /// The tenants' limits are kept in `redis` under `prefix`; `metrics` are shared with
    /// the other roles of the process that take log lines.
    pub fn new(
        sink: LogSink,
        redis: ConnectionManager,
        prefix: &str,
        metrics: LogMetrics,
        config: IngestConfig,
    ) -> Self {
        let limiter =
            (!config.limits.unlimited()).then(|| RateLimiter::new(redis, prefix, config.limits));
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Self {
            inner: Arc::new(Inner {
                sink,
                limiter,
                metrics,
                config,
                in_flight,
            }),
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// Admits `request`, reads its tenant and its body (decompressed) within the limits.
    pub async fn receive(
        &self,
        protocol: Protocol,
        request: Request,
    ) -> Result<Incoming, IngestError> {
        let received = async {
            let permit = self
                .inner
                .in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| IngestError::Busy)?;
            let headers = request.headers().clone();
            let tenant = ordo_common::http::tenant(&headers).map_err(IngestError::BadRequest)?;
            let limit = self.inner.config.max_body_bytes;
            // The route's body limit is `limit`: a longer body is refused while it streams in.
            // A client too slow to send it must not hold its place for ever.
            let body = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(request, &()))
                .await
                .map_err(|_| IngestError::SlowBody {
                    secs: BODY_TIMEOUT.as_secs(),
                })?
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => IngestError::TooLarge {
                        limit,
                        decompressed: false,
                    },
                    _ => IngestError::malformed(rejection.body_text()),
                })?;
            // Inflating is CPU work: on the blocking pool, like the decoders (see `decode`).
            let encoding = content_encoding(&headers);
            let body = tokio::task::spawn_blocking(move || decode_content(&encoding, body, limit))
                .await
                .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))?;
            Ok(Incoming {
                tenant,
                media_type: ordo_common::http::media_type(&headers),
                body,
                _permit: permit,
            })
        }
        .await;
        self.counted(protocol, received)
    }

    /// Runs `decode` on the body of `incoming` (its media type and bytes) on the blocking
    /// pool: reading up to the body limit of JSON or protobuf takes milliseconds of CPU,
    /// which must not hold up the other requests the process serves (in `ordo dev`, the
    /// workers' claims). The requests in progress are bounded, and so are these tasks.
    pub async fn decode<T: Send + 'static>(
        &self,
        protocol: Protocol,
        incoming: &Incoming,
        decode: impl FnOnce(&str, &[u8]) -> Result<T, IngestError> + Send + 'static,
    ) -> Result<T, IngestError> {
        let (media_type, body) = (incoming.media_type.clone(), incoming.body.clone());
        let decoded = tokio::task::spawn_blocking(move || decode(&media_type, &body))
            .await
            .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
        self.counted(protocol, decoded)
    }

    /// A check's result, its refusal counted.
    pub fn counted<T>(
        &self,
        protocol: Protocol,
        result: Result<T, IngestError>,
    ) -> Result<T, IngestError> {
        result.inspect_err(|error| {
            self.inner
                .metrics
                .rejected_request(protocol.as_str(), error.reason(), 0)
        })
    }

    /// Lines refused one by one (items of a bulk request), the others being stored.
    pub fn rejected_lines(&self, protocol: Protocol, lines: usize) {
        self.inner
            .metrics
            .rejected_lines(protocol.as_str(), "invalid", lines);
    }

    /// Stores the decoded `lines` of `incoming`: the rules, the tenant's limit, Kafka.
    pub async fn accept(
        &self,
        incoming: &Incoming,
        protocol: Protocol,
        lines: Vec<Line>,
    ) -> Result<Accepted, IngestError> {
        let metrics = &self.inner.metrics;
        let count = lines.len();
        let result = self.store(incoming, protocol, lines).await;
        match &result {
            Ok(accepted) => {
                let label = protocol.as_str();
                metrics.accepted(label, accepted.lines);
                metrics.bytes(label, incoming.body.len());
                metrics.adjusted(label, "truncated", accepted.adjusted.truncated);
                metrics.adjusted(label, "timestamp", accepted.adjusted.timestamp);
                metrics.adjusted(label, "level", accepted.adjusted.level);
            }
            Err(error) => metrics.rejected_request(protocol.as_str(), error.reason(), count),
        }
        result
    }

    async fn store(
        &self,
        incoming: &Incoming,
        protocol: Protocol,
        lines: Vec<Line>,
    ) -> Result<Accepted, IngestError> {
        if lines.is_empty() {
            return Ok(Accepted {
                lines: 0,
                adjusted: Adjusted::default(),
            });
        }
        let tenant = &incoming.tenant;
        // The limit first: a refused request costs no more work.
        if let Some(limiter) = &self.inner.limiter {
            let bytes = incoming.body.len() as u64;
            match limiter.check(tenant, lines.len() as u64, bytes).await {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Limited(wait)) => {
                    return Err(IngestError::RateLimited {
                        tenant: tenant.to_string(),
                        retry_after_secs: u32::try_from(wait.as_millis().div_ceil(1000))
                            .unwrap_or(u32::MAX)
                            .max(1),
                    })
                }
                Err(error) => {
                    tracing::warn!(%error, %tenant, "rate limit not checked; request let in");
                    self.inner.metrics.limiter_error();
                }
            }
        }
        let prepared = prepare(
            tenant,
            protocol.as_str(),
            Utc::now(),
            lines,
            &self.inner.config.rules,
        );
        self.inner
            .sink
            .send(&prepared.batches)
            .await
            .map_err(|error| {
                tracing::warn!(%error, %tenant, "log lines not produced");
                IngestError::Unavailable(format!(
                    "the log lines did not reach Kafka ({error}); retry"
                ))
            })?;
        Ok(Accepted {
            lines: prepared.lines,
            adjusted: prepared.adjusted,
        })
    }
}

impl Accepted {
    /// What the rules changed, for shippers that can carry a warning (OTLP's partial
    /// success); `None` when nothing was changed.
    pub fn warning(&self) -> Option<String> {
        let Adjusted {
            truncated,
            timestamp,
            level,
        } = self.adjusted;
        let notes: Vec<String> = [
            (truncated, "cut to the size limits (see ordo.truncated)"),
            (
                timestamp,
                "restamped: time outside the retention window (see ordo.original_ts)",
            ),
            (
                level,
                "stored as info: unknown severity (see ordo.original_level)",
            ),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} log records {what}"))
        .collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_list_what_the_rules_changed() {
        let mut accepted = Accepted {
            lines: 5,
            adjusted: Adjusted::default(),
        };
        assert_eq!(accepted.warning(), None);
        accepted.adjusted.timestamp = 2;
        accepted.adjusted.level = 1;
        assert_eq!(
            accepted.warning().unwrap(),
            "2 log records restamped: time outside the retention window (see ordo.original_ts); \
             1 log records stored as info: unknown severity (see ordo.original_level)"
        );
    }
}

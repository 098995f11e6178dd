//! Healing a lost read model. The live namespace carries a marker once it is complete (see
//! `ordo_read_model::keys`); when Redis comes back empty (a restart without persistence, a
//! flush, a failover to an empty replica) the marker is gone with everything else. The
//! projector role checks for it every `check_interval`; finding it gone, one process, under
//! the rebuild lock, rebuilds the model from the event store into a new namespace with the
//! blue/green replay (`ordo replay`), switches to it and drops what was left, while the
//! others wait for the lock to be released. Claims answer 503 meanwhile (the command API
//! reads the same marker), and the projectors go on applying events: the replay's catch-up
//! pass covers what they wrote around the switch.
//!
//! A first start finds no marker either: with an empty event store the namespace is marked
//! complete where it is, without a rebuild.

use crate::metrics::RebuildMetrics;
use crate::replay::{self, Mode, RebuildRunning, ReplayOptions, Silent, Summary};
use ordo_common::health::RoleHealth;
use ordo_protocol::Backoff;
use ordo_read_model::lock::Held;
use ordo_read_model::namespace::{self, Live, ModelState};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct RebuildConfig {
    /// Key prefix of the deployment's read model.
    pub prefix: String,
    /// How often the marker is looked for.
    pub check_interval: Duration,
    /// Between failed rebuilds (PostgreSQL or Redis away).
    pub backoff: Backoff,
    pub replay: ReplayOptions,
}

impl RebuildConfig {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            check_interval: Duration::from_secs(1),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            replay: ReplayOptions::default(),
        }
    }
}

/// Watches the marker of the live namespace under `config.prefix` until `shutdown`, and
/// rebuilds the model from the event store of `pool` when it is gone. `health` is not ready
/// while the model is incomplete, naming why.
pub async fn watch(
    pool: PgPool,
    mut redis: ConnectionManager,
    config: RebuildConfig,
    metrics: RebuildMetrics,
    health: RoleHealth,
    shutdown: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let pause = match namespace::live(&mut redis, &config.prefix).await {
            Ok(Live {
                state: ModelState::Complete,
                ..
            }) => {
                metrics.complete.set(1);
                health.ready();
                failures = 0;
                config.check_interval
            }
            Ok(Live {
                state: ModelState::Rebuilding,
                namespace,
            }) => {
                metrics.complete.set(0);
                health.not_ready(format!(
                    "the read model (namespace {namespace}) is being rebuilt from the event store"
                ));
                config.check_interval
            }
            Ok(Live {
                state: ModelState::Lost,
                namespace,
            }) => {
                metrics.complete.set(0);
                health.not_ready(format!(
                    "the read model (namespace {namespace}) has no completeness marker (Redis lost it, or it was never built); rebuilding it from the event store"
                ));
                match heal(&pool, &redis, &config, &namespace, &metrics).await {
                    Ok(()) => {
                        failures = 0;
                        Duration::ZERO
                    }
                    Err(error) => {
                        failures += 1;
                        metrics.rebuilds.with_label_values(&["failed"]).inc();
                        tracing::error!(
                            error = format!("{error:#}"),
                            attempt = failures,
                            "rebuilding the lost read model failed; retrying"
                        );
                        config.backoff.delay(failures)
                    }
                }
            }
            Err(error) => {
                failures += 1;
                health.not_ready(format!("Redis of the read model is unreachable: {error}"));
                config
                    .backoff
                    .delay(failures)
                    .min(config.check_interval * 5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Makes the lost namespace `live` complete again: marked where it is when the store has no
/// events (a first start: there is nothing to rebuild from), rebuilt into a new namespace
/// otherwise.
async fn heal(
    pool: &PgPool,
    redis: &ConnectionManager,
    config: &RebuildConfig,
    live: &str,
    metrics: &RebuildMetrics,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut connection = redis.clone();
    if !replay::has_job_events(pool).await? {
        let mut lock = replay::rebuild_lock(&connection, &config.prefix);
        let marked = lock
            .run(|epoch| namespace::mark(&mut connection, live, epoch, 0))
            .await?;
        if let Held::Done(marked) = marked {
            marked?;
            metrics.rebuilds.with_label_values(&["marked"]).inc();
            tracing::info!(
                namespace = live,
                "the event store is empty: read model marked complete"
            );
        }
        return Ok(());
    }
    tracing::warn!(
        namespace = live,
        "the read model has no completeness marker; rebuilding it from the event store"
    );
    let mode = Mode::Into {
        namespace: None,
        drop_previous: true,
    };
    let summary: Summary =
        match replay::run(pool, redis, &config.prefix, &mode, &config.replay, &Silent).await {
            Ok(summary) => summary,
            Err(error) if error.is::<RebuildRunning>() => {
                tracing::info!("another process took the rebuild lock first; waiting for it");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
    let took = started.elapsed();
    metrics.duration.observe(took.as_secs_f64());
    metrics.rebuilds.with_label_values(&["rebuilt"]).inc();
    tracing::info!(
        namespace = summary.namespace,
        previous = summary.previous.as_deref().unwrap_or_default(),
        events = summary.events + summary.caught_up_read,
        jobs = summary.jobs,
        dropped = summary.dropped.unwrap_or_default(),
        seconds = took.as_secs_f64(),
        "read model rebuilt from the event store"
    );
    Ok(())
}

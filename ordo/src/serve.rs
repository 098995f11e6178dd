//! Long-running roles: the API server, the outbox relay, and `dev`, which runs every role in
//! one process. Every process serves `/metrics`: the API on its own port, other roles on
//! `--metrics-addr`.

use crate::cli::{GlobalArgs, ProjectorArgs, RelayArgs};
use anyhow::Context;
use axum::routing::get;
use ordo_command_api::{db, router, AppState};
use ordo_domain::JobServices;
use ordo_outbox_relay::RelayMetrics;
use ordo_projectors::{redis_views, ProjectorMetrics};
use prometheus::{Registry, TextEncoder};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub async fn migrate(args: &GlobalArgs) -> anyhow::Result<()> {
    db::ensure_database(&args.database_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", args.database_url))?;
    let pool = db::connect(&args.db_config())?;
    db::migrate(&pool).await.context("migrations failed")?;
    tracing::info!("migrations applied");
    Ok(())
}

pub async fn dev(
    args: &GlobalArgs,
    relay_args: Option<&RelayArgs>,
    projector_args: &ProjectorArgs,
) -> anyhow::Result<()> {
    migrate(args).await?;
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let relay = relay_args
        .map(|relay_args| spawn_relay(args, relay_args, &registry, &shutdown))
        .transpose()?;
    let projector = spawn_projector(args, projector_args, &registry, &shutdown).await?;
    let served = serve_api(args, registry, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(relay) = relay {
        relay.await?;
    }
    projector.await??;
    served
}

pub async fn api(args: &GlobalArgs) -> anyhow::Result<()> {
    serve_api(args, Registry::new(), shutdown_token()).await
}

pub async fn relay(
    args: &GlobalArgs,
    relay_args: &RelayArgs,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let relay = spawn_relay(args, relay_args, &registry, &shutdown)?;
    let (served, relayed) = tokio::join!(
        serve_metrics(metrics_addr, registry, shutdown.clone()),
        relay
    );
    relayed?;
    served
}

pub async fn projector(
    args: &GlobalArgs,
    projector_args: &ProjectorArgs,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let shutdown = shutdown_token();
    let projector = spawn_projector(args, projector_args, &registry, &shutdown).await?;
    let (served, projected) = tokio::join!(
        serve_metrics(metrics_addr, registry, shutdown.clone()),
        projector
    );
    projected??;
    served
}

/// `/metrics` and `/healthz` of a role without an API of its own.
async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = bind(addr).await?;
    let metrics = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || async move {
                TextEncoder::new()
                    .encode_to_string(&registry.gather())
                    .unwrap_or_default()
            }),
        );
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    axum::serve(listener, metrics)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn serve_api(
    args: &GlobalArgs,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = db::connect(&args.db_config())?;
    let state = AppState::with_registry(pool, args.api_config()?, JobServices::system(), registry);
    let listener = bind(args.http_addr).await?;
    tracing::info!(addr = %args.http_addr, "command API listening on http://{}", args.http_addr);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

fn spawn_relay(
    args: &GlobalArgs,
    relay_args: &RelayArgs,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let config = relay_args.config(args)?;
    // The relay's own small pool: slot management, clean-up and lag polling.
    let pool = db::connect(&db::DbConfig {
        max_connections: 4,
        ..db::DbConfig::new(&args.database_url)
    })?;
    let metrics = RelayMetrics::register(registry)?;
    Ok(tokio::spawn(ordo_outbox_relay::run(
        config,
        pool,
        metrics,
        shutdown.clone(),
    )))
}

async fn spawn_projector(
    args: &GlobalArgs,
    projector_args: &ProjectorArgs,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let config = projector_args.config(args)?;
    let redis = redis_views::connect(&args.redis_url)
        .await
        .with_context(|| format!("cannot reach Redis at {}", args.redis_url))?;
    let metrics = ProjectorMetrics::register(registry, &config.name)?;
    Ok(tokio::spawn(ordo_projectors::run(
        config,
        redis,
        metrics,
        shutdown.clone(),
    )))
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A token cancelled by Ctrl-C or SIGTERM, which every task of the process watches.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before the process exits.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! Long-running roles: the API server, and `dev`, which runs every role in one process.

use crate::cli::GlobalArgs;
use anyhow::Context;
use ordo_command_api::{db, router, AppState};
use ordo_domain::JobServices;
use tokio::net::TcpListener;

pub async fn migrate(args: &GlobalArgs) -> anyhow::Result<()> {
    db::ensure_database(&args.database_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", args.database_url))?;
    let pool = db::connect(&args.db_config())?;
    db::migrate(&pool).await.context("migrations failed")?;
    tracing::info!("migrations applied");
    Ok(())
}

pub async fn dev(args: &GlobalArgs) -> anyhow::Result<()> {
    migrate(args).await?;
    api(args).await
}

pub async fn api(args: &GlobalArgs) -> anyhow::Result<()> {
    let pool = db::connect(&args.db_config())?;
    let state = AppState::new(pool, args.api_config()?, JobServices::system());
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    tracing::info!(addr = %args.http_addr, "command API listening on http://{}", args.http_addr);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
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

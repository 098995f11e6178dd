//! Liveness, readiness and metrics.

use crate::http::{ApiError, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::Duration;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can do its job: PostgreSQL answers within a bound, and every other role of
/// the process (a projector under `ordo dev`) says it is ready; a 503 names each that is not.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(ApiError::Unavailable(format!("postgres: {e}"))),
        Err(_) => {
            return Err(ApiError::Unavailable(format!(
                "postgres: no answer within {} s",
                READINESS_TIMEOUT.as_secs()
            )))
        }
    }
    state.readiness.check().map_err(ApiError::Unavailable)?;
    Ok(Json(json!({
        "status": "ready",
        "postgres": "ok",
        "roles": state.readiness.report(),
    })))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

//! Liveness, readiness and metrics of the standalone query service (`ordo dev` serves the
//! command API's instead).

use crate::read_model::ReadModel;
use crate::{QueryError, QueryState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordo_common::http::render_metrics;
use prometheus::Registry;
use serde_json::{json, Value};

pub fn routes(state: QueryState, registry: Registry) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render_metrics(&registry),
                )
                    .into_response()
            }),
        )
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can do its job: Redis answers within the configured bound.
async fn readyz(State(state): State<QueryState>) -> Result<Response, QueryError> {
    ReadModel::ping(&state).await?;
    Ok(Json(json!({"status": "ready", "redis": "ok"})).into_response())
}

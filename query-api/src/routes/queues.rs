//! Queue depths from the dispatch sets the projector keeps per (tenant, queue).

use crate::extract::{QueryParams, Tenant};
use crate::read_model::ReadModel;
use crate::{QueryError, QueryState};
use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<QueryState> {
    Router::new().route("/api/v1/queues", get(queues))
}

/// `GET /api/v1/queues`: every queue the tenant has used, by name, with the number of jobs
/// `ready` to claim, `scheduled` (delayed starts and retry backoffs) and `running` (leased).
async fn queues(
    State(state): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, QueryError> {
    QueryParams::parse(query.as_deref(), &[])?;
    let model = ReadModel::open(&state).await?;
    let names = model.queues(tenant.as_str()).await?;
    let depths = model.queue_depths(tenant.as_str(), &names).await?;
    let queues: Vec<Value> = names
        .iter()
        .zip(depths)
        .map(|(name, (ready, scheduled, running))| {
            json!({"queue": name, "ready": ready, "scheduled": scheduled, "running": running})
        })
        .collect();
    Ok(Json(json!({ "queues": queues })))
}

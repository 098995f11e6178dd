//! Log search: `GET /api/v1/logs?q=…` and `POST /api/v1/logs/search` with the same fields as a
//! JSON body (for queries too long for a URL).

use crate::extract::Tenant;
use crate::logs::request::SearchInput;
use crate::logs::store::Page;
use crate::{QueryError, QueryState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;

pub fn routes() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/logs", get(search_get))
        .route("/api/v1/logs/search", post(search_post))
}

async fn search_get(
    State(state): State<QueryState>,
    tenant: Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, QueryError> {
    search(&state, tenant, SearchInput::from_query(query.as_deref())?).await
}

async fn search_post(
    State(state): State<QueryState>,
    tenant: Tenant,
    body: Result<Json<SearchInput>, JsonRejection>,
) -> Result<Json<Page>, QueryError> {
    let Json(input) = body.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    search(&state, tenant, input).await
}

async fn search(
    state: &QueryState,
    Tenant(tenant): Tenant,
    input: SearchInput,
) -> Result<Json<Page>, QueryError> {
    let store = state.logs.as_ref().ok_or_else(|| {
        QueryError::Unavailable("log search is not configured on this server".into())
    })?;
    let search = input.resolve(Utc::now(), store.config().max_window)?;
    Ok(Json(store.search(tenant.as_str(), &search).await?))
}

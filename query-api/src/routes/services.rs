//! `GET /api/v1/services`: the caller's services as ClickHouse's registry knows them from their
//! logs (first and last seen; lines, errors and ingestion delay over the last 24 hours).
//! Services silent for `ORDO_SERVICE_RETIRE_DAYS` are left out.

use crate::extract::Tenant;
use crate::{QueryError, QueryState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ordo_clickhouse_store::ServiceSummary;
use serde::Serialize;

pub fn routes() -> Router<QueryState> {
    Router::new().route("/api/v1/services", get(services))
}

#[derive(Debug, Serialize)]
struct Services {
    services: Vec<Service>,
}

/// One (service, env, component) of the tenant.
#[derive(Debug, Serialize)]
struct Service {
    service: String,
    env: String,
    component: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    lines_24h: u64,
    errors_24h: u64,
    /// Mean and largest time from a line's arrival to its insert, in milliseconds.
    ingestion_delay_ms_avg_24h: f64,
    ingestion_delay_ms_max_24h: u64,
}

impl From<ServiceSummary> for Service {
    fn from(s: ServiceSummary) -> Self {
        Self {
            service: s.service,
            env: s.env,
            component: s.component,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            lines_24h: s.lines_24h,
            errors_24h: s.errors_24h,
            ingestion_delay_ms_avg_24h: s.delay_ms_avg_24h,
            ingestion_delay_ms_max_24h: s.delay_ms_max_24h,
        }
    }
}

async fn services(
    State(state): State<QueryState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Services>, QueryError> {
    let store = state.logs.as_ref().ok_or_else(|| {
        QueryError::Unavailable("the service registry is not configured on this server".into())
    })?;
    let services = store.services(tenant.as_str()).await?;
    Ok(Json(Services {
        services: services.into_iter().map(Service::from).collect(),
    }))
}

//! The service registry (`services`, `service_hourly`, filled by materialized views on
//! `logs`; see migration 0004): the services seen within a number of days, with their lines,
//! error lines and ingestion delay over the last 24 hours.

use crate::{ClickHouseConfig, StoreError};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::Deserialize;

/// Days of silence after which a service is retired (`ORDO_SERVICE_RETIRE_DAYS`).
pub const DEFAULT_SERVICE_RETIRE_DAYS: u32 = 7;

/// One service of the registry.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ServiceSummary {
    pub tenant: String,
    pub env: String,
    pub service: String,
    pub component: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::micros")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime64::micros")]
    pub last_seen: DateTime<Utc>,
    /// Lines and error lines (`error`, `fatal`) that arrived in the last 24 hours.
    pub lines_24h: u64,
    pub errors_24h: u64,
    /// Over those lines: the mean and the largest time from `received_at` to the insert.
    pub delay_ms_avg_24h: f64,
    pub delay_ms_max_24h: u64,
}

/// The services of `tenant` (all tenants with `None`) seen within the last `retire_days`
/// days, by tenant, service, env and component.
pub async fn active_services(
    config: &ClickHouseConfig,
    retire_days: u32,
    tenant: Option<&str>,
) -> Result<Vec<ServiceSummary>, StoreError> {
    let sql = "SELECT s.tenant AS tenant, s.env AS env, s.service AS service, \
               s.component AS component, s.first_seen AS first_seen, s.last_seen AS last_seen, \
               h.lines AS lines_24h, h.errors AS errors_24h, \
               if(h.lines = 0, 0, h.delay_sum / h.lines) AS delay_ms_avg_24h, \
               h.delay_max AS delay_ms_max_24h \
               FROM active_services(retire_days = ?) AS s \
               LEFT JOIN ( \
                   SELECT tenant, env, service, component, sum(lines) AS lines, \
                          sum(errors) AS errors, sum(delay_ms_sum) AS delay_sum, \
                          max(delay_ms_max) AS delay_max \
                   FROM service_hourly WHERE hour >= now() - INTERVAL 1 DAY \
                   GROUP BY tenant, env, service, component \
               ) AS h USING (tenant, env, service, component) \
               WHERE ? = '' OR s.tenant = ? \
               ORDER BY tenant, service, env, component";
    let tenant = tenant.unwrap_or_default();
    config
        .bounded(
            "SELECT FROM active_services",
            config
                .client()
                .query(sql)
                .bind(retire_days)
                .bind(tenant)
                .bind(tenant)
                // Keys without hourly rows get 0, not NULL.
                .with_setting("join_use_nulls", "0")
                .fetch_all::<ServiceSummary>(),
        )
        .await
}

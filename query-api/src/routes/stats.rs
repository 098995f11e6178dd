//! Job counts of a tenant from the projector's counters hash.

use crate::extract::{QueryParams, Tenant};
use crate::read_model::ReadModel;
use crate::{QueryError, QueryState};
use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub fn routes() -> Router<QueryState> {
    Router::new().route("/api/v1/stats", get(stats))
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Jobs submitted (each is counted under its type once, at submit).
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_type: BTreeMap<String, TypeStats>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct TypeStats {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
}

/// `GET /api/v1/stats`: counts by status, by type, and by type and status; zeros left out.
async fn stats(
    State(state): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<Stats>, QueryError> {
    QueryParams::parse(query.as_deref(), &[])?;
    let model = ReadModel::open(&state).await?;
    Ok(Json(Stats::from_counts(
        model.counts(tenant.as_str()).await?,
    )))
}

impl Stats {
    /// From the fields `status:{S}`, `type:{T}` and `type:{T}/status:{S}` (a type never
    /// contains `/`).
    pub fn from_counts(counts: HashMap<String, i64>) -> Self {
        let mut stats = Stats::default();
        for (field, count) in counts {
            if count == 0 {
                continue;
            }
            if let Some(status) = field.strip_prefix("status:") {
                stats.by_status.insert(status.to_owned(), count);
            } else if let Some(rest) = field.strip_prefix("type:") {
                match rest.split_once("/status:") {
                    Some((job_type, status)) => {
                        stats
                            .by_type
                            .entry(job_type.to_owned())
                            .or_default()
                            .by_status
                            .insert(status.to_owned(), count);
                    }
                    None => {
                        stats.by_type.entry(rest.to_owned()).or_default().total = count;
                        stats.total += count;
                    }
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_by_status_and_type_without_zeros() {
        let counts: HashMap<String, i64> = [
            ("status:QUEUED", 2),
            ("status:RUNNING", 0),
            ("type:a:b", 3),
            ("type:a:b/status:QUEUED", 2),
            ("type:a:b/status:COMPLETED", 1),
            ("type:a:b/status:RUNNING", 0),
            ("type:x:status:QUEUED", 4),
            ("type:c", 1),
            ("status:COMPLETED", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let stats = serde_json::to_value(Stats::from_counts(counts)).unwrap();
        assert_eq!(
            stats,
            serde_json::json!({
                "total": 8,
                "by_status": {"COMPLETED": 1, "QUEUED": 2},
                "by_type": {
                    "a:b": {"total": 3, "by_status": {"COMPLETED": 1, "QUEUED": 2}},
                    "c": {"total": 1, "by_status": {}},
                    "x:status:QUEUED": {"total": 4, "by_status": {}}
                }
            })
        );
    }
}

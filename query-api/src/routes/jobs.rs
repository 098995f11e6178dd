//! Job views: one job (optionally waiting for a sequence, for read-your-writes) and filtered,
//! cursor-paginated lists.

use crate::cursor::Cursor;
use crate::extract::{QueryParams, Tenant};
use crate::read_model::ReadModel;
use crate::view::{self, Fields, JobView};
use crate::{QueryError, QueryState};
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use ordo_domain::spec::{JobType, Labels, QueueName, TenantId};
use ordo_domain::JobStatus;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn routes() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/jobs", get(list))
        .route("/api/v1/jobs/{id}", get(one))
}

/// Polling while a read waits for its sequence (two Redis round trips per poll, ~0.1 ms on
/// loopback): starts at 1 ms, since a projector usually catches up within milliseconds, and
/// backs off to 5 ms, which bounds the added latency to a few ms at ≤ 400 commands/s per
/// waiting request.
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(5);

/// `GET /api/v1/jobs/{id}[?min_sequence=N[&wait_ms=M]]`
async fn one(
    State(state): State<QueryState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<JobView>, QueryError> {
    let params = QueryParams::parse(query.as_deref(), &["min_sequence", "wait_ms"])?;
    let min_sequence = params.u64("min_sequence")?.unwrap_or(0);
    let wait = params
        .u64("wait_ms")?
        .map_or(state.config.default_wait, Duration::from_millis)
        .min(state.config.max_wait);
    let deadline = Instant::now() + wait;
    let mut poll = FIRST_POLL;
    loop {
        // Resolved on every poll: a namespace switch during the wait is followed.
        let model = ReadModel::open(&state).await?;
        let fields = model.job(&id).await?;
        let exists = !fields.is_empty();
        // Another tenant's job is answered exactly like a missing one.
        if exists && fields.get("tenant").map(String::as_str) != Some(tenant.as_str()) {
            return Err(not_found(&id));
        }
        let sequence = view::sequence(&fields);
        if exists && sequence >= min_sequence {
            return Ok(Json(JobView::from_fields(&id, fields)));
        }
        if !exists && min_sequence == 0 {
            return Err(not_found(&id));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(QueryError::NotCaughtUp {
                job_id: id,
                sequence,
                min_sequence,
            });
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        poll = (poll * 2).min(MAX_POLL);
    }
}

fn not_found(id: &str) -> QueryError {
    QueryError::NotFound(format!("job {id} not found"))
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Most index entries one list request examines. With filters the index alone cannot answer,
/// a page may come back short (even empty) with a `next_cursor`: the bound keeps every request
/// cheap however rare the matches are.
const SCAN_BUDGET: usize = 5_000;
/// Most index entries (and job hashes) fetched in one round trip.
const MAX_BATCH: usize = 1_000;
const FOREIGN_CURSOR: &str = "cursor belongs to a listing with other filters; repeat that \
                              listing's filters or start again without a cursor";

/// The filters of a list request. Each has an index; the listing walks the smallest one and
/// checks the others against each job's hash.
struct Filters {
    status: Option<JobStatus>,
    job_type: Option<JobType>,
    queue: Option<QueueName>,
    labels: Vec<(String, String)>,
}

impl Filters {
    fn parse(params: &QueryParams) -> Result<Self, QueryError> {
        let bad = |name: &str, reason: String| QueryError::BadRequest(format!("{name}: {reason}"));
        let status = params
            .single("status")?
            .map(|v| {
                JobStatus::ALL
                    .into_iter()
                    .find(|s| s.as_str() == v)
                    .ok_or_else(|| {
                        let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                        bad(
                            "status",
                            format!("must be one of {} (got {v:?})", all.join(", ")),
                        )
                    })
            })
            .transpose()?;
        let job_type = params
            .single("type")?
            .map(|v| JobType::parse(v).map_err(|e| bad("type", e.reason)))
            .transpose()?;
        let queue = params
            .single("queue")?
            .map(|v| QueueName::parse(v).map_err(|e| bad("queue", e.reason)))
            .transpose()?;
        let mut labels = Vec::new();
        for label in params.all("label") {
            let (key, value) = label
                .split_once('=')
                .ok_or_else(|| bad("label", format!("must be key=value (got {label:?})")))?;
            // The submit rules, so a label that cannot exist is a 400, not an empty list.
            Labels::parse([(key.to_owned(), value.to_owned())].into())
                .map_err(|e| bad("label", format!("{key}: {}", e.reason)))?;
            labels.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self {
            status,
            job_type,
            queue,
            labels,
        })
    }

    /// The index suffix of every filter (see `ordo_read_model::keys`); `all` without filters.
    fn indexes(&self) -> Vec<String> {
        let mut indexes: Vec<String> = self
            .status
            .map(|s| format!("status:{s}"))
            .into_iter()
            .chain(self.job_type.as_ref().map(|t| format!("type:{t}")))
            .chain(self.queue.as_ref().map(|q| format!("queue:{q}")))
            .chain(self.labels.iter().map(|(k, v)| format!("label:{k}={v}")))
            .collect();
        if indexes.is_empty() {
            indexes.push("all".into());
        }
        indexes
    }

    fn matches(&self, tenant: &TenantId, fields: &Fields) -> bool {
        let is = |name: &str, want: Option<&str>| {
            want.is_none_or(|want| fields.get(name).map(String::as_str) == Some(want))
        };
        let labels_match = || {
            let labels: serde_json::Map<String, Value> = fields
                .get("labels")
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_default();
            self.labels
                .iter()
                .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
        };
        is("tenant", Some(tenant.as_str()))
            && is("status", self.status.map(JobStatus::as_str))
            && is("type", self.job_type.as_ref().map(JobType::as_str))
            && is("queue", self.queue.as_ref().map(QueueName::as_str))
            && (self.labels.is_empty() || labels_match())
    }
}

/// `GET /api/v1/jobs?status=&type=&queue=&label=k=v&limit=&cursor=`, newest first: by submit
/// time, or by the time of entering the status when the status index is the one walked (the
/// smallest of the filters' indexes, fixed for the whole listing by the cursor).
async fn list(
    State(state): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, QueryError> {
    let params = QueryParams::parse(
        query.as_deref(),
        &["status", "type", "queue", "label", "limit", "cursor"],
    )?;
    let filters = Filters::parse(&params)?;
    let limit = match params.u64("limit")? {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(QueryError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT} (got {n})"
            )))
        }
    };
    let cursor = params.single("cursor")?.map(Cursor::decode).transpose()?;
    let indexes = filters.indexes();
    let model = ReadModel::open(&state).await?;

    let index = match &cursor {
        Some(cursor) if indexes.contains(&cursor.index) => cursor.index.clone(),
        Some(_) => return Err(QueryError::BadRequest(FOREIGN_CURSOR.into())),
        None if indexes.len() == 1 => indexes[0].clone(),
        None => {
            let sizes = model.index_sizes(tenant.as_str(), &indexes).await?;
            let smallest = (0..indexes.len()).min_by_key(|&i| sizes[i]).unwrap_or(0);
            indexes[smallest].clone()
        }
    };
    // A page and one more tells whether another page follows when every entry matches (the
    // index of the only filter); when matches turn out sparse, later windows grow.
    let mut batch = limit + 1;
    let mut upper: Option<(i64, String)> = cursor.map(|c| (c.score, c.id));
    let mut examined = 0;
    let mut page: Vec<JobView> = Vec::with_capacity(limit);
    let mut last_included: Option<(i64, String)> = None;
    let next = 'scan: loop {
        let window = model
            .scan(
                tenant.as_str(),
                &index,
                upper.as_ref().map(|(s, id)| (*s, id.as_str())),
                batch,
            )
            .await?;
        examined += window.skipped + window.jobs.len();
        for job in window.jobs {
            let matches = filters.matches(&tenant, &job.fields);
            if page.len() == limit {
                // One more match after a full page: there is a next page.
                if matches {
                    break 'scan last_included;
                }
                continue;
            }
            if matches {
                last_included = Some((job.score, job.id.clone()));
                page.push(JobView::from_fields(&job.id, job.fields));
            }
        }
        let Some(last) = window.last.filter(|_| !window.exhausted) else {
            break None;
        };
        // A full page whose window held no further match, or the budget spent: the next page
        // goes on after the last job examined.
        if page.len() == limit || examined >= SCAN_BUDGET {
            break Some(last);
        }
        upper = Some(last);
        batch = (batch * 4).clamp(batch, MAX_BATCH);
    };
    let next_cursor = next.map(|(score, id)| Cursor { index, score, id }.encode());
    Ok(Json(json!({"jobs": page, "next_cursor": next_cursor})))
}

//! The worker protocol over HTTP: what a worker says to the command API. Errors are sorted
//! into the two a worker acts on differently: [`ClientError::Refused`] (a 4xx: the server
//! decided, e.g. the attempt is no longer this worker's) and [`ClientError::Unavailable`]
//! (network, timeout, 5xx: worth another try).

use std::time::Duration;

use ordo_protocol::jobs::{BatchJobResult, BatchSubmitResponse, NewJob};
use ordo_protocol::tenant::TENANT_HEADER;
use ordo_protocol::worker::{
    AttemptReport, ClaimRequest, ClaimResponse, HeartbeatRequest, HeartbeatResponse, LogRequest,
    ReportResult, ReportsResponse,
};
use reqwest::{Client, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

/// What went wrong calling the command API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered 4xx; `detail` is its problem+json reason.
    #[error("refused ({status}): {detail}")]
    Refused { status: StatusCode, detail: String },
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A client of one command API for one tenant.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: Client,
    base: String,
    tenant: String,
    timeout: Duration,
}

impl ApiClient {
    /// `base` is the API's root URL (`http://127.0.0.1:8080`); every call but a long-poll
    /// claim gives up after `timeout`.
    pub fn new(base: &str, tenant: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = Client::builder()
            .user_agent(concat!("ordo-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            tenant: tenant.to_owned(),
            timeout,
        })
    }

    /// Up to `request.max_jobs` jobs, waiting up to `request.wait_ms` for the first, after the
    /// reports the request carries.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        let timeout = self.timeout + Duration::from_millis(request.wait_ms);
        self.post("/api/v1/workers/claim", request, timeout).await
    }

    /// Reports how attempts ended; one result per report, in order.
    pub async fn reports(
        &self,
        reports: &[AttemptReport],
    ) -> Result<Vec<ReportResult>, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            reports: &'a [AttemptReport],
        }
        let answer: ReportsResponse = self
            .post("/api/v1/workers/reports", &Body { reports }, self.timeout)
            .await?;
        Ok(answer.results)
    }

    pub async fn heartbeat(
        &self,
        job_id: Uuid,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.post(&job_path(job_id, "heartbeat"), request, self.timeout)
            .await
    }

    pub async fn logs(&self, job_id: Uuid, request: &LogRequest) -> Result<(), ClientError> {
        self.job_call(job_id, "logs", request).await
    }

    /// Submits up to [`ordo_protocol::jobs::MAX_BATCH_JOBS`] jobs with one request
    /// (`POST /api/v1/jobs/batch`; a handler can enqueue its follow-up jobs so). One result per
    /// job, in order: 201 created, 200 found by its idempotency key, 4xx refused with its
    /// `problem`; a refused job does not fail the call, and the others are created.
    /// [`ClientError::Unavailable`] (e.g. a 503: the store failed) means none was created.
    pub async fn submit_batch(&self, jobs: &[NewJob]) -> Result<Vec<BatchJobResult>, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            jobs: &'a [NewJob],
        }
        let answer: BatchSubmitResponse = self
            .post("/api/v1/jobs/batch", &Body { jobs }, self.timeout)
            .await?;
        Ok(answer.results)
    }

    /// `POST /api/v1/jobs/{id}/{action}`, whose answer the worker does not need.
    async fn job_call<B: Serialize>(
        &self,
        job_id: Uuid,
        action: &str,
        request: &B,
    ) -> Result<(), ClientError> {
        self.post::<_, serde_json::Value>(&job_path(job_id, action), request, self.timeout)
            .await
            .map(drop)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(TENANT_HEADER, &self.tenant)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ClientError::Unavailable(format!("POST {path}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| ClientError::Unavailable(format!("POST {path}: answer: {e}")));
        }
        let detail = problem_detail(&response.text().await.unwrap_or_default());
        if status.is_client_error() {
            Err(ClientError::Refused { status, detail })
        } else {
            Err(ClientError::Unavailable(format!(
                "POST {path}: {status}: {detail}"
            )))
        }
    }
}

fn job_path(job_id: Uuid, call: &str) -> String {
    format!("/api/v1/jobs/{job_id}/{call}")
}

/// The `detail` of a problem+json body, or the body itself.
fn problem_detail(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

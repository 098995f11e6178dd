//! Shared helpers of the black-box tests: every test gets its own scratch database on the real
//! PostgreSQL of `ORDO_DATABASE_URL` (default: the local stack) and, when it needs HTTP, its
//! own API server on an ephemeral port.
#![allow(dead_code)] // each test binary uses a different subset

use ordo_command_api::{router, ApiConfig, AppState, JobCommandBus};
use ordo_common::logs::LogSink;
use ordo_domain::spec::TenantId;
use ordo_domain::JobServices;
use ordo_read_model::{namespace, JobViews, ViewUpdate};
use ordo_testkit::http::{self, TestClient};
pub use ordo_testkit::stack::kafka_brokers;
use ordo_testkit::{TestDb, TestPrefix};
use serde_json::Value;

/// A command bus on `db` with the system clock and jitter.
pub fn bus(db: &TestDb) -> JobCommandBus {
    JobCommandBus::new(
        db.pool.clone(),
        JobServices::system(),
        ordo_command_api::CommandMetrics::unregistered(),
    )
}

/// An API server of its own, on its own database (and, for the worker protocol, its own
/// Redis key prefix).
pub struct TestApp {
    /// `get`, `post`, `post_json`, … of the test kit's client, through `Deref`.
    pub http: TestClient,
    pub state: AppState,
    pub db: TestDb,
    pub redis: Option<TestPrefix>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(ApiConfig::default()).await
    }

    pub async fn spawn_with(config: ApiConfig) -> Self {
        Self::start(config, JobServices::system(), None, None).await
    }

    /// With the worker protocol on a dispatch model of its own.
    pub async fn spawn_with_dispatch() -> Self {
        Self::spawn_with_services(JobServices::system()).await
    }

    /// With the worker protocol, and `services` (e.g. a `ManualClock`) for the bus.
    pub async fn spawn_with_services(services: JobServices) -> Self {
        let redis = Some(TestPrefix::new().await);
        Self::start(ApiConfig::default(), services, redis, None).await
    }

    /// With the worker protocol, and job log lines produced to `topic` on the local broker.
    pub async fn spawn_with_logs(topic: &str) -> Self {
        let logs = LogSink::connect(&kafka_brokers(), topic, 1)
            .await
            .expect("the broker of the local stack is reachable (run `make services`)");
        Self::start(
            ApiConfig::default(),
            JobServices::system(),
            Some(TestPrefix::new().await),
            Some(logs),
        )
        .await
    }

    async fn start(
        config: ApiConfig,
        services: JobServices,
        redis: Option<TestPrefix>,
        logs: Option<LogSink>,
    ) -> Self {
        let db = TestDb::new().await;
        let mut state = AppState::new(db.pool.clone(), config, services);
        if let Some(redis) = &redis {
            // A complete (empty) model, as the projector role marks it on a first start.
            namespace::mark(&mut redis.redis.clone(), &redis.prefix, 1, 0)
                .await
                .expect("the read model is marked complete");
            state = state.with_dispatch(
                redis.redis.clone(),
                redis.client(),
                &redis.prefix,
                tokio_util::sync::CancellationToken::new(),
            );
        }
        if let Some(logs) = logs {
            state = state.with_logs(logs);
        }
        let (url, _) = http::serve(router(state.clone())).await;
        Self {
            http: TestClient::new(url),
            state,
            db,
            redis,
        }
    }

    /// Projects the job's history into the dispatch model, as the projector would (events it
    /// already has are skipped by the sequence check).
    pub async fn project(&self, job_id: &str, tenant: &str) {
        let redis = self.redis.as_ref().expect("spawned with a dispatch model");
        let id = job_id.parse().expect("job id");
        let updates: Vec<ViewUpdate> = self
            .state
            .bus
            .history(id, &TenantId::parse(tenant).unwrap())
            .await
            .expect("history")
            .iter()
            .map(|e| ViewUpdate::of(e, &e.event().unwrap()))
            .collect();
        JobViews::new(redis.redis.clone(), &redis.prefix)
            .apply(&updates)
            .await
            .expect("projected");
    }

    /// `POST /api/v1/jobs` with a JSON body.
    pub async fn submit(&self, body: &Value) -> reqwest::Response {
        self.post("/api/v1/jobs")
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Submits `body` for the default tenant, projects the job into the dispatch model (so a
    /// claim finds it) and returns its id.
    pub async fn submit_projected(&self, body: &Value) -> String {
        let response = self.submit(body).await;
        assert_eq!(response.status(), 201);
        let answer: Value = response.json().await.expect("a JSON answer");
        let id = answer["job_id"].as_str().expect("job_id").to_owned();
        self.project(&id, "default").await;
        id
    }

    /// `GET /api/v1/jobs/{id}/events`: the job's envelopes, oldest first.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let history: Value = self
            .get(&format!("/api/v1/jobs/{id}/events"))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("history");
        history["events"].as_array().cloned().unwrap_or_default()
    }

    /// Events and outbox rows written so far: tests check that refused requests add none.
    pub async fn rows_written(&self) -> (i64, i64) {
        (
            self.db.count("SELECT count(*) FROM events").await,
            self.db.count("SELECT count(*) FROM outbox").await,
        )
    }
}

impl std::ops::Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.http
    }
}

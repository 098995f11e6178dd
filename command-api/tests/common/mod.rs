//! Shared helpers of the black-box tests: every test gets its own scratch database on the real
//! PostgreSQL of `ORDO_DATABASE_URL` (default: the local stack) and, when it needs HTTP, its
//! own API server on an ephemeral port.
#![allow(dead_code)] // each test binary uses a different subset

pub use ordo_command_api::testing::TestDb;
use ordo_command_api::{router, ApiConfig, AppState};
use ordo_domain::spec::TenantId;
use ordo_domain::{CommandMetadata, JobServices};
use serde_json::Value;

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

pub fn metadata(tenant: &str) -> CommandMetadata {
    CommandMetadata {
        tenant: tenant.to_owned(),
        actor: "test".to_owned(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: chrono::Utc::now(),
    }
}

/// An API server of its own, on its own database.
pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(ApiConfig::default()).await
    }

    pub async fn spawn_with(config: ApiConfig) -> Self {
        let db = TestDb::new().await;
        let state = AppState::new(db.pool.clone(), config, JobServices::system());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("ephemeral port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("client");
        Self {
            url,
            client,
            state,
            db,
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    /// `POST /api/v1/jobs` with a JSON body.
    pub async fn submit(&self, body: &Value) -> reqwest::Response {
        self.post("/api/v1/jobs")
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Events and outbox rows written so far: tests check that refused requests add none.
    pub async fn rows_written(&self) -> (i64, i64) {
        (
            self.db.count("SELECT count(*) FROM events").await,
            self.db.count("SELECT count(*) FROM outbox").await,
        )
    }
}

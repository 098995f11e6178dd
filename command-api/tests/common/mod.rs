//! Shared helpers of the black-box tests: every test gets its own scratch database on the real
//! PostgreSQL of `ORDO_DATABASE_URL` (default: the local stack) and, when it needs HTTP, its
//! own API server on an ephemeral port.
#![allow(dead_code)] // each test binary uses a different subset

use ordo_command_api::db::{self, DbConfig};
use ordo_command_api::{router, ApiConfig, AppState};
use ordo_domain::spec::TenantId;
use ordo_domain::{CommandMetadata, JobServices};
use serde_json::Value;
use sqlx::PgPool;

pub fn base_database_url() -> String {
    std::env::var("ORDO_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/ordo".to_owned())
}

/// A migrated database that only this test uses; dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
        let url = db::scratch_database(&base_database_url(), &name)
            .await
            .expect("PostgreSQL of the local stack is reachable (run `make services`)");
        let pool = db::connect(&DbConfig::new(url.clone())).expect("valid url");
        Self { name, url, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Async clean-up cannot run in Drop; a short-lived thread with its own runtime can.
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(db::drop_database(&url, &name))
                .map_err(std::io::Error::other)
        })
        .join();
    }
}

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

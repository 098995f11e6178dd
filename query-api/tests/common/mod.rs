//! Shared helpers of the black-box tests: every test runs the query API on an ephemeral port
//! against the real Redis of `ORDO_REDIS_URL` (default: the local stack), under a key prefix of
//! its own that is deleted (SCAN + DEL) when the test ends; views are written the way the
//! projector writes them, from domain events through `ViewUpdate` and `JobViews`.
#![allow(dead_code)] // each test binary uses a different subset

use chrono::{DateTime, Utc};
use ordo_domain::{JobEvent, JobSpec};
use ordo_query_api::{QueryConfig, QueryState};
use ordo_read_model::{JobViews, ViewUpdate};
use redis::aio::ConnectionManager;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TENANT: &str = "acme";

use ordo_testkit::events::{envelopes, submitted};
use ordo_testkit::http::{client, serve};
pub use ordo_testkit::stack::redis_url;
pub use ordo_testkit::TestPrefix;

pub async fn connect(url: &str) -> ConnectionManager {
    ordo_read_model::connect(url)
        .await
        .expect("Redis of the local stack is reachable (run `make services`)")
}

/// A query API of its own, over its own key prefix.
pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub prefix: String,
    pub redis: ConnectionManager,
    server: tokio::task::JoinHandle<()>,
    /// Deletes the prefix's keys when the test ends.
    _keys: TestPrefix,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// With settings changed by `configure` (the prefix is set already).
    pub async fn spawn_with(configure: impl FnOnce(&mut QueryConfig)) -> Self {
        let redis = connect(&redis_url()).await;
        Self::spawn_on(redis.clone(), redis, configure).await
    }

    /// The API reads through `api_redis`; the test writes through `redis`.
    pub async fn spawn_on(
        api_redis: ConnectionManager,
        redis: ConnectionManager,
        configure: impl FnOnce(&mut QueryConfig),
    ) -> Self {
        let keys = TestPrefix::new().await;
        let prefix = keys.prefix.clone();
        let mut config = QueryConfig {
            prefix: prefix.clone(),
            ..QueryConfig::default()
        };
        configure(&mut config);
        let app = ordo_query_api::app(
            QueryState::new(api_redis, config),
            prometheus::Registry::new(),
        )
        .expect("fresh registry");
        let (url, server) = serve(app).await;
        Self {
            url,
            client: client(),
            prefix,
            redis,
            server,
            _keys: keys,
        }
    }

    /// `GET path` as tenant [`TENANT`].
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.get_as(TENANT, path)
    }

    pub fn get_as(&self, tenant: &str, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.url))
            .header("x-ordo-tenant", tenant)
    }

    /// Writes the submit of job `id` at `at` into the live namespace.
    pub async fn submit(&self, id: &str, spec: JobSpec, at: DateTime<Utc>) {
        self.apply(&updates(id, TENANT, at, vec![submitted(spec, at)]))
            .await;
    }

    /// Writes `updates` into the live namespace (the prefix, until a switch).
    pub async fn apply(&self, updates: &[ViewUpdate]) {
        self.apply_in(&self.prefix.clone(), updates).await;
    }

    pub async fn apply_in(&self, namespace: &str, updates: &[ViewUpdate]) {
        let outcomes = JobViews::new(self.redis.clone(), namespace)
            .apply(updates)
            .await
            .expect("views applied");
        assert!(
            outcomes
                .iter()
                .all(|o| *o == ordo_read_model::ApplyOutcome::Applied),
            "{outcomes:?}"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Events, as the write side would publish them
// ---------------------------------------------------------------------------------------------

/// The view updates of `events` of job `id`, as the projector would make them from the
/// envelopes the write side publishes (see [`envelopes`]).
pub fn updates(
    id: &str,
    tenant: &str,
    start: DateTime<Utc>,
    events: Vec<JobEvent>,
) -> Vec<ViewUpdate> {
    envelopes(id, tenant, start, &events)
        .iter()
        .zip(&events)
        .map(|(envelope, event)| ViewUpdate::of(envelope, event))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// The ids of a list answer.
pub fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs is an array")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job_id").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A Redis that stops answering
// ---------------------------------------------------------------------------------------------

/// A TCP proxy in front of the real Redis that, while stalled, holds Redis's answers back: a
/// Redis that accepts commands and never answers.
pub struct StallingProxy {
    pub url: String,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    pub async fn start() -> Self {
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("ephemeral port");
        let url = format!("redis://{}", listener.local_addr().expect("bound"));
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("upstream Redis");
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, stalled }
    }

    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
}

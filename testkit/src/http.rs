//! Serving a router for a test, and asserting on its answers.

use reqwest::header::CONTENT_TYPE;
use reqwest::Response;
use serde_json::Value;
use std::time::Duration;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A router served on an ephemeral port of 127.0.0.1 until the handle is aborted or the
/// test's runtime ends; answers its base URL.
pub async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("ephemeral port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    (url, server)
}

/// A client whose every request gives up after 20 s (a hung server fails the test).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub async fn send(request: reqwest::RequestBuilder) -> Response {
    request.send().await.expect("request sent")
}

pub fn content_type(resp: &Response) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Asserts a JSON answer with `status` and returns its body.
pub async fn success(resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ct = content_type(&resp);
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    serde_json::from_str(&text).expect("body is JSON")
}

/// Asserts a problem+json answer with `status` and returns its document, after checking the
/// members every problem has (`type` under `/problems/`, `status`, a non-empty `detail`).
pub async fn problem(resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ct = content_type(&resp);
    let text = resp.text().await.expect("problem body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert_eq!(ct, PROBLEM_JSON, "content type of a {status}; body: {text}");
    let body: Value = serde_json::from_str(&text).expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    let kind = body["type"].as_str().expect("type is a string");
    assert!(kind.starts_with("/problems/"), "{body}");
    let detail = body["detail"].as_str().expect("detail is a string");
    assert!(!detail.is_empty(), "{body}");
    body
}

/// Asserts a problem of `status` and `type` `/problems/{kind}`; returns its document.
pub async fn problem_of(resp: Response, status: u16, kind: &str) -> Value {
    let body = problem(resp, status).await;
    assert_eq!(body["type"], format!("/problems/{kind}"), "{body}");
    body
}

/// A client of one running API (in the test process or a child process), default tenant.
#[derive(Clone)]
pub struct TestClient {
    pub url: String,
    pub client: reqwest::Client,
}

impl TestClient {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: client(),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    /// `GET path`: the JSON answer, whatever the status.
    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let resp = send(self.get("/metrics")).await;
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.expect("metrics text")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        send(self.get(path))
            .await
            .json()
            .await
            .expect("a JSON answer")
    }

    /// `POST path` with a JSON body: the status and the JSON answer (null if none).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = send(self.post(path).json(body)).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with a JSON body; the answer must be a success, and is returned.
    pub async fn post_ok(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.post_json(path, body).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {answer}"
        );
        answer
    }

    /// Submits `job` (`POST /api/v1/jobs`, which must succeed) and returns its id.
    pub async fn submit_job(&self, job: &Value) -> String {
        let answer = self.post_ok("/api/v1/jobs", job).await;
        answer["job_id"].as_str().expect("job_id").to_owned()
    }

    /// The job's view once it has `status`; panics after `timeout` with the last view.
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let started = std::time::Instant::now();
        loop {
            let view = self.get_json(&format!("/api/v1/jobs/{id}")).await;
            if view["status"] == status {
                return view;
            }
            assert!(
                started.elapsed() < timeout,
                "job {id} not {status} within {timeout:?}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

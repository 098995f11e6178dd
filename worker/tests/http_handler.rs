//! The `http` built-in against a real local server on an ephemeral port, run through
//! `Handlers::run` as the worker runs it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use ordo_worker::builtin::MAX_BODY_BYTES;
use ordo_worker::{AttemptOutcome, Handlers, JobContext, JobFailure};
use serde_json::{json, Value};
use uuid::Uuid;

async fn echo(method: Method, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    Json(json!({
        "method": method.as_str(),
        "content_type": header("content-type"),
        "x_one": header("x-one"),
        "authorization": header("authorization"),
        "body": String::from_utf8(body.to_vec()).unwrap(),
    }))
}

async fn status(Path(code): Path<u16>) -> impl IntoResponse {
    (
        StatusCode::from_u16(code).unwrap(),
        format!("status {code} from the server"),
    )
}

async fn server() -> String {
    let app = Router::new()
        .route(
            "/json",
            get(|| async { Json(json!({"hello": "world", "n": [1, 2]})) }),
        )
        .route("/text", get(|| async { "plain text" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route("/big", get(|| async { "é".repeat(MAX_BODY_BYTES) }))
        .route("/echo", any(echo))
        .route("/status/{code}", any(status))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

fn job(payload: Value, timeout: Duration) -> JobContext {
    JobContext::new(Uuid::now_v7(), "http", payload, timeout)
}

async fn call(payload: Value) -> AttemptOutcome {
    Handlers::builtin()
        .run(job(payload, Duration::from_secs(5)), None)
        .await
}

fn failure(outcome: AttemptOutcome) -> JobFailure {
    match outcome {
        AttemptOutcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_2xx_succeeds_with_the_status_and_the_parsed_or_text_body() {
    let base = server().await;
    assert_eq!(
        call(json!({"url": format!("{base}/json")})).await,
        AttemptOutcome::Completed(json!({"status": 200, "body": {"hello": "world", "n": [1, 2]}}))
    );
    assert_eq!(
        call(json!({"url": format!("{base}/text")})).await,
        AttemptOutcome::Completed(json!({"status": 200, "body": "plain text"}))
    );
    assert_eq!(
        call(json!({"url": format!("{base}/empty")})).await,
        AttemptOutcome::Completed(json!({"status": 204, "body": ""}))
    );
}

#[tokio::test]
async fn a_large_body_is_cut_and_marked_truncated() {
    let base = server().await;
    let AttemptOutcome::Completed(result) = call(json!({"url": format!("{base}/big")})).await
    else {
        panic!("expected a result");
    };
    assert_eq!(result["truncated"], json!(true));
    let body = result["body"].as_str().unwrap();
    // Two bytes per character: the cut at an even byte count leaves whole characters only.
    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert!(body.chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn headers_and_body_are_sent_as_given() {
    let base = server().await;
    let url = format!("{base}/echo");
    let AttemptOutcome::Completed(result) = call(json!({
        "url": url,
        "method": "put",
        "headers": {"X-One": "1", "Authorization": "Bearer t"},
        "body": {"a": [1, "two"]},
    }))
    .await
    else {
        panic!("expected a result");
    };
    assert_eq!(
        result,
        json!({"status": 200, "body": {
            "method": "PUT",
            "content_type": "application/json",
            "x_one": "1",
            "authorization": "Bearer t",
            "body": r#"{"a":[1,"two"]}"#,
        }})
    );

    // A string body is sent as is; a body without a method is a POST; a content type given
    // in the headers wins.
    let AttemptOutcome::Completed(result) = call(json!({
        "url": url,
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "body": "a=1&b=2",
    }))
    .await
    else {
        panic!("expected a result");
    };
    assert_eq!(result["body"]["method"], "POST");
    assert_eq!(
        result["body"]["content_type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(result["body"]["body"], "a=1&b=2");

    let AttemptOutcome::Completed(result) = call(json!({"url": url, "body": "hi"})).await else {
        panic!("expected a result");
    };
    assert_eq!(result["body"]["content_type"], "text/plain; charset=utf-8");

    let AttemptOutcome::Completed(result) = call(json!({"url": url})).await else {
        panic!("expected a result");
    };
    assert_eq!(result["body"]["method"], "GET");
    assert_eq!(result["body"]["content_type"], Value::Null);
}

#[tokio::test]
async fn a_4xx_is_permanent_and_a_5xx_retryable_with_the_body_in_the_message() {
    let base = server().await;
    for (code, retryable) in [
        (400, false),
        (404, false),
        (422, false),
        (408, true),
        (429, true),
        (500, true),
        (503, true),
    ] {
        let failure =
            failure(call(json!({"url": format!("{base}/status/{code}?token=secret")})).await);
        assert_eq!(failure.retryable, retryable, "{code}: {failure:?}");
        let reason = StatusCode::from_u16(code)
            .unwrap()
            .canonical_reason()
            .unwrap();
        assert_eq!(
            failure.error,
            format!("http: GET {base}/status/{code} answered {code} {reason}: status {code} from the server")
        );
        assert!(!failure.error.contains("secret"));
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let failure =
        failure(call(json!({"url": format!("http://{addr}/x"), "method": "DELETE"})).await);
    assert!(failure.retryable, "{failure:?}");
    assert!(
        failure
            .error
            .starts_with(&format!("http: DELETE http://{addr}/x: ")),
        "{}",
        failure.error
    );
    assert!(
        failure.error.to_lowercase().contains("connect"),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out_retryably() {
    let base = server().await;
    let url = format!("{base}/slow");
    let timeout = Duration::from_millis(300);

    // Through the runner: whichever of its timer and the request's fires first.
    let started = Instant::now();
    let failure = failure(
        Handlers::builtin()
            .run(job(json!({"url": url}), timeout), None)
            .await,
    );
    assert!(failure.retryable);
    assert!(
        failure.error.ends_with("timed out after 0.3 s"),
        "{}",
        failure.error
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The handler alone applies the job's timeout to the request.
    let started = Instant::now();
    let http = ordo_worker::builtin::Http::new();
    let result = ordo_worker::JobHandler::run(&http, &job(json!({"url": url}), timeout)).await;
    assert_eq!(
        result,
        Err(JobFailure::retryable(format!(
            "http: GET {url} timed out after 0.3 s"
        )))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cancellation_abandons_the_call_promptly() {
    let base = server().await;
    let job = job(
        json!({"url": format!("{base}/slow")}),
        Duration::from_secs(60),
    );
    let cancel = job.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(
        Handlers::builtin().run(job, None).await,
        AttemptOutcome::Cancelled
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn jobs_share_one_client_and_its_pooled_connection() {
    let base = server().await;
    let handlers = Handlers::builtin();
    let mut peers = Vec::new();
    for _ in 0..5 {
        let outcome = handlers
            .run(
                job(
                    json!({"url": format!("{base}/peer")}),
                    Duration::from_secs(5),
                ),
                None,
            )
            .await;
        let AttemptOutcome::Completed(result) = outcome else {
            panic!("{outcome:?}")
        };
        peers.push(result["body"].as_str().unwrap().to_owned());
    }
    peers.dedup();
    assert_eq!(
        peers.len(),
        1,
        "one connection for sequential calls: {peers:?}"
    );
}

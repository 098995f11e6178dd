//! The command and query APIs on one port, as `ordo dev` serves them: both route sets merged,
//! then one set of fallbacks and HTTP metrics added by `ordo_common::http::finish`.

mod common;

use chrono::Utc;
use common::*;
use ordo_command_api::{ApiConfig, AppState};
use ordo_domain::JobServices;
use ordo_query_api::{QueryConfig, QueryState};
use ordo_testkit::events::{spec, submitted};
use ordo_testkit::http::{client, problem_of, send, serve, success};

#[tokio::test]
async fn one_port_serves_both_apis_with_one_set_of_fallbacks_and_metrics() {
    let registry = prometheus::Registry::new();
    // Never connected: the requests below stop before the command API needs its database.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://postgres@127.0.0.1:1/unused")
        .expect("valid url");
    let commands = AppState::with_registry(
        pool,
        ApiConfig::default(),
        JobServices::system(),
        registry.clone(),
    );
    let keys = TestPrefix::new().await;
    let (redis, prefix) = (keys.redis.clone(), keys.prefix.clone());
    let queries = QueryState::new(
        redis.clone(),
        QueryConfig {
            prefix: prefix.clone(),
            ..QueryConfig::default()
        },
    );
    let http = commands.metrics.http().clone();
    let app = ordo_common::http::finish(
        ordo_command_api::http::api_routes(commands).merge(ordo_query_api::routes(queries)),
        http,
    );
    let (url, server) = serve(app).await;
    let client = client();
    let get = |path: &str| {
        client
            .get(format!("{url}{path}"))
            .header("x-ordo-tenant", TENANT)
    };

    let start = Utc::now();
    let outcomes = ordo_read_model::JobViews::new(redis, &prefix)
        .apply(&updates(
            "job-1",
            TENANT,
            start,
            vec![submitted(spec(TENANT, "a.run", "q", &[]), start)],
        ))
        .await
        .expect("applied");
    assert_eq!(outcomes.len(), 1);

    // Query routes, including GET on the path where the command API takes POST.
    let view = success(send(get("/api/v1/jobs/job-1")).await, 200).await;
    assert_eq!(view["status"], "QUEUED");
    let page = success(send(get("/api/v1/jobs")).await, 200).await;
    assert_eq!(ids(&page), ["job-1"]);
    // A command route: refused before it reaches the database.
    let resp = send(
        client
            .post(format!("{url}/api/v1/jobs"))
            .header("content-type", "text/plain")
            .body("x"),
    )
    .await;
    problem_of(resp, 415, "unsupported-media-type").await;
    // One set of fallbacks for both.
    problem_of(send(get("/nope")).await, 404, "not-found").await;
    let resp = send(client.delete(format!("{url}/api/v1/jobs"))).await;
    problem_of(resp, 405, "method-not-allowed").await;
    let resp = send(client.post(format!("{url}/api/v1/queues"))).await;
    problem_of(resp, 405, "method-not-allowed").await;

    let text = send(get("/metrics")).await.text().await.unwrap();
    for expected in [
        r#"ordo_http_requests_total{method="GET",route="/api/v1/jobs/{id}",status="200"} 1"#,
        r#"ordo_http_requests_total{method="GET",route="/api/v1/jobs",status="200"} 1"#,
        r#"ordo_http_requests_total{method="POST",route="/api/v1/jobs",status="415"} 1"#,
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
    server.abort();
}

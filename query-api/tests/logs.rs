//! Log search against the local stack's ClickHouse: lines inserted with `LogRow` into a test
//! database of their own, searched over HTTP through the query API: every form of the query
//! language, the plain filters, pagination while lines arrive, tenant isolation, errors.

#[path = "../../clickhouse-store/tests/common/mod.rs"]
mod clickhouse_db;

use chrono::{DateTime, Duration, Utc};
use clickhouse_db::TestDatabase;
use ordo_clickhouse_store::{severity_number, ClickHouseConfig, LogRow};
use ordo_query_api::logs::LogSearchConfig;
use ordo_query_api::{QueryConfig, QueryState};
use ordo_testkit::http::{client, problem_of, send, serve, success};
use ordo_testkit::stack::redis_url;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

const TENANT: &str = "acme";
const LOGS: &str = "/api/v1/logs";

struct LogApp {
    url: String,
    client: reqwest::Client,
    db: Option<TestDatabase>,
}

impl LogApp {
    /// A query API searching a fresh, migrated test database.
    async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// With settings changed by `configure`.
    async fn spawn_with(configure: impl FnOnce(&mut LogSearchConfig)) -> Self {
        let db = TestDatabase::new();
        ordo_clickhouse_store::migrate(&db.config)
            .await
            .expect("ClickHouse of the local stack answers (run `make services`)");
        let mut config = LogSearchConfig::new(db.config.clone());
        configure(&mut config);
        let mut app = Self::on(config).await;
        app.db = Some(db);
        app
    }

    async fn on(config: LogSearchConfig) -> Self {
        let redis = ordo_read_model::connect(&redis_url())
            .await
            .expect("Redis of the local stack is reachable");
        let state = QueryState::new(redis, QueryConfig::default()).with_logs(config);
        let app = ordo_query_api::app(state, prometheus::Registry::new()).expect("registry");
        let (url, _server) = serve(app).await;
        Self {
            url,
            client: client(),
            db: None,
        }
    }

    async fn insert(&self, rows: &[LogRow]) {
        let config = &self.db.as_ref().expect("a test database").config;
        let mut insert = config.client().insert::<LogRow>("logs").await.unwrap();
        for row in rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    fn get(&self, params: &[(&str, &str)], tenant: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{LOGS}", self.url))
            .query(params)
            .header("X-Ordo-Tenant", tenant)
    }

    async fn search(&self, params: &[(&str, &str)]) -> Value {
        success(send(self.get(params, TENANT)).await, 200).await
    }

    /// The messages of the lines `q` finds, newest first.
    async fn messages(&self, q: &str) -> Vec<String> {
        let page = self.search(&[("q", q)]).await;
        page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn line(tenant: &str, ts: DateTime<Utc>, service: &str, level: &str, message: &str) -> LogRow {
    LogRow {
        tenant: tenant.into(),
        ts,
        service: service.into(),
        env: "prod".into(),
        host: "node-1".into(),
        component: String::new(),
        level: level.into(),
        severity_number: severity_number(level).unwrap(),
        message: message.into(),
        attributes: BTreeMap::new(),
        job_id: None,
        attempt: 0,
        worker_id: String::new(),
        trace_id: String::new(),
        span_id: String::new(),
        received_at: ts,
        kafka_partition: -1,
        kafka_offset: -1,
    }
}

const JOB: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// One line per form of the language, a second apart, the first the newest.
async fn corpus(app: &LogApp) {
    let now = Utc::now();
    let at = |i: i64| now - Duration::seconds(i);
    let mut job = line(TENANT, at(6), "job", "info", &format!("job {JOB} started"));
    job.job_id = Some(Uuid::parse_str(JOB).unwrap());
    job.attributes = BTreeMap::from([("http.status".into(), "500".into())]);
    job.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    app.insert(&[
        line(
            TENANT,
            at(1),
            "api",
            "error",
            "Connection refused by db-primary",
        ),
        line(TENANT, at(2), "api", "warn", "refused connection, retrying"),
        line(
            TENANT,
            at(3),
            "worker",
            "info",
            "Grüße aus Köln: 日本語 ログ",
        ),
        line(TENANT, at(4), "worker", "debug", "cache warmed in 12ms"),
        line(TENANT, at(5), "api", "fatal", "Timeout waiting for lease"),
        job,
        line(
            "other",
            at(1),
            "api",
            "error",
            "Connection refused elsewhere",
        ),
    ])
    .await;
}

#[tokio::test]
async fn the_query_language_finds_what_it_says() {
    let app = LogApp::spawn().await;
    corpus(&app).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "Connection refused by db-primary",
                "refused connection, retrying",
                "Grüße aus Köln: 日本語 ログ",
                "cache warmed in 12ms",
                "Timeout waiting for lease",
            ],
        ),
        (
            "REFUSED connection",
            &[
                "Connection refused by db-primary",
                "refused connection, retrying",
            ],
        ),
        (
            "\"connection refused\"",
            &["Connection refused by db-primary"],
        ),
        ("db-primary", &["Connection refused by db-primary"]),
        ("primary-db", &[]),
        (JOB, &[]),
        (
            "timeout OR cache",
            &["cache warmed in 12ms", "Timeout waiting for lease"],
        ),
        ("refused -retrying", &["Connection refused by db-primary"]),
        ("refused NOT (retrying OR db)", &[]),
        (
            "conn*",
            &[
                "Connection refused by db-primary",
                "refused connection, retrying",
            ],
        ),
        ("db-pri*", &["Connection refused by db-primary"]),
        ("grüße", &["Grüße aus Köln: 日本語 ログ"]),
        ("\"日本語 ログ\"", &["Grüße aus Köln: 日本語 ログ"]),
        ("köln:", &["Grüße aus Köln: 日本語 ログ"]),
        ("level:error", &["Connection refused by db-primary"]),
        (
            "level:>=warn",
            &[
                "Connection refused by db-primary",
                "refused connection, retrying",
                "Timeout waiting for lease",
            ],
        ),
        ("level:<info", &["cache warmed in 12ms"]),
        (
            "service:worker -level:debug",
            &["Grüße aus Köln: 日本語 ログ"],
        ),
        (
            "env:prod host:node-1 timeout",
            &["Timeout waiting for lease"],
        ),
        ("env:staging", &[]),
        ("nothing-like-this", &[]),
    ];
    for (q, expected) in cases {
        let found = app.messages(q).await;
        // The job line is outside the default sort only by its service; check it apart.
        let found: Vec<&str> = found
            .iter()
            .map(String::as_str)
            .filter(|m| !m.starts_with("job "))
            .collect();
        assert_eq!(&found, expected, "q={q:?}");
    }
    let job_line = format!("job {JOB} started");
    for q in [
        format!("\"{JOB}\""),
        format!("job:{JOB}"),
        "attr.http.status:500".into(),
        "trace:4BF92F3577B34DA6A3CE929D0E0E4736".into(),
        "service:job started".into(),
    ] {
        assert_eq!(app.messages(&q).await, [job_line.as_str()], "q={q:?}");
    }
    // The plain parameters and their aliases.
    let page = app
        .search(&[("source", "api"), ("level", ">=error"), ("since", "1h")])
        .await;
    let messages: Vec<&str> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "Connection refused by db-primary",
            "Timeout waiting for lease"
        ]
    );
    let page = app.search(&[("job_id", JOB)]).await;
    let line = &page["lines"][0];
    assert_eq!(line["job_id"], JOB);
    assert_eq!(line["attributes"], json!({"http.status": "500"}));
    assert_eq!(line["service"], "job");
    assert_eq!(line["env"], "prod");
    assert!(DateTime::parse_from_rfc3339(line["ts"].as_str().unwrap()).is_ok());
    assert_eq!(page["next_cursor"], Value::Null);
    // A window in the past finds nothing.
    let page = app.search(&[("to", "2020-01-01T00:00:00Z")]).await;
    assert_eq!(page["lines"], json!([]));
}

#[tokio::test]
async fn post_takes_the_same_fields_as_json() {
    let app = LogApp::spawn().await;
    corpus(&app).await;
    let resp = app
        .client
        .post(format!("{}{LOGS}/search", app.url))
        .header("X-Ordo-Tenant", TENANT)
        .json(&json!({"q": "refused", "source": "api", "limit": 1}))
        .send()
        .await
        .unwrap();
    let page = success(resp, 200).await;
    assert_eq!(
        page["lines"][0]["message"],
        "Connection refused by db-primary"
    );
    assert!(page["next_cursor"].is_string());
    let resp = app
        .client
        .post(format!("{}{LOGS}/search", app.url))
        .json(&json!({"qq": "x"}))
        .send()
        .await
        .unwrap();
    problem_of(resp, 400, "bad-request").await;
}

#[tokio::test]
async fn tenants_see_only_their_lines() {
    let app = LogApp::spawn().await;
    corpus(&app).await;
    let other = success(send(app.get(&[("q", "refused")], "other")).await, 200).await;
    assert_eq!(other["lines"].as_array().unwrap().len(), 1);
    assert_eq!(other["lines"][0]["message"], "Connection refused elsewhere");
    let none = success(send(app.get(&[], "nobody")).await, 200).await;
    assert_eq!(none["lines"], json!([]));
}

#[tokio::test]
async fn pages_stay_stable_while_lines_arrive() {
    let app = LogApp::spawn().await;
    let base = Utc::now() - Duration::minutes(10);
    // 25 lines, some sharing a timestamp: the tiebreaker orders them.
    let rows: Vec<LogRow> = (0..25)
        .map(|i| {
            line(
                TENANT,
                base + Duration::seconds(i / 2),
                "api",
                "info",
                &format!("line {i}"),
            )
        })
        .collect();
    app.insert(&rows).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        let mut params = vec![("limit", "10".to_owned())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = app.search(&params).await;
        seen.extend(
            page["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["message"].as_str().unwrap().to_owned()),
        );
        if page_number == 0 {
            // Newer lines arriving between pages do not shift the later ones.
            app.insert(&[line(TENANT, Utc::now(), "api", "info", "late arrival")])
                .await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "{seen:?}");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 25);
    assert!(!seen.contains(&"late arrival".to_owned()));
    assert!(seen.first().unwrap() == "line 24" || seen.first().unwrap() == "line 23");
}

#[tokio::test]
async fn a_query_that_does_not_parse_names_the_position() {
    let app = LogApp::spawn().await;
    let problem = problem_of(
        send(app.get(&[("q", "refused level:loud")], TENANT)).await,
        400,
        "invalid-query",
    )
    .await;
    assert_eq!(problem["position"], 14);
    assert!(
        problem["detail"].as_str().unwrap().contains("position 14"),
        "{problem}"
    );
    let problem = problem_of(
        send(app.get(&[("q", "(a OR b")], TENANT)).await,
        400,
        "invalid-query",
    )
    .await;
    assert_eq!(problem["position"], 0);
    problem_of(
        send(app.get(&[("limit", "5000")], TENANT)).await,
        400,
        "bad-request",
    )
    .await;
    let page = app.search(&[("from", "2020-01-01T00:00:00Z")]).await;
    assert_eq!(page["window"]["clamped"], true);
}

#[tokio::test]
async fn a_search_reading_too_many_rows_is_refused_without_opening_the_breaker() {
    let app = LogApp::spawn_with(|config| {
        config.max_rows_to_read = 2;
        config.breaker_failures = 1;
    })
    .await;
    corpus(&app).await;
    for _ in 0..2 {
        let problem = problem_of(
            send(app.get(&[("q", "")], TENANT)).await,
            400,
            "bad-request",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("more than 2 lines"),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_clickhouse_answers_503_and_the_breaker_opens() {
    // A port nothing listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config =
        LogSearchConfig::new(ClickHouseConfig::new(format!("http://127.0.0.1:{port}")));
    config.breaker_failures = 2;
    let app = LogApp::on(config).await;
    for _ in 0..2 {
        let resp = send(app.get(&[("q", "x")], TENANT)).await;
        assert_eq!(resp.headers()["retry-after"], "1");
        let problem = problem_of(resp, 503, "unavailable").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("ClickHouse at"),
            "{problem}"
        );
    }
    // The breaker opened after 2 failures: answered at once, retry after the cool-down.
    let resp = send(app.get(&[("q", "x")], TENANT)).await;
    assert_eq!(resp.headers()["retry-after"], "10");
    let problem = problem_of(resp, 503, "unavailable").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("paused"),
        "{problem}"
    );
}

fn messages_of(lines: &Value) -> Vec<&str> {
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn context_brings_the_lines_around_each_hit_from_its_service_or_job() {
    let app = LogApp::spawn().await;
    let base = Utc::now() - Duration::minutes(5);
    let at = |ms: i64| base + Duration::milliseconds(ms);
    let mut rows: Vec<LogRow> = (0..6)
        .map(|i| {
            line(
                TENANT,
                at(i * 1000),
                "api",
                "info",
                &format!("api step {i}"),
            )
        })
        .collect();
    rows[3].message = "api step 3 failed".into();
    // Another service's line in between is not context.
    rows.push(line(TENANT, at(3500), "worker", "info", "worker noise"));
    // Two jobs' lines interleaved: a job line's context is its own job's.
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for i in 0..4 {
        for (job, name) in [(a, "a"), (b, "b")] {
            let text = if i == 2 && name == "a" {
                "job a crashed".to_owned()
            } else {
                format!("job {name} line {i}")
            };
            let mut row = line(TENANT, at(10_000 + i * 100), "job", "info", &text);
            row.job_id = Some(job);
            rows.push(row);
        }
    }
    app.insert(&rows).await;
    let page = app.search(&[("q", "failed"), ("context", "2")]).await;
    let hit = &page["lines"][0];
    assert_eq!(hit["message"], "api step 3 failed");
    assert_eq!(
        messages_of(&hit["context"]["before"]),
        ["api step 1", "api step 2"]
    );
    assert_eq!(
        messages_of(&hit["context"]["after"]),
        ["api step 4", "api step 5"]
    );
    let page = app.search(&[("q", "crashed"), ("context", "5")]).await;
    let hit = &page["lines"][0];
    assert_eq!(
        messages_of(&hit["context"]["before"]),
        ["job a line 0", "job a line 1"]
    );
    assert_eq!(messages_of(&hit["context"]["after"]), ["job a line 3"]);
    // Without context, no such member.
    let page = app.search(&[("q", "crashed")]).await;
    assert!(page["lines"][0].get("context").is_none());
}

/// `GET /api/v1/services`: the registry the materialized views fill from inserted lines, the
/// caller's tenant only, with its last day's lines and errors.
#[tokio::test]
async fn services_lists_the_tenants_services_from_their_lines() {
    let app = LogApp::spawn().await;
    let now = Utc::now();
    app.insert(&[
        line(TENANT, now, "api", "info", "served"),
        line(TENANT, now, "api", "error", "failed"),
        line(TENANT, now, "billing", "warn", "slow"),
        line("globex", now, "secret", "info", "not yours"),
    ])
    .await;
    let answer = success(
        send(
            app.client
                .get(format!("{}/api/v1/services", app.url))
                .header("X-Ordo-Tenant", TENANT),
        )
        .await,
        200,
    )
    .await;
    let services: Vec<(&str, u64, u64)> = answer["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let count = |field: &str| s[field].as_u64().unwrap();
            (
                s["service"].as_str().unwrap(),
                count("lines_24h"),
                count("errors_24h"),
            )
        })
        .collect();
    assert_eq!(services, [("api", 2, 1), ("billing", 1, 0)], "{answer}");
    let first_seen = answer["services"][0]["first_seen"].as_str().unwrap();
    assert!(first_seen.parse::<DateTime<Utc>>().is_ok(), "{first_seen}");
}

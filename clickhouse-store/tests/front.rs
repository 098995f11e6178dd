//! Conformance of the local stack's ClickHouse (chDB behind scripts/clickhouse-http.py) with
//! a ClickHouse server, as the operations Ordo uses see it: the official `clickhouse` crate at
//! its defaults (LZ4-compressed inserts and answers, RowBinaryWithNamesAndTypes with schema
//! validation, query parameters, settings, the database parameter, errors), and the plain
//! HTTP interface of curl and Grafana. Against a real server these pass as well.

mod common;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use clickhouse::Row;
use common::TestDatabase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Sample {
    id: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime64::nanos")]
    at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::uuid")]
    uid: Uuid,
    #[serde(with = "clickhouse::serde::uuid::option")]
    parent: Option<Uuid>,
    note: Option<String>,
    kind: String,
    labels: BTreeMap<String, String>,
    tags: Vec<String>,
}

const SAMPLE_TABLE: &str = "CREATE TABLE samples (
    id UInt64,
    at DateTime64(9, 'UTC'),
    uid UUID,
    parent Nullable(UUID),
    note Nullable(String),
    kind LowCardinality(String),
    labels Map(String, String),
    tags Array(String)
) ENGINE = MergeTree ORDER BY id";

fn sample(id: u64) -> Sample {
    let base = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc);
    Sample {
        id,
        at: base + TimeDelta::nanoseconds(id as i64 * 1_001),
        uid: Uuid::now_v7(),
        parent: id.is_multiple_of(3).then(Uuid::new_v4),
        note: id
            .is_multiple_of(2)
            .then(|| format!("note {id} with 'quotes', tabs\tand ünïcode")),
        kind: ["alpha", "beta", "gamma"][id as usize % 3].to_owned(),
        labels: (0..id % 4)
            .map(|i| (format!("k{i}"), format!("v{id}.{i}")))
            .collect(),
        tags: (0..id % 3).map(|i| format!("t{i}")).collect(),
    }
}

async fn insert(client: &clickhouse::Client, rows: impl IntoIterator<Item = Sample>) {
    let mut insert = client.insert::<Sample>("samples").await.expect("insert");
    for row in rows {
        insert.write(&row).await.expect("write");
    }
    insert.end().await.expect("end of insert");
}

async fn table(db: &TestDatabase) -> clickhouse::Client {
    let client = db.client();
    client.query_raw(SAMPLE_TABLE).execute().await.expect("DDL");
    client
}

#[tokio::test]
async fn the_crate_inserts_and_reads_back_every_type_ordo_uses() {
    let db = TestDatabase::created().await;
    let client = table(&db).await;
    let rows: Vec<Sample> = (0..5_000).map(sample).collect();
    insert(&client, rows.clone()).await;

    let all = client
        .query("SELECT ?fields FROM samples ORDER BY id")
        .fetch_all::<Sample>()
        .await
        .unwrap();
    assert_eq!(all, rows);

    let betas = client
        .query("SELECT ?fields FROM samples WHERE kind = ? AND id < ? ORDER BY id")
        .bind("beta")
        .bind(100)
        .fetch_all::<Sample>()
        .await
        .unwrap();
    let expected: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "beta" && r.id < 100)
        .cloned()
        .collect();
    assert_eq!(betas, expected);

    let count: u64 = client
        .query("SELECT count() FROM samples WHERE has(tags, ?) AND labels['k0'] != ''")
        .bind("t1")
        .fetch_one()
        .await
        .unwrap();
    let expected = rows
        .iter()
        .filter(|r| r.tags.iter().any(|t| t == "t1") && r.labels.contains_key("k0"))
        .count();
    assert_eq!(count, expected as u64);

    let one = client
        .query("SELECT ?fields FROM samples WHERE uid = ?")
        .bind(rows[42].uid)
        .fetch_optional::<Sample>()
        .await
        .unwrap();
    assert_eq!(one.as_ref(), Some(&rows[42]));
    let none = client
        .query("SELECT ?fields FROM samples WHERE id = ?")
        .bind(u64::MAX)
        .fetch_optional::<Sample>()
        .await
        .unwrap();
    assert_eq!(none, None);

    // Server-side parameters travel as multipart/form-data.
    let kind: String = client
        .query("SELECT kind FROM samples WHERE id = {id:UInt64}")
        .param("id", 4)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kind, "beta");

    // A setting for one query (`with_option` in older versions of the crate).
    let limit: u64 = client
        .query("SELECT toUInt64(getSetting('max_result_rows'))")
        .with_setting("max_result_rows", "1234")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(limit, 1234);
    let default: u64 = client
        .query("SELECT toUInt64(getSetting('max_result_rows'))")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(default, 0, "a setting holds for its own request only");

    // The database parameter, and DDL through execute().
    client
        .query("ALTER TABLE samples ADD COLUMN IF NOT EXISTS extra UInt8 DEFAULT 7")
        .execute()
        .await
        .unwrap();
    let database: String = client
        .query("SELECT currentDatabase()")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(database, db.config.database);
}

#[tokio::test]
async fn a_bad_query_is_the_crate_error_with_the_exception_code() {
    let db = TestDatabase::created().await;
    let client = table(&db).await;
    let error = client
        .query("SELECT no_such_column FROM samples")
        .fetch_all::<u64>()
        .await
        .unwrap_err();
    let clickhouse::error::Error::BadResponse(message) = &error else {
        panic!("expected BadResponse, got {error:?}");
    };
    assert!(message.starts_with("Code: 47."), "{message}");
    assert!(message.contains("UNKNOWN_IDENTIFIER"), "{message}");

    let error = client
        .query("SELECT 1 FROM no_such_table")
        .execute()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Code: 60."), "{error}");

    // A row type that does not match the table is refused by the crate before any data.
    #[derive(Row, Serialize)]
    struct Wrong {
        id: String,
    }
    let refused = client.insert::<Wrong>("samples").await;
    assert!(
        refused.is_err(),
        "the crate validates against DESCRIBE TABLE"
    );
}

#[tokio::test]
async fn concurrent_inserts_and_queries_all_complete() {
    let db = TestDatabase::created().await;
    let client = table(&db).await;
    let (a, b, counted) = tokio::join!(
        insert(&client, (0..20_000).map(sample)),
        insert(&client, (20_000..40_000).map(sample)),
        async {
            client
                .query("SELECT count() FROM numbers(3000000) WHERE sipHash64(number) % 7 = 0")
                .fetch_one::<u64>()
                .await
        }
    );
    let ((), ()) = (a, b);
    assert!(counted.unwrap() > 0);
    let count: u64 = client
        .query("SELECT count() FROM samples")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, 40_000);
}

/// What curl, Grafana's data source and other generic clients send.
#[tokio::test]
async fn the_plain_http_interface_answers_like_clickhouse() {
    let db = TestDatabase::created().await;
    table(&db).await;
    let url = db.config.url.clone();
    let http = reqwest::Client::new();
    let ping = http.get(format!("{url}/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), "Ok.\n");

    // An INSERT's statement in the URL, its rows in the body.
    let inserted = http
        .post(&url)
        .query(&[
            ("database", db.config.database.as_str()),
            (
                "query",
                "INSERT INTO samples (id, at, uid, kind) FORMAT TabSeparated",
            ),
        ])
        .body("1\t2026-11-21 10:00:00.5\t018f0000-0000-7000-8000-000000000001\talpha\n2\t2026-11-21 10:00:01\t018f0000-0000-7000-8000-000000000002\tbeta\n")
        .send()
        .await
        .unwrap();
    assert_eq!(inserted.status(), 200, "{}", inserted.text().await.unwrap());
    // JSONEachRow inline in a POSTed statement, a blank line between its rows.
    let inserted = http
        .post(format!("{url}/?database={}", db.config.database))
        .body("INSERT INTO samples (id, at, uid, kind) FORMAT JSONEachRow\n\
               {\"id\":3,\"at\":\"2026-11-21 10:00:02\",\"uid\":\"018f0000-0000-7000-8000-000000000003\",\"kind\":\"gamma\"}\n\n\
               {\"id\":4,\"at\":\"2026-11-21 10:00:03\",\"uid\":\"018f0000-0000-7000-8000-000000000004\",\"kind\":\"delta\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(inserted.status(), 200, "{}", inserted.text().await.unwrap());

    let json: serde_json::Value = http
        .get(&url)
        .query(&[
            ("database", db.config.database.as_str()),
            (
                "query",
                "SELECT id, kind FROM samples ORDER BY id FORMAT JSON",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["rows"], 4);
    assert_eq!(
        json["data"][1],
        serde_json::json!({"id": 2, "kind": "beta"})
    );

    let tsv = http
        .post(format!("{url}/?database={}", db.config.database))
        .body("SELECT id, kind FROM samples WHERE id > {min:UInt8} ORDER BY id")
        .query(&[("param_min", "1"), ("default_format", "TabSeparated")])
        .send()
        .await
        .unwrap();
    assert_eq!(tsv.headers()["x-clickhouse-format"], "TabSeparated");
    assert!(tsv.headers().contains_key("x-clickhouse-summary"));
    assert_eq!(tsv.text().await.unwrap(), "2\tbeta\n3\tgamma\n4\tdelta\n");

    let each_row = http
        .get(&url)
        .query(&[
            ("database", db.config.database.as_str()),
            (
                "query",
                "SELECT id FROM samples WHERE id = 3 FORMAT JSONEachRow",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(each_row.text().await.unwrap(), "{\"id\":3}\n");

    let failed = http
        .get(&url)
        .query(&[("query", "SELECT * FROM no_such_database.t")])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 404);
    assert_eq!(failed.headers()["x-clickhouse-exception-code"], "81");
    assert!(failed
        .text()
        .await
        .unwrap()
        .starts_with("Code: 81. DB::Exception:"));

    // GET is read-only, as on a server.
    let refused = http
        .get(&url)
        .query(&[(
            "query",
            "CREATE TABLE default.get_made_me (a UInt8) ENGINE = Memory",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["x-clickhouse-exception-code"], "164");
}

/// A client that goes away mid-request costs its own answer only: an unfinished INSERT
/// writes nothing, and the front goes on serving.
#[tokio::test]
async fn a_client_that_disconnects_mid_request_breaks_nothing() {
    let db = TestDatabase::created().await;
    let client = table(&db).await;
    let address = db
        .config
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let database = db.config.database.clone();
    tokio::task::spawn_blocking(move || {
        // A chunked INSERT whose second row never arrives.
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        let query = "INSERT%20INTO%20samples%20(id,%20at,%20uid,%20kind)%20FORMAT%20TabSeparated";
        write!(
            socket,
            "POST /?database={database}&query={query} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        let row = "9\t2026-11-21 10:00:00\t018f0000-0000-7000-8000-000000000009\talpha\n";
        write!(socket, "{:x}\r\n{row}\r\n", row.len()).unwrap();
        socket.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(socket);

        // A query whose answer nobody waits for.
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        write!(
            socket,
            "GET /?query=SELECT%20sleep(1) HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        socket.flush().unwrap();
        drop(socket);

        // The front still answers, on a new connection.
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        write!(socket, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        assert!(answer.ends_with("Ok.\n"), "{answer}");
    })
    .await
    .unwrap();
    let count: u64 = client
        .query("SELECT count() FROM samples")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, 0, "the unfinished INSERT wrote nothing");
    insert(&client, [sample(1)]).await;
}

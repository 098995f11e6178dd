//! `ordo jobs submit` as a user runs it: the built binary posting an NDJSON file to a command
//! API served in the test process on a scratch database.

use ordo_command_api::{router, ApiConfig, AppState};
use ordo_domain::JobServices;
use ordo_testkit::TestDb;
use serde_json::Value;
use std::io::Write;

async fn api(db: &TestDb) -> String {
    let state = AppState::new(db.pool.clone(), ApiConfig::default(), JobServices::system());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    format!("http://{addr}")
}

async fn ordo_jobs_submit(url: &str, ndjson: &str, batch_size: usize) -> std::process::Output {
    let mut file = tempfile_path();
    file.1.write_all(ndjson.as_bytes()).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["jobs", "submit", "--file"])
        .arg(&file.0)
        .args(["--api-url", url, "--tenant", "acme", "--batch-size"])
        .arg(batch_size.to_string())
        .output()
        .await
        .expect("ordo runs")
}

fn tempfile_path() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("ordo-jobs-{}.ndjson", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

fn results(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON result per line"))
        .collect()
}

#[tokio::test]
async fn submits_every_line_in_batches_and_prints_a_result_per_job() {
    let db = TestDb::new().await;
    let url = api(&db).await;
    let mut ndjson = String::new();
    for n in 0..25 {
        ndjson.push_str(&format!(
            "{{\"type\": \"cli.test\", \"payload\": {{\"n\": {n}}}, \"idempotency_key\": \"k{n}\"}}\n"
        ));
        if n == 10 {
            ndjson.push('\n'); // blank lines are skipped
        }
    }
    let output = ordo_jobs_submit(&url, &ndjson, 10).await;
    assert!(output.status.success(), "{output:?}");
    let answers = results(&output);
    assert_eq!(answers.len(), 25);
    assert!(answers.iter().all(|a| a["status"] == 201), "{answers:?}");
    assert_eq!(answers[11]["line"], 13, "line numbers count the blank line");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE tenant = 'acme'")
            .await,
        25
    );

    // Again: every key exists, nothing new is created.
    let again = ordo_jobs_submit(&url, &ndjson, 1000).await;
    assert!(again.status.success(), "{again:?}");
    assert!(results(&again).iter().all(|a| a["status"] == 200));
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 25);
}

#[tokio::test]
async fn a_refused_job_fails_the_command_and_a_malformed_line_sends_nothing() {
    let db = TestDb::new().await;
    let url = api(&db).await;
    let output = ordo_jobs_submit(&url, "{\"type\": \"ok\"}\n{\"type\": \"not ok\"}\n", 1000).await;
    assert!(!output.status.success());
    let answers = results(&output);
    assert_eq!(answers[0]["status"], 201);
    assert_eq!(answers[1]["status"], 422);
    assert_eq!(answers[1]["problem"]["field"], "type");

    let output = ordo_jobs_submit(&url, "{\"type\": \"ok\"}\n{\"typ\": \"x\"}\n", 1000).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("line 2"),
        "{output:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 1);
}

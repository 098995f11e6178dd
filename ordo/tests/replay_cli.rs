//! `ordo replay` as a user runs it: the built binary against a scratch database (written
//! through the real command bus) and a Redis key prefix of the test's own.

use chrono::Utc;
use ordo_clickhouse_store::ClickHouseConfig;
use ordo_domain::spec::{JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs};
use ordo_domain::{CommandMetadata, JobSpec, RetryPolicy};
use ordo_read_model::{keys, JobViews, ViewUpdate};
use ordo_testkit::stack::redis_url;
use ordo_testkit::{TestClickHouse, TestDb, TestPrefix};
use redis::AsyncCommands;
use std::process::Output;
use uuid::Uuid;

struct Setup {
    db: TestDb,
    prefix: String,
    jobs: Vec<Uuid>,
    /// Deletes the prefix's keys when the test ends.
    keys: TestPrefix,
    /// The ClickHouse database of the job history (created by `migrated_clickhouse`).
    clickhouse: TestClickHouse,
}

impl Setup {
    /// `count` submitted jobs, projected into the live namespace (the prefix) event by event.
    async fn new(count: usize) -> Self {
        let db = TestDb::new().await;
        let bus = ordo_command_api::JobCommandBus::new(
            db.pool.clone(),
            ordo_domain::JobServices::system(),
            ordo_command_api::CommandMetrics::unregistered(),
        );
        let keys = TestPrefix::new().await;
        let prefix = keys.prefix.clone();
        let mut views = JobViews::new(keys.redis.clone(), &prefix);
        let tenant = TenantId::parse("acme").unwrap();
        let mut jobs = Vec::new();
        for n in 0..count {
            let spec = JobSpec {
                tenant: tenant.clone(),
                name: JobName::parse("cli").unwrap(),
                job_type: JobType::parse("cli.test").unwrap(),
                queue: QueueName::parse("default").unwrap(),
                payload: serde_json::json!({"n": n}),
                priority: Priority::default(),
                run_at: None,
                retry: RetryPolicy::default(),
                timeout_secs: TimeoutSecs::default(),
                labels: Labels::default(),
            };
            let metadata = CommandMetadata {
                tenant: tenant.to_string(),
                actor: "test".into(),
                correlation_id: "c".into(),
                occurred_at: Utc::now(),
            };
            let outcome = bus.submit(spec, None, metadata).await.expect("submit");
            for envelope in bus.history(outcome.job_id, &tenant).await.unwrap() {
                let update = ViewUpdate::of(&envelope, &envelope.event().unwrap());
                views.apply(&[update]).await.unwrap();
            }
            jobs.push(outcome.job_id);
        }
        Self {
            db,
            prefix,
            jobs,
            keys,
            clickhouse: TestClickHouse::new(),
        }
    }

    /// The job history's ClickHouse database, migrated.
    async fn migrated_clickhouse(&self) -> ClickHouseConfig {
        let config = ClickHouseConfig {
            database: self.clickhouse.database.clone(),
            ..ClickHouseConfig::new(&self.clickhouse.url)
        };
        ordo_clickhouse_store::migrate(&config)
            .await
            .expect("migrate");
        config
    }

    async fn ordo(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
            .arg("replay")
            .args(args)
            .env("ORDO_DATABASE_URL", &self.db.url)
            .env("ORDO_REDIS_URL", redis_url())
            .env("ORDO_REDIS_PREFIX", &self.prefix)
            .env("ORDO_CLICKHOUSE_URL", &self.clickhouse.url)
            .env("ORDO_CLICKHOUSE_DATABASE", &self.clickhouse.database)
            .env("ORDO_LOG_FORMAT", "text")
            .output()
            .await
            .expect("run ordo")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn verify_exits_1_and_lists_every_difference() {
    let setup = Setup::new(3).await;
    let verify = ["--projector", "redis-views", "--verify"];
    let clean = setup.ordo(&verify).await;
    assert!(clean.status.success(), "{}", text(&clean.stderr));
    assert!(
        text(&clean.stdout).contains("0 differences"),
        "{}",
        text(&clean.stdout)
    );

    let job = setup.jobs[1].to_string();
    let mut redis = setup.keys.redis.clone();
    let _: () = redis
        .hset(keys::job(&setup.prefix, &job), "priority", "9")
        .await
        .unwrap();
    let _: () = redis
        .hincr(keys::counts(&setup.prefix, "acme"), "type:cli.test", 1)
        .await
        .unwrap();
    let tampered = setup.ordo(&verify).await;
    assert_eq!(
        tampered.status.code(),
        Some(1),
        "{}",
        text(&tampered.stderr)
    );
    let stdout = text(&tampered.stdout);
    assert!(
        stdout.contains(&format!("job:{job} priority live=9 replayed=0")),
        "{stdout}"
    );
    assert!(
        stdout.contains("count:acme type:cli.test live=4 replayed=3"),
        "{stdout}"
    );
    assert!(stdout.contains("2 differences"), "{stdout}");
    assert!(text(&tampered.stderr).contains("differs from a replay in 2 places"));
}

#[tokio::test]
async fn a_rebuild_switches_namespaces_and_prints_a_summary() {
    let setup = Setup::new(2).await;
    let dry = setup
        .ordo(&["--projector", "redis-views", "--dry-run"])
        .await;
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("2 events of 2 jobs"),
        "{}",
        text(&dry.stdout)
    );

    let target = format!("{}.blue", setup.prefix);
    let rebuilt = setup
        .ordo(&[
            "--projector",
            "redis-views",
            "--into",
            &target,
            "--settle-ms",
            "10",
        ])
        .await;
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let stdout = text(&rebuilt.stdout);
    assert!(stdout.contains("rebuilt: 2 events of 2 jobs"), "{stdout}");
    assert!(
        stdout.contains(&format!("namespace {} is no longer live", setup.prefix)),
        "{stdout}"
    );
    // Not a terminal: plain progress lines.
    assert!(text(&rebuilt.stderr).contains("replay: 2 events to read"));
    let mut redis = setup.keys.redis.clone();
    let live: String = redis
        .get(keys::active_pointer(&setup.prefix))
        .await
        .unwrap();
    assert_eq!(live, target);
}

#[tokio::test]
async fn the_clickhouse_history_is_rebuilt_and_verified_from_the_command_line() {
    let setup = Setup::new(3).await;
    let clickhouse = setup.migrated_clickhouse().await;
    let history = ["--projector", "clickhouse-history", "--settle-ms", "10"];
    let rebuilt = setup.ordo(&history).await;
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let stdout = text(&rebuilt.stdout);
    assert!(
        stdout.contains("rebuilt: 3 events (table job_events)"),
        "{stdout}"
    );
    assert!(stdout.contains("rows written 3"), "{stdout}");

    let verify = ["--projector", "clickhouse-history", "--verify"];
    let clean = setup.ordo(&verify).await;
    assert!(clean.status.success(), "{}", text(&clean.stderr));
    assert!(text(&clean.stdout).contains("0 differences"));

    let lost = setup.jobs[0];
    clickhouse
        .client()
        .query("ALTER TABLE job_events DELETE WHERE job_id = ?")
        .bind(lost)
        .with_setting("mutations_sync", "2")
        .execute()
        .await
        .unwrap();
    let damaged = setup.ordo(&verify).await;
    assert_eq!(damaged.status.code(), Some(1), "{}", text(&damaged.stderr));
    let stdout = text(&damaged.stdout);
    assert!(
        stdout.contains(&format!("acme/{lost} #1: missing")),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 difference between job_events and the replay"),
        "{stdout}"
    );
    assert!(text(&damaged.stderr).contains("differs from a replay of the event store in 1 rows"));

    let refused = setup
        .ordo(&["--projector", "clickhouse-logs", "--verify"])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("cannot be replayed"));
}

#[tokio::test]
async fn bad_flags_are_refused_with_a_clear_message() {
    let setup = Setup::new(0).await;
    for (args, expected) in [
        (
            vec!["--projector", "redis-views", "--verify", "--into", "x"],
            "cannot be used with",
        ),
        (
            vec!["--projector", "redis-views", "--dry-run", "--verify"],
            "cannot be used with",
        ),
        (
            vec!["--projector", "redis-views", "--job", "j", "--into", "x"],
            "cannot be used with",
        ),
        (
            vec!["--projector", "clickhouse"],
            "invalid value 'clickhouse'",
        ),
        (
            vec!["--projector", "redis-views", "--since", "yesterday"],
            "expected RFC 3339",
        ),
    ] {
        let output = setup.ordo(&args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let unknown = setup
        .ordo(&[
            "--projector",
            "redis-views",
            "--job",
            &Uuid::new_v4().to_string(),
        ])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no events for job"));
}

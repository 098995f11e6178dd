//! The event store against a real PostgreSQL: optimistic concurrency, the one-to-one match of
//! events and outbox rows under concurrent load, and atomicity when the outbox write fails.

mod common;

use chrono::{Duration, Utc};
use futures::StreamExt;
use ordo_command_api::{CommandError, CommandMetrics, JobCommandBus};
use ordo_domain::spec::{JobName, JobType, Labels, Priority, QueueName, TimeoutSecs, WorkerId};
use ordo_domain::{JobCommand, JobError, JobServices, JobSpec, JobStatus, RetryPolicy};
use ordo_testkit::domain::{metadata, tenant};
use ordo_testkit::TestDb;
use rand::Rng;
use std::sync::Arc;
use uuid::Uuid;

fn bus(db: &TestDb) -> Arc<JobCommandBus> {
    Arc::new(common::bus(db))
}

fn spec(max_attempts: u32) -> JobSpec {
    JobSpec {
        tenant: tenant("default"),
        name: JobName::parse("store test").unwrap(),
        job_type: JobType::parse("test.noop").unwrap(),
        queue: QueueName::parse("default").unwrap(),
        payload: serde_json::json!({"text": "ünïcødé 🚀 \u{1}"}),
        priority: Priority::default(),
        run_at: None,
        retry: RetryPolicy {
            max_attempts,
            initial_delay_ms: 0,
            multiplier: 1.0,
            max_delay_ms: 0,
        },
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::default(),
    }
}

fn start(worker: usize, attempt: u32) -> JobCommand {
    JobCommand::Start {
        worker_id: WorkerId::parse(&format!("worker-{worker}")).unwrap(),
        attempt,
        lease_expires_at: Utc::now() + Duration::seconds(60),
    }
}

async fn submit(bus: &JobCommandBus) -> Uuid {
    bus.submit(spec(3), None, metadata("default"))
        .await
        .expect("submit")
        .job_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_concurrent_starts_exactly_one_wins() {
    let db = TestDb::new().await;
    let bus = bus(&db);
    let job = submit(&bus).await;
    let attempts = (0..32).map(|worker| {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.execute(
                job,
                &tenant("default"),
                start(worker, 1),
                metadata("default"),
            )
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut won = 0;
    for result in results {
        match result.expect("task") {
            Ok(outcome) => {
                won += 1;
                assert_eq!(outcome.status, JobStatus::Running);
                assert_eq!(outcome.sequence, 2);
            }
            // Lost the race at the primary key, or loaded the job after the winner committed.
            Err(CommandError::Conflict)
            | Err(CommandError::Rejected(JobError::InvalidTransition {
                status: JobStatus::Running,
                ..
            })) => {}
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let started = db
        .count("SELECT count(*) FROM events WHERE event_type = 'JobStarted'")
        .await;
    assert_eq!(started, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE type = 'JobStarted'")
            .await,
        1
    );
}

/// A random command for a job, with a plausible (often wrong) attempt number.
fn random_command(rng: &mut impl Rng) -> JobCommand {
    let attempt = rng.random_range(1..=3);
    match rng.random_range(0..7) {
        0 | 1 => start(rng.random_range(0..8), attempt),
        2 => JobCommand::Complete {
            attempt,
            result: serde_json::json!({"ok": true}),
        },
        3 => JobCommand::Fail {
            attempt,
            error: "boom".into(),
            retryable: rng.random_bool(0.8),
        },
        4 => JobCommand::Cancel {
            reason: "test".into(),
        },
        5 => JobCommand::Requeue,
        _ => JobCommand::EnqueueDue,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_outbox_match_one_to_one_after_1000_concurrent_commands() {
    let db = TestDb::new().await;
    let bus = bus(&db);
    let mut jobs = Vec::new();
    for _ in 0..40 {
        jobs.push(submit(&bus).await);
    }
    let commands: Vec<(Uuid, JobCommand)> = {
        let mut rng = rand::rng();
        (0..1_000)
            .map(|_| {
                (
                    jobs[rng.random_range(0..jobs.len())],
                    random_command(&mut rng),
                )
            })
            .collect()
    };
    let accepted = futures::stream::iter(commands)
        .map(|(job, command)| {
            let bus = bus.clone();
            async move {
                bus.execute(job, &tenant("default"), command, metadata("default"))
                    .await
            }
        })
        .buffer_unordered(32)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    assert!(
        accepted > 40,
        "the random mix should be partly accepted, got {accepted}"
    );

    let events = db.count("SELECT count(*) FROM events").await;
    let outbox = db.count("SELECT count(*) FROM outbox").await;
    assert_eq!(events, outbox);
    // Every event has exactly the outbox row carrying its id, key, type, sequence and tenant,
    // and that row's payload is the envelope of the event.
    let unmatched = db
        .count(
            "SELECT count(*) FROM events e FULL JOIN outbox o
               ON o.id = (e.metadata->>'event_id')::uuid
              AND o.aggregatetype = e.aggregate_type AND o.aggregateid = e.aggregate_id
              AND o.type = e.event_type AND o.sequence = e.sequence
              AND o.tenant = e.metadata->>'tenant'
              AND o.payload->'data' = e.payload->e.event_type
              AND (o.payload->>'sequence')::bigint = e.sequence
              AND o.payload->>'job_id' = e.aggregate_id
            WHERE o.id IS NULL OR e.aggregate_id IS NULL",
        )
        .await;
    assert_eq!(unmatched, 0);
    // Sequences of every job are gap-free: 1..=n.
    let gaps = db
        .count(
            "SELECT count(*) FROM (SELECT aggregate_id, max(sequence) AS n, count(*) AS c
               FROM events GROUP BY aggregate_id) s WHERE n <> c",
        )
        .await;
    assert_eq!(gaps, 0);
    assert_eq!(
        db.count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await,
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_outbox_write_rolls_the_events_back() {
    let db = TestDb::new().await;
    let bus = bus(&db);
    let job = submit(&bus).await;
    sqlx::query("ALTER TABLE outbox ADD CONSTRAINT refuse_cancel CHECK (type <> 'JobCancelled')")
        .execute(&db.pool)
        .await
        .unwrap();
    let (events_before, outbox_before) = (
        db.count("SELECT count(*) FROM events").await,
        db.count("SELECT count(*) FROM outbox").await,
    );

    // The failing command shares group-commit batches with healthy submits: they must land,
    // it must not, and none of its events may stay behind.
    let cancel = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let command = JobCommand::Cancel { reason: "x".into() };
            bus.execute(job, &tenant("default"), command, metadata("default"))
                .await
        })
    };
    let submits = (0..20).map(|_| {
        let bus = bus.clone();
        tokio::spawn(async move { bus.submit(spec(3), None, metadata("default")).await })
    });
    for submitted in futures::future::join_all(submits).await {
        submitted.unwrap().expect("healthy submits land");
    }
    let refused = cancel.await.unwrap();
    assert!(
        matches!(refused, Err(CommandError::Internal(_))),
        "{refused:?}"
    );

    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE event_type = 'JobCancelled'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM events").await,
        events_before + 20
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox").await,
        outbox_before + 20
    );
    // The job is untouched and still accepts commands.
    let outcome = bus
        .execute(job, &tenant("default"), start(1, 1), metadata("default"))
        .await
        .expect("job still usable");
    assert_eq!(outcome.sequence, 2);
}

#[tokio::test]
async fn idempotent_submits_share_one_job_per_tenant_and_key() {
    let db = TestDb::new().await;
    let bus = bus(&db);
    let first = bus
        .submit(spec(3), Some("order-42"), metadata("default"))
        .await
        .unwrap();
    let again = bus
        .submit(spec(3), Some("order-42"), metadata("default"))
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.job_id, again.job_id);
    assert_eq!(again.sequence, 1);
    assert_eq!(
        first.job_id,
        JobCommandBus::idempotent_job_id(&tenant("default"), "order-42")
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 1);
    let different = bus
        .submit(spec(5), Some("order-42"), metadata("default"))
        .await;
    assert!(matches!(different, Err(CommandError::IdempotencyMismatch)));
}

/// Two command sides on one event store (two API processes, or an API and a reaper) each start
/// from the states they wrote themselves; neither may act on a state the other moved on from.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_state_another_command_side_moved_on_from_is_reloaded() {
    let db = TestDb::new().await;
    let registry = prometheus::Registry::new();
    let metrics = CommandMetrics::register(&registry).unwrap();
    let a = JobCommandBus::new(db.pool.clone(), JobServices::system(), metrics);
    let b = common::bus(&db);
    async fn run(
        bus: &JobCommandBus,
        job: Uuid,
        command: JobCommand,
    ) -> Result<ordo_command_api::CommandOutcome, CommandError> {
        bus.execute(job, &tenant("default"), command, metadata("default"))
            .await
    }

    // Started on b, completed on a, whose cached state still says QUEUED.
    let started_elsewhere = submit(&a).await;
    run(&b, started_elsewhere, start(1, 1))
        .await
        .expect("start on b");
    let complete = JobCommand::Complete {
        attempt: 1,
        result: serde_json::json!({"ok": true}),
    };
    let completed = run(&a, started_elsewhere, complete)
        .await
        .expect("a reloads the started job and completes it");
    assert_eq!(
        (completed.status, completed.sequence),
        (JobStatus::Completed, 3)
    );

    // Cancelled on b: a must not start it from its cached QUEUED state.
    let cancelled_elsewhere = submit(&a).await;
    let cancel = JobCommand::Cancel { reason: "x".into() };
    run(&b, cancelled_elsewhere, cancel)
        .await
        .expect("cancel on b");
    let refused = run(&a, cancelled_elsewhere, start(1, 1)).await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(_))),
        "{refused:?}"
    );

    // Nobody else touched this one: a's cached state is used as is.
    let untouched = submit(&a).await;
    let started = run(&a, untouched, start(1, 1)).await.expect("start on a");
    assert_eq!(started.sequence, 2);

    let lookups = |outcome: &str| {
        let line = format!("ordo_job_cache_lookups_total{{outcome=\"{outcome}\"}} ");
        ordo_common::http::render_metrics(&registry)
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
            .unwrap_or_else(|| "0".to_owned())
    };
    assert_eq!(
        (lookups("hit"), lookups("stale"), lookups("miss")),
        ("1".to_owned(), "2".to_owned(), "0".to_owned())
    );
    let started_after_cancel = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_id = '{cancelled_elsewhere}' \
             AND event_type = 'JobStarted'"
        ))
        .await;
    assert_eq!(started_after_cancel, 0);
}

//! `replay` against a real PostgreSQL (a scratch database per test, written through the real
//! command bus, so the stored events are exactly what the write side stores) and a real Redis
//! (a key prefix per test, deleted afterwards). The "live" model of each test is built the
//! way the projector builds it: every event applied on its own through `JobViews`.

use chrono::{DateTime, Duration, Utc};
use ordo_command_api::{CommandMetrics, JobCommandBus};
use ordo_domain::spec::{
    JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs, WorkerId,
};
use ordo_domain::{CommandMetadata, JobCommand, JobServices, JobSpec, RetryPolicy};
use ordo_projectors::replay::{
    self, Difference, Mode, Progress, ReplayOptions, Scope, Silent, Summary,
};
use ordo_read_model::{keys, namespace, JobViews, ViewUpdate};
use ordo_testkit::{TestDb, TestPrefix};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde_json::json;
use std::sync::{mpsc, Mutex};
use uuid::Uuid;

/// A scratch database, the command bus on it, and a Redis key prefix of its own.
struct Fixture {
    db: TestDb,
    bus: JobCommandBus,
    redis: ConnectionManager,
    prefix: String,
    /// (job id, tenant) of every job submitted, in order.
    jobs: Vec<(Uuid, TenantId)>,
    /// Deletes the prefix's keys when the test ends.
    _keys: TestPrefix,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let bus = JobCommandBus::new(
            db.pool.clone(),
            JobServices::system(),
            CommandMetrics::unregistered(),
        );
        let keys = TestPrefix::new().await;
        Self {
            db,
            bus,
            redis: keys.redis.clone(),
            prefix: keys.prefix.clone(),
            jobs: Vec::new(),
            _keys: keys,
        }
    }

    fn metadata(tenant: &TenantId, at: DateTime<Utc>) -> CommandMetadata {
        CommandMetadata {
            tenant: tenant.to_string(),
            actor: "test".into(),
            correlation_id: Uuid::new_v4().to_string(),
            occurred_at: at,
        }
    }

    async fn submit(&mut self, n: usize, at: DateTime<Utc>) -> Uuid {
        let tenant = ["acme", "globex", "globex"][n % 3];
        let tenant = TenantId::parse(tenant).unwrap();
        let spec = JobSpec {
            tenant: tenant.clone(),
            name: JobName::parse(&format!("job {n}")).unwrap(),
            job_type: JobType::parse(["mail.send", "report.build"][n % 2]).unwrap(),
            queue: QueueName::parse(["default", "mail", "reports"][n % 3]).unwrap(),
            payload: json!({"n": n}),
            priority: Priority::parse((n % 10) as i64).unwrap(),
            run_at: (n % 7 == 6).then(|| Utc::now() + Duration::hours(1)),
            retry: RetryPolicy {
                max_attempts: 2,
                initial_delay_ms: 0,
                multiplier: 1.0,
                max_delay_ms: 0,
            },
            timeout_secs: TimeoutSecs::default(),
            labels: Labels::parse(
                [("team".to_owned(), format!("t{}", n % 2))]
                    .into_iter()
                    .collect(),
            )
            .unwrap(),
        };
        let outcome = self
            .bus
            .submit(spec, None, Self::metadata(&tenant, at))
            .await
            .expect("submit");
        self.jobs.push((outcome.job_id, tenant));
        outcome.job_id
    }

    async fn command(&self, job: Uuid, command: JobCommand, at: DateTime<Utc>) {
        let tenant = &self.jobs.iter().find(|(id, _)| *id == job).unwrap().1;
        self.bus
            .execute(job, tenant, command, Self::metadata(tenant, at))
            .await
            .expect("command");
    }

    fn start(attempt: u32) -> JobCommand {
        JobCommand::Start {
            worker_id: WorkerId::parse("w-1").unwrap(),
            attempt,
            lease_expires_at: Utc::now() + Duration::minutes(5),
        }
    }

    /// Moves job number `n` along one of several life cycles, so that every status, the
    /// dispatch sets and requeues all show up.
    async fn advance(&self, job: Uuid, n: usize, at: DateTime<Utc>) {
        let fail = |attempt| JobCommand::Fail {
            attempt,
            error: format!("boom {attempt}"),
            retryable: true,
        };
        match n % 7 {
            0 => {}
            1 => self.command(job, Self::start(1), at).await,
            2 => {
                self.command(job, Self::start(1), at).await;
                let result = json!({"ok": n});
                self.command(job, JobCommand::Complete { attempt: 1, result }, at)
                    .await;
            }
            3 => {
                self.command(job, Self::start(1), at).await;
                self.command(job, fail(1), at).await;
            }
            4 => {
                self.command(job, Self::start(1), at).await;
                self.command(job, fail(1), at).await;
                self.command(job, Self::start(2), at).await;
                self.command(job, fail(2), at).await;
                self.command(job, JobCommand::Requeue, at).await;
            }
            5 => {
                let reason = "not needed".to_owned();
                self.command(job, JobCommand::Cancel { reason }, at).await
            }
            _ => {} // delayed: PENDING
        }
    }

    /// Submits and advances `count` jobs.
    async fn workload(&mut self, count: usize, at: DateTime<Utc>) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for n in 0..count {
            let job = self.submit(n, at).await;
            self.advance(job, n, at).await;
            ids.push(job);
        }
        ids
    }

    /// Applies every job's history into `namespace` one event per call, as the projector
    /// would have.
    async fn project_one_by_one(&self, namespace: &str) {
        let mut views = JobViews::new(self.redis.clone(), namespace);
        for (job, tenant) in &self.jobs {
            for envelope in self.bus.history(*job, tenant).await.expect("history") {
                let update = ViewUpdate::of(&envelope, &envelope.event().unwrap());
                let outcome = views.apply(&[update]).await.unwrap();
                assert_eq!(outcome, vec![ordo_read_model::ApplyOutcome::Applied]);
            }
        }
    }

    /// `ordo replay` on this fixture's database and prefix, without progress output.
    async fn replay(&self, mode: &Mode, options: &ReplayOptions) -> anyhow::Result<Summary> {
        replay::run(
            &self.db.pool,
            &self.redis,
            &self.prefix,
            mode,
            options,
            &Silent,
        )
        .await
    }

    async fn differences(&self, live: &str, replayed: &str) -> Vec<Difference> {
        ordo_read_model::compare::compare(&mut self.redis.clone(), live, replayed)
            .await
            .unwrap()
    }

    async fn key_count(&self) -> usize {
        let keys: Vec<String> = self
            .redis
            .clone()
            .keys(format!("{}*", self.prefix))
            .await
            .unwrap();
        keys.len()
    }
}

fn into_new(drop_previous: bool) -> Mode {
    Mode::Into {
        namespace: None,
        drop_previous,
    }
}

fn quick() -> ReplayOptions {
    ReplayOptions {
        page_size: 7,
        batch_size: 5,
        settle: std::time::Duration::from_millis(100),
        ..ReplayOptions::default()
    }
}

#[tokio::test]
async fn a_full_replay_equals_the_model_built_event_by_event() {
    let mut f = Fixture::new().await;
    f.workload(30, Utc::now()).await;
    f.project_one_by_one(&f.prefix).await;

    let verification = replay::verify(&f.db.pool, &f.redis, &f.prefix, &quick(), &Silent)
        .await
        .unwrap();
    assert_eq!(verification.differences, vec![]);
    assert_eq!(verification.live, f.prefix);
    assert_eq!(verification.summary.jobs, 30);
    assert!(verification.summary.gaps.is_empty() && verification.summary.duplicates == 0);

    let summary = f.replay(&into_new(false), &quick()).await.unwrap();
    let events = f.db.count("SELECT count(*) FROM events").await as u64;
    assert_eq!(
        (summary.events, summary.applied, summary.jobs),
        (events, events, 30)
    );
    assert_eq!(summary.previous.as_deref(), Some(f.prefix.as_str()));
    assert!(summary.namespace.starts_with(&format!("{}.r", f.prefix)));
    let live = namespace::active(&mut f.redis.clone(), &f.prefix)
        .await
        .unwrap();
    assert_eq!(live, summary.namespace);
    assert_eq!(f.differences(&f.prefix, &summary.namespace).await, vec![]);

    // A second replay into the namespace that is now live, or one with keys, is refused.
    for target in [summary.namespace.clone(), f.prefix.clone()] {
        let mode = Mode::Into {
            namespace: Some(target),
            drop_previous: false,
        };
        let error = f.replay(&mode, &quick()).await.unwrap_err().to_string();
        assert!(
            error.contains("is the live one") || error.contains("already has keys"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn verify_lists_exactly_what_was_tampered_with() {
    let mut f = Fixture::new().await;
    let ids = f.workload(14, Utc::now()).await;
    f.project_one_by_one(&f.prefix).await;
    let mut c = f.redis.clone();
    let ns = &f.prefix;
    let completed = ids[2]; // n % 7 == 2: COMPLETED, tenant globex
    let _: () = c
        .hset(
            keys::job(ns, &completed.to_string()),
            "worker_id",
            "intruder",
        )
        .await
        .unwrap();
    let queued = ids[0]; // tenant acme
    let _: () = c
        .zrem(keys::index(ns, "acme", "all"), queued.to_string())
        .await
        .unwrap();
    let _: () = c
        .hincr(keys::counts(ns, "globex"), "status:COMPLETED", 1)
        .await
        .unwrap();

    let verification = replay::verify(&f.db.pool, &f.redis, &f.prefix, &quick(), &Silent)
        .await
        .unwrap();
    let found: Vec<String> = verification
        .differences
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        found,
        vec![
            // Of globex's jobs (n % 3 != 0), only job 2 completed.
            "count:globex status:COMPLETED live=2 replayed=1".to_owned(),
            format!(
                "idx:acme:all {queued} live=(absent) replayed={}",
                verification_score(&f, queued).await
            ),
            format!("job:{completed} worker_id live=intruder replayed=w-1"),
        ]
    );

    // With --job, only those jobs' hashes are compared.
    let scoped = ReplayOptions {
        scope: Scope::Jobs(vec![completed.to_string(), ids[1].to_string()]),
        ..quick()
    };
    let verification = replay::verify(&f.db.pool, &f.redis, &f.prefix, &scoped, &Silent)
        .await
        .unwrap();
    assert_eq!(
        verification.differences.len(),
        1,
        "{:?}",
        verification.differences
    );
    assert_eq!(verification.summary.jobs, 2);
}

/// The score a job has in its tenant's `all` index when replayed: its submit time in ms.
async fn verification_score(f: &Fixture, job: Uuid) -> String {
    let (_, tenant) = f.jobs.iter().find(|(id, _)| *id == job).unwrap();
    let history = f.bus.history(job, tenant).await.unwrap();
    history[0].occurred_at.timestamp_millis().to_string()
}

/// Signals when the main pass has counted its events, then waits until the test says go on.
struct Pause {
    started: Mutex<Option<mpsc::Sender<()>>>,
    resume: Mutex<mpsc::Receiver<()>>,
}

impl Progress for Pause {
    fn start(&self, _total: u64) {
        if let Some(started) = self.started.lock().unwrap().take() {
            started.send(()).unwrap();
            self.resume.lock().unwrap().recv().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_switches_the_pointer_and_catches_up_with_events_appended_meanwhile() {
    let mut f = Fixture::new().await;
    let ids = f.workload(10, Utc::now()).await;
    f.project_one_by_one(&f.prefix).await;
    let (started_tx, started_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let pause = Pause {
        started: Mutex::new(Some(started_tx)),
        resume: Mutex::new(resume_rx),
    };
    let options = ReplayOptions {
        settle: std::time::Duration::from_millis(300),
        ..quick()
    };
    let (pool, redis, prefix) = (f.db.pool.clone(), f.redis.clone(), f.prefix.clone());
    let replay = tokio::spawn(async move {
        replay::run(&pool, &redis, &prefix, &into_new(true), &options, &pause).await
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    // Appended after the replay fixed its last position: only the catch-up can see these.
    let new_job = f.submit(100, Utc::now()).await;
    f.command(ids[0], Fixture::start(1), Utc::now()).await; // job 0 was QUEUED
    resume_tx.send(()).unwrap();
    let summary = replay.await.unwrap().unwrap();

    assert_eq!(summary.caught_up_applied, 2, "{summary:?}");
    assert_eq!(summary.dropped.map(|n| n > 0), Some(true));
    let live = namespace::active(&mut f.redis.clone(), &f.prefix)
        .await
        .unwrap();
    assert_eq!(live, summary.namespace);
    // The previous namespace is gone; the deployment's keys (the pointer, the rebuild lock's
    // fencing counter) are not.
    let left: Vec<String> = f
        .redis
        .clone()
        .keys(format!("{}:*", f.prefix))
        .await
        .unwrap();
    assert!(left.contains(&keys::active_pointer(&f.prefix)), "{left:?}");
    assert!(
        left.iter()
            .all(|key| keys::is_deployment_key(&f.prefix, key)),
        "{left:?}"
    );
    // It was built under the rebuild lock and is marked complete.
    let live_state = namespace::live(&mut f.redis.clone(), &f.prefix)
        .await
        .unwrap();
    assert_eq!(live_state.state, namespace::ModelState::Complete);
    // The new live namespace holds every event, including the late ones.
    let expected = format!("{}.expected", f.prefix);
    f.project_one_by_one(&expected).await;
    assert_eq!(f.differences(&expected, &live).await, vec![]);
    let status: String = f
        .redis
        .clone()
        .hget(keys::job(&live, &new_job.to_string()), "status")
        .await
        .unwrap();
    assert_eq!(status, "QUEUED");
}

#[tokio::test]
async fn job_repair_fixes_corrupted_views_in_place_with_exact_counters() {
    let mut f = Fixture::new().await;
    let ids = f.workload(14, Utc::now()).await;
    f.project_one_by_one(&f.prefix).await;
    let expected = format!("{}.expected", f.prefix);
    f.project_one_by_one(&expected).await;
    let ns = f.prefix.clone();
    let mut c = f.redis.clone();
    // Job 4 (requeued, QUEUED again): its hash is gone. Job 3 (RETRYING): a lost index entry,
    // a wrong status in its hash, a stray ready entry.
    let _: () = c.del(keys::job(&ns, &ids[4].to_string())).await.unwrap();
    let tenant3 = f.jobs[3].1.to_string();
    let _: () = c
        .zrem(
            keys::index(&ns, &tenant3, "type:report.build"),
            ids[3].to_string(),
        )
        .await
        .unwrap();
    let _: () = c
        .hset(keys::job(&ns, &ids[3].to_string()), "status", "COMPLETED")
        .await
        .unwrap();
    let _: () = c
        .zadd(
            keys::dispatch(&ns, "ready", &tenant3, "default"),
            ids[3].to_string(),
            1,
        )
        .await
        .unwrap();
    assert!(!f.differences(&expected, &ns).await.is_empty());

    let options = ReplayOptions {
        scope: Scope::Jobs(vec![ids[3].to_string(), ids[4].to_string()]),
        ..quick()
    };
    let summary = f.replay(&Mode::InPlace, &options).await.unwrap();
    assert_eq!(summary.jobs, 2);
    assert_eq!(summary.applied, summary.events);
    assert!(summary.gaps.is_empty());
    assert_eq!(f.differences(&expected, &ns).await, vec![]);

    // An unknown job id is refused before anything is written.
    let options = ReplayOptions {
        scope: Scope::Jobs(vec![Uuid::new_v4().to_string()]),
        ..quick()
    };
    let error = f.replay(&Mode::InPlace, &options).await.unwrap_err();
    assert!(error.to_string().contains("no events for job"), "{error}");
}

#[tokio::test]
async fn since_repairs_the_jobs_with_an_event_at_or_after_the_time() {
    let mut f = Fixture::new().await;
    let old = Utc::now() - Duration::days(2);
    let cut = Utc::now() - Duration::days(1);
    let untouched = f.submit(0, old).await; // QUEUED, only old events
    let restarted = f.submit(3, old).await; // an old submit, a recent start
    f.command(restarted, Fixture::start(1), Utc::now()).await;
    let fresh = f.submit(6, Utc::now()).await;
    f.project_one_by_one(&f.prefix).await;
    let expected = format!("{}.expected", f.prefix);
    f.project_one_by_one(&expected).await;
    let mut c = f.redis.clone();
    for job in [untouched, restarted, fresh] {
        let _: () = c
            .hset(keys::job(&f.prefix, &job.to_string()), "name", "garbled")
            .await
            .unwrap();
    }

    let options = ReplayOptions {
        scope: Scope::Since(cut),
        ..quick()
    };
    let summary = f.replay(&Mode::InPlace, &options).await.unwrap();
    assert_eq!((summary.jobs, summary.events), (2, 3));
    let differences = f.differences(&expected, &f.prefix).await;
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].key, format!("job:{untouched}"));
}

#[tokio::test]
async fn a_dry_run_reads_everything_and_writes_nothing() {
    let mut f = Fixture::new().await;
    f.workload(8, Utc::now()).await;
    let events = f.db.count("SELECT count(*) FROM events").await as u64;
    let before = f.key_count().await;
    let summary = f.replay(&Mode::DryRun, &quick()).await.unwrap();
    assert_eq!(
        (summary.events, summary.jobs, summary.applied),
        (events, 8, 0)
    );
    assert_eq!(f.key_count().await, before);
}

#[tokio::test]
async fn undecodable_events_are_reported_and_their_jobs_skipped() {
    let mut f = Fixture::new().await;
    f.workload(3, Utc::now()).await;
    let bad = Uuid::new_v4().to_string();
    let event_id = Uuid::now_v7().to_string();
    let metadata = json!({
        "event_id": event_id, "tenant": "acme", "actor": "x", "correlation_id": "c",
        "occurred_at": "2026-01-01T00:00:00.000000Z"
    });
    for (sequence, event_type) in [(1, "JobTeleported"), (2, "JobQueued")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('job', $1, $2, $3, '1', $4, $5)",
        )
        .bind(&bad)
        .bind(sequence)
        .bind(event_type)
        .bind(json!({event_type: {"at": "2026-01-01T00:00:00Z"}}))
        .bind(&metadata)
        .execute(&f.db.pool)
        .await
        .unwrap();
    }
    let good_events = f.db.count("SELECT count(*) FROM events").await as u64 - 2;

    for mode in [Mode::DryRun, into_new(false)] {
        let summary = f.replay(&mode, &quick()).await.unwrap();
        assert_eq!(summary.undecodable.len(), 1, "{mode:?}");
        let undecodable = &summary.undecodable[0];
        assert_eq!(undecodable.job_id, bad);
        assert_eq!(undecodable.event_id.as_deref(), Some(event_id.as_str()));
        assert!(
            undecodable.reason.contains("JobTeleported"),
            "{}",
            undecodable.reason
        );
        assert_eq!(summary.skipped, 1);
        assert_eq!(summary.jobs, 4);
        if mode != Mode::DryRun {
            assert_eq!(summary.applied, good_events);
            assert!(summary.gaps.is_empty());
        }
    }
}

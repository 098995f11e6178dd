//! Property test of the `Job` aggregate: random command sequences, interleaved with random clock
//! advances, against random retry policies and jitter. After every step it checks that
//! (a) COMPLETED and CANCELLED are final: the status never changes and every command is refused;
//! (b) only a requeue leaves DEAD_LETTER;
//! (c) the attempt never exceeds the policy's max_attempts;
//! (d) a PENDING or RETRYING job never starts before it is due (run_at / backoff);
//! (e) replaying every emitted event on a fresh job rebuilds the live aggregate;
//! (f) no command leaves the job FAILED;
//! (g) a release gives back exactly the running attempt, which then runs again under its number;
//! and that a refused command leaves neither events nor a changed aggregate behind.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use ordo_domain::spec::{
    JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs, WorkerId,
};
use ordo_domain::{
    FixedJitter, Jitter, Job, JobCommand, JobError, JobEvent, JobServices, JobSpec, JobStatus,
    ManualClock, RetryPolicy,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use JobStatus::*;

/// A command in terms of the job's state at the time it is sent: `attempt_offset` 0 names the
/// right attempt (the next one for a start, the running one otherwise), anything else a stale one.
#[derive(Debug, Clone)]
enum Step {
    Submit,
    EnqueueDue,
    Start {
        attempt_offset: i64,
        lease_ms: i64,
    },
    Complete {
        attempt_offset: i64,
    },
    Fail {
        attempt_offset: i64,
        retryable: bool,
    },
    ExtendLease {
        attempt_offset: i64,
        lease_ms: i64,
    },
    ExpireLease {
        attempt_offset: i64,
    },
    Release {
        attempt_offset: i64,
    },
    Cancel,
    Requeue,
}

#[derive(Debug, Clone)]
struct Case {
    policy: RetryPolicy,
    jitter: f64,
    /// Delay of `run_at` after submission; `None` for as soon as possible.
    run_at_ms: Option<i64>,
    /// Each step advances the clock by that many milliseconds, then sends the command.
    steps: Vec<(i64, Step)>,
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u32..=5, 0u64..2_000, 1.0f64..3.0, 0u64..5_000).prop_map(
        |(max_attempts, initial_delay_ms, multiplier, extra)| {
            RetryPolicy {
                max_attempts,
                initial_delay_ms,
                multiplier,
                max_delay_ms: initial_delay_ms + extra,
            }
            .validate()
            .expect("generated policy is valid")
        },
    )
}

/// Mostly the right attempt, sometimes one off by up to 2 either way.
fn attempt_offset() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => -2i64..=2]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Submit),
        2 => Just(Step::EnqueueDue),
        5 => (attempt_offset(), 0i64..20_000)
            .prop_map(|(attempt_offset, lease_ms)| Step::Start { attempt_offset, lease_ms }),
        2 => attempt_offset().prop_map(|attempt_offset| Step::Complete { attempt_offset }),
        4 => (attempt_offset(), any::<bool>())
            .prop_map(|(attempt_offset, retryable)| Step::Fail { attempt_offset, retryable }),
        2 => (attempt_offset(), 0i64..20_000)
            .prop_map(|(attempt_offset, lease_ms)| Step::ExtendLease { attempt_offset, lease_ms }),
        3 => attempt_offset().prop_map(|attempt_offset| Step::ExpireLease { attempt_offset }),
        1 => attempt_offset().prop_map(|attempt_offset| Step::Release { attempt_offset }),
        1 => Just(Step::Cancel),
        2 => Just(Step::Requeue),
    ]
}

/// Clock advances: often none or short (to hit "not due yet" and exact boundaries), up to 10 s.
fn advance_ms() -> impl Strategy<Value = i64> {
    prop_oneof![2 => Just(0i64), 3 => 0i64..2_000, 3 => 0i64..10_000]
}

fn case() -> impl Strategy<Value = Case> {
    (
        policy(),
        0.0f64..=1.0,
        proptest::option::of(0i64..5_000),
        proptest::collection::vec((advance_ms(), step()), 0..=40),
    )
        .prop_map(|(policy, jitter, run_at_ms, steps)| Case {
            policy,
            jitter,
            run_at_ms,
            steps,
        })
}

fn spec(policy: RetryPolicy, run_at: Option<DateTime<Utc>>) -> JobSpec {
    JobSpec {
        tenant: TenantId::parse("acme").unwrap(),
        name: JobName::parse("prop").unwrap(),
        job_type: JobType::parse("prop.run").unwrap(),
        queue: QueueName::parse("default").unwrap(),
        payload: json!({}),
        priority: Priority::default(),
        run_at,
        retry: policy,
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::default(),
    }
}

fn offset(attempt: u32, by: i64) -> u32 {
    u32::try_from(i64::from(attempt) + by).unwrap_or(0)
}

fn to_command(step: &Step, job: &Job, spec: &JobSpec, now: DateTime<Utc>) -> JobCommand {
    let attempt = job.attempt();
    match *step {
        Step::Submit => JobCommand::Submit(Box::new(spec.clone())),
        Step::EnqueueDue => JobCommand::EnqueueDue,
        Step::Start {
            attempt_offset,
            lease_ms,
        } => JobCommand::Start {
            worker_id: WorkerId::parse("worker-1").unwrap(),
            attempt: offset(attempt + 1, attempt_offset),
            lease_expires_at: now + Duration::milliseconds(lease_ms),
        },
        Step::Complete { attempt_offset } => JobCommand::Complete {
            attempt: offset(attempt, attempt_offset),
            result: json!(null),
        },
        Step::Fail {
            attempt_offset,
            retryable,
        } => JobCommand::Fail {
            attempt: offset(attempt, attempt_offset),
            error: "boom".to_owned(),
            retryable,
        },
        Step::ExtendLease {
            attempt_offset,
            lease_ms,
        } => JobCommand::ExtendLease {
            attempt: offset(attempt, attempt_offset),
            lease_expires_at: now + Duration::milliseconds(lease_ms),
        },
        Step::ExpireLease { attempt_offset } => JobCommand::ExpireLease {
            attempt: offset(attempt, attempt_offset),
        },
        Step::Release { attempt_offset } => JobCommand::Release {
            attempt: offset(attempt, attempt_offset),
            reason: "prop".to_owned(),
        },
        Step::Cancel => JobCommand::Cancel {
            reason: "prop".to_owned(),
        },
        Step::Requeue => JobCommand::Requeue,
    }
}

/// Runs a future that never waits (the aggregate does no I/O and the sink's lock is uncontended).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Sends one command; on success the events it emitted.
fn handle(
    job: &mut Job,
    command: JobCommand,
    services: &JobServices,
) -> Result<Vec<JobEvent>, (JobError, Vec<JobEvent>)> {
    let sink = EventSink::<Job>::default();
    let outcome = run(job.handle(command, services, &sink));
    let events = run(sink.collect());
    outcome.map(|()| events.clone()).map_err(|e| (e, events))
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let start = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let jitter = FixedJitter(case.jitter);
    let services = JobServices::new(clock.clone(), Arc::new(jitter));
    let spec = spec(
        case.policy,
        case.run_at_ms.map(|ms| start + Duration::milliseconds(ms)),
    );
    let max_attempts = case.policy.max_attempts;

    let mut job = Job::default();
    let mut history: Vec<JobEvent> = Vec::new();
    // When the job becomes due, as the events announced it (independent of the aggregate's field).
    let mut due_at: Option<DateTime<Utc>> = None;
    let mut now = start;

    let submit = std::iter::once((0, Step::Submit));
    for (i, (advance, step)) in submit.chain(case.steps).enumerate() {
        now += Duration::milliseconds(advance);
        clock.set(now);
        let before = job.clone();
        let command = to_command(&step, &job, &spec, now);
        let described = format!(
            "step {i} at +{}ms: {command:?}",
            (now - start).num_milliseconds()
        );

        match handle(&mut job, command.clone(), &services) {
            Err((error, events)) => {
                prop_assert!(
                    events.is_empty(),
                    "{described}: refused ({error}) yet emitted {events:?}"
                );
                prop_assert_eq!(
                    &job,
                    &before,
                    "{}: refused ({}) yet changed the job",
                    described,
                    error
                );
            }
            Ok(events) => {
                prop_assert!(!events.is_empty(), "{described}: accepted without events");
                let status = job.status().expect("an accepted command leaves a job");
                // (a) COMPLETED and CANCELLED accept nothing.
                if let Some(was) = before.status() {
                    prop_assert!(
                        !was.is_terminal(),
                        "{described}: accepted on a {was} job: {events:?}"
                    );
                }
                // (b) Only a requeue leaves DEAD_LETTER.
                if before.status() == Some(DeadLetter) {
                    prop_assert!(
                        matches!(command, JobCommand::Requeue),
                        "{described}: left DEAD_LETTER for {status}"
                    );
                }
                // (f) FAILED never outlives the command.
                prop_assert_ne!(status, Failed, "{}: left the job FAILED", described);

                // The due time the command was decided against.
                let due_before = due_at;
                for event in &events {
                    match event {
                        JobEvent::JobSubmitted { spec, submitted_at } => {
                            due_at = spec.run_at.filter(|run_at| run_at > submitted_at);
                        }
                        JobEvent::JobQueued { .. } => due_at = None,
                        JobEvent::JobStarted { attempt, at, .. } => {
                            // (d) Never before the run_at or the backoff.
                            if let Some(due) = due_before {
                                prop_assert!(*at >= due, "{described}: started at {at}, due {due}");
                            }
                            prop_assert!(
                                matches!(before.status(), Some(Pending | Queued | Retrying)),
                                "{described}: started from {:?}",
                                before.status()
                            );
                            prop_assert_eq!(*attempt, before.attempt() + 1, "{}", described);
                            // (c) for the event itself.
                            prop_assert!(
                                *attempt <= max_attempts,
                                "{described}: attempt {attempt}"
                            );
                        }
                        JobEvent::JobRetryScheduled {
                            next_attempt,
                            delay_ms,
                            next_attempt_at,
                        } => {
                            let failed = next_attempt - 1;
                            prop_assert!(*next_attempt <= max_attempts, "{described}: {event:?}");
                            prop_assert_eq!(*delay_ms, case.policy.delay_ms(failed, &jitter));
                            prop_assert_eq!(
                                *delay_ms,
                                jitter.up_to(case.policy.ceiling_ms(failed))
                            );
                            prop_assert_eq!(
                                *next_attempt_at,
                                now + Duration::milliseconds(*delay_ms as i64)
                            );
                            due_at = Some(*next_attempt_at);
                        }
                        // (g) Only the running attempt is released, and it does not count:
                        // the next start runs it again.
                        JobEvent::JobReleased { attempt, .. } => {
                            prop_assert_eq!(before.status(), Some(Running), "{}", described);
                            prop_assert_eq!(*attempt, before.attempt(), "{}", described);
                            prop_assert_eq!(job.attempt() + 1, *attempt, "{}", described);
                            prop_assert_eq!(job.status(), Some(Queued), "{}", described);
                            due_at = None;
                        }
                        JobEvent::JobCancelled {
                            previous_status, ..
                        } => {
                            prop_assert_eq!(Some(*previous_status), before.status());
                            due_at = None;
                        }
                        _ => {}
                    }
                }
                history.extend(events);
            }
        }

        // (a) The terminal status holds whatever was sent.
        if let Some(was) = before.status().filter(|s| s.is_terminal()) {
            prop_assert_eq!(job.status(), Some(was), "{}", described);
        }
        // (b) again, for every outcome.
        if before.status() == Some(DeadLetter) && job.status() != Some(DeadLetter) {
            prop_assert!(matches!(command, JobCommand::Requeue), "{described}");
        }
        // (c) The attempt stays within the policy.
        prop_assert!(
            job.attempt() <= max_attempts,
            "{described}: attempt {}",
            job.attempt()
        );
        // (e) The events alone rebuild the job.
        let mut replayed = Job::default();
        history.iter().cloned().for_each(|e| replayed.apply(e));
        prop_assert_eq!(&replayed, &job, "{}: replay differs", described);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn job_invariants_hold_for_any_command_sequence(case in case()) {
        check(case)?;
    }
}

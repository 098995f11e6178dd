//! Given/when/then tests of every transition and every refusal of the `Job` aggregate.
//!
//! Time is `t(seconds)` after a fixed instant; `at(seconds)` is a test framework whose clock
//! stands still at that time. Histories (`queued()`, `running()`, ...) are the events that put a
//! job in each state; their times are chosen so that:
//! - a PENDING job is due at t(60),
//! - attempt `n` starts at `t(start_of(n))` and its lease runs for 30 s,
//! - a RETRYING job (attempt 1 failed) is due at t(16).

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use ordo_domain::spec::WorkerId;
use ordo_domain::spec::{JobName, JobType, Labels, Priority, QueueName, TenantId, TimeoutSecs};
use ordo_domain::{
    FixedJitter, Job, JobCommand, JobError, JobEvent, JobServices, JobSpec, JobStatus, ManualClock,
    RetryPolicy,
};
use serde_json::{json, Value};
use std::sync::Arc;
use JobStatus::*;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const LEASE_SECS: i64 = 30;
const PENDING_DUE: i64 = 60;
const RETRY_DUE: i64 = 16;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

/// 3 attempts; backoff ceilings 10 s, 20 s capped to 15 s; with half jitter: 5 s, then 7.5 s.
fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay_ms: 10_000,
        multiplier: 2.0,
        max_delay_ms: 15_000,
    }
    .validate()
    .unwrap()
}

fn spec() -> JobSpec {
    JobSpec {
        tenant: TenantId::parse("acme").unwrap(),
        name: JobName::parse("nightly report").unwrap(),
        job_type: JobType::parse("report.build").unwrap(),
        queue: QueueName::parse("default").unwrap(),
        payload: json!({ "day": "2030-01-01" }),
        priority: Priority::default(),
        run_at: None,
        retry: policy(),
        timeout_secs: TimeoutSecs::default(),
        labels: Labels::default(),
    }
}

fn spec_run_at(run_at: DateTime<Utc>) -> JobSpec {
    JobSpec {
        run_at: Some(run_at),
        ..spec()
    }
}

fn worker() -> WorkerId {
    WorkerId::parse("worker-1").unwrap()
}

fn services(now: DateTime<Utc>) -> JobServices {
    JobServices::new(Arc::new(ManualClock::new(now)), Arc::new(FixedJitter(0.5)))
}

/// A test framework whose clock reads `t(secs)`.
fn at(secs: i64) -> TestFramework<Job> {
    TestFramework::with(services(t(secs)))
}

/// The aggregate the events build, as the repository would load it.
fn replay(events: impl IntoIterator<Item = JobEvent>) -> Job {
    let mut job = Job::default();
    events.into_iter().for_each(|e| job.apply(e));
    job
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

fn submit(spec: JobSpec) -> JobCommand {
    JobCommand::Submit(Box::new(spec))
}

/// A claim of `attempt` at `t(now)`, with a lease of LEASE_SECS.
fn start(attempt: u32, now: i64) -> JobCommand {
    JobCommand::Start {
        worker_id: worker(),
        attempt,
        lease_expires_at: t(now + LEASE_SECS),
    }
}

fn complete(attempt: u32) -> JobCommand {
    JobCommand::Complete {
        attempt,
        result: result(),
    }
}

fn fail(attempt: u32, retryable: bool) -> JobCommand {
    JobCommand::Fail {
        attempt,
        error: "boom".to_owned(),
        retryable,
    }
}

fn extend(attempt: u32, until: i64) -> JobCommand {
    JobCommand::ExtendLease {
        attempt,
        lease_expires_at: t(until),
    }
}

fn lease_extended(attempt: u32, until: i64, at: i64) -> JobEvent {
    JobEvent::JobLeaseExtended {
        attempt,
        lease_expires_at: t(until),
        at: t(at),
    }
}

fn expire(attempt: u32) -> JobCommand {
    JobCommand::ExpireLease { attempt }
}

fn cancel() -> JobCommand {
    JobCommand::Cancel {
        reason: "no longer needed".to_owned(),
    }
}

fn result() -> Value {
    json!({ "rows": 42 })
}

/// One of each command that is not a submit.
fn every_other_command() -> Vec<JobCommand> {
    vec![
        JobCommand::EnqueueDue,
        start(1, 10),
        complete(1),
        fail(1, true),
        expire(1),
        cancel(),
        JobCommand::Requeue,
    ]
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

fn submitted(spec: JobSpec, at: i64) -> JobEvent {
    JobEvent::JobSubmitted {
        spec: Box::new(spec),
        submitted_at: t(at),
    }
}

fn queued(at: i64) -> JobEvent {
    JobEvent::JobQueued { at: t(at) }
}

fn started(attempt: u32, at: i64) -> JobEvent {
    JobEvent::JobStarted {
        attempt,
        worker_id: worker(),
        lease_expires_at: t(at + LEASE_SECS),
        at: t(at),
    }
}

fn completed(attempt: u32, at: i64) -> JobEvent {
    JobEvent::JobCompleted {
        attempt,
        result: result(),
        at: t(at),
    }
}

fn failed(attempt: u32, retryable: bool, at: i64) -> JobEvent {
    JobEvent::JobFailed {
        attempt,
        error: "boom".to_owned(),
        retryable,
        at: t(at),
    }
}

fn lease_expired(attempt: u32, at: i64) -> JobEvent {
    JobEvent::JobLeaseExpired { attempt, at: t(at) }
}

/// The retry decided at `t(at)`: due `delay_ms` later.
fn retry_scheduled(next_attempt: u32, delay_ms: u64, at: i64) -> JobEvent {
    JobEvent::JobRetryScheduled {
        next_attempt,
        delay_ms,
        next_attempt_at: t(at) + Duration::milliseconds(delay_ms as i64),
    }
}

fn dead_lettered(reason: &str, at: i64) -> JobEvent {
    JobEvent::JobDeadLettered {
        reason: reason.to_owned(),
        at: t(at),
    }
}

fn cancelled(previous_status: JobStatus, at: i64) -> JobEvent {
    JobEvent::JobCancelled {
        reason: "no longer needed".to_owned(),
        previous_status,
        at: t(at),
    }
}

fn requeued(cycle: u32, at: i64) -> JobEvent {
    JobEvent::JobRequeued { cycle, at: t(at) }
}

// ---------------------------------------------------------------------------------------------
// Histories: the events that put a job in each state
// ---------------------------------------------------------------------------------------------

/// When attempt `n` of the first cycle starts (100 s apart, so leases never overlap).
fn start_of(attempt: u32) -> i64 {
    100 * (i64::from(attempt) - 1) + 1
}

fn queued_job() -> Vec<JobEvent> {
    vec![submitted(spec(), 0)]
}

fn pending_job() -> Vec<JobEvent> {
    vec![submitted(spec_run_at(t(PENDING_DUE)), 0)]
}

/// RUNNING attempt `n`; attempts before it failed (retryably) and were retried.
fn running_attempt(n: u32) -> Vec<JobEvent> {
    let mut events = queued_job();
    for a in 1..n {
        let s = start_of(a);
        events.extend([
            started(a, s),
            failed(a, true, s + 10),
            retry_scheduled(a + 1, 5_000, s + 10),
            queued(s + 20),
        ]);
    }
    events.push(started(n, start_of(n)));
    events
}

fn running_job() -> Vec<JobEvent> {
    running_attempt(1)
}

/// RETRYING after attempt 1 failed at t(11): due at t(16).
fn retrying_job() -> Vec<JobEvent> {
    let mut events = running_job();
    events.extend([failed(1, true, 11), retry_scheduled(2, 5_000, 11)]);
    events
}

fn completed_job() -> Vec<JobEvent> {
    let mut events = running_job();
    events.push(completed(1, 11));
    events
}

fn dead_letter_job() -> Vec<JobEvent> {
    let mut events = running_job();
    events.extend([
        failed(1, false, 11),
        dead_lettered("non-retryable error: boom", 11),
    ]);
    events
}

fn cancelled_job() -> Vec<JobEvent> {
    let mut events = queued_job();
    events.push(cancelled(Queued, 5));
    events
}

/// The history of a job in `status` (FAILED never outlives a command, so it has none).
fn history(status: JobStatus) -> Vec<JobEvent> {
    match status {
        Pending => pending_job(),
        Queued => queued_job(),
        Running => running_job(),
        Retrying => retrying_job(),
        Completed => completed_job(),
        DeadLetter => dead_letter_job(),
        Cancelled => cancelled_job(),
        Failed => panic!("no job rests in FAILED"),
    }
}

/// Every state a job can rest in.
const RESTING: [JobStatus; 7] = [
    Pending, Queued, Running, Retrying, Completed, DeadLetter, Cancelled,
];

fn all_but(allowed: &[JobStatus]) -> impl Iterator<Item = JobStatus> + '_ {
    RESTING.into_iter().filter(|s| !allowed.contains(s))
}

fn invalid(command: &'static str, status: JobStatus) -> JobError {
    JobError::InvalidTransition { command, status }
}

#[test]
fn histories_rest_in_their_state() {
    for status in RESTING {
        assert_eq!(replay(history(status)).status(), Some(status));
    }
    assert_eq!(replay(running_attempt(3)).attempt(), 3);
}

// ---------------------------------------------------------------------------------------------
// Submit
// ---------------------------------------------------------------------------------------------

#[test]
fn submit_without_run_at_queues_the_job() {
    at(0)
        .given_no_previous_events()
        .when(submit(spec()))
        .then_expect_events(vec![submitted(spec(), 0)]);
    let job = replay([submitted(spec(), 0)]);
    assert_eq!(job.status(), Some(Queued));
    assert_eq!((job.attempt(), job.cycle(), job.due_at()), (0, 1, None));
}

#[test]
fn submit_with_run_at_in_the_past_or_now_queues_the_job() {
    for run_at in [-5, 0] {
        at(0)
            .given_no_previous_events()
            .when(submit(spec_run_at(t(run_at))))
            .then_expect_events(vec![submitted(spec_run_at(t(run_at)), 0)]);
        assert_eq!(
            replay([submitted(spec_run_at(t(run_at)), 0)]).status(),
            Some(Queued)
        );
    }
}

#[test]
fn submit_with_run_at_in_the_future_makes_the_job_pending() {
    let spec = spec_run_at(t(PENDING_DUE));
    at(0)
        .given_no_previous_events()
        .when(submit(spec.clone()))
        .then_expect_events(vec![submitted(spec.clone(), 0)]);
    let job = replay([submitted(spec, 0)]);
    assert_eq!(job.status(), Some(Pending));
    assert_eq!(job.due_at(), Some(t(PENDING_DUE)));
}

#[test]
fn submit_on_an_existing_job_is_refused_whatever_its_state() {
    for status in RESTING {
        at(10)
            .given(history(status))
            .when(submit(spec()))
            .then_expect_error(JobError::AlreadyExists { status });
    }
    at(10)
        .given(running_job())
        .when(submit(spec()))
        .then_expect_error_message("job already exists (status RUNNING)");
}

#[test]
fn any_other_command_on_a_never_submitted_job_is_not_found() {
    for command in every_other_command() {
        at(10)
            .given_no_previous_events()
            .when(command)
            .then_expect_error(JobError::NotFound);
    }
    at(10)
        .given_no_previous_events()
        .when(cancel())
        .then_expect_error_message("job not found");
}

// ---------------------------------------------------------------------------------------------
// Enqueue due
// ---------------------------------------------------------------------------------------------

#[test]
fn enqueue_due_queues_a_pending_job_once_its_run_at_has_come() {
    for now in [PENDING_DUE, PENDING_DUE + 1] {
        at(now)
            .given(pending_job())
            .when(JobCommand::EnqueueDue)
            .then_expect_events(vec![queued(now)]);
    }
}

#[test]
fn enqueue_due_refuses_a_pending_job_before_its_run_at() {
    at(PENDING_DUE - 1)
        .given(pending_job())
        .when(JobCommand::EnqueueDue)
        .then_expect_error(JobError::NotDue {
            status: Pending,
            due_at: t(PENDING_DUE),
        });
    at(PENDING_DUE - 1)
        .given(pending_job())
        .when(JobCommand::EnqueueDue)
        .then_expect_error_message(&format!(
            "job is PENDING and not due before {}",
            t(PENDING_DUE)
        ));
}

#[test]
fn enqueue_due_queues_a_retrying_job_once_its_backoff_has_passed() {
    at(RETRY_DUE)
        .given(retrying_job())
        .when(JobCommand::EnqueueDue)
        .then_expect_events(vec![queued(RETRY_DUE)]);
    at(RETRY_DUE - 1)
        .given(retrying_job())
        .when(JobCommand::EnqueueDue)
        .then_expect_error(JobError::NotDue {
            status: Retrying,
            due_at: t(RETRY_DUE),
        });
}

#[test]
fn enqueue_due_is_refused_outside_pending_and_retrying() {
    for status in all_but(&[Pending, Retrying]) {
        at(100)
            .given(history(status))
            .when(JobCommand::EnqueueDue)
            .then_expect_error(invalid("enqueue", status));
    }
    at(100)
        .given(queued_job())
        .when(JobCommand::EnqueueDue)
        .then_expect_error_message("cannot enqueue a job that is QUEUED");
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

#[test]
fn start_claims_a_queued_job() {
    at(5)
        .given(queued_job())
        .when(start(1, 5))
        .then_expect_events(vec![started(1, 5)]);
    let job = replay([submitted(spec(), 0), started(1, 5)]);
    assert_eq!((job.status(), job.attempt()), (Some(Running), 1));
    assert_eq!(job.lease().unwrap().expires_at, t(5 + LEASE_SECS));
}

#[test]
fn start_of_a_due_pending_job_queues_it_first() {
    at(PENDING_DUE)
        .given(pending_job())
        .when(start(1, PENDING_DUE))
        .then_expect_events(vec![queued(PENDING_DUE), started(1, PENDING_DUE)]);
}

#[test]
fn start_of_a_due_retrying_job_queues_it_first() {
    at(RETRY_DUE)
        .given(retrying_job())
        .when(start(2, RETRY_DUE))
        .then_expect_events(vec![queued(RETRY_DUE), started(2, RETRY_DUE)]);
}

#[test]
fn start_before_the_job_is_due_is_refused() {
    at(PENDING_DUE - 1)
        .given(pending_job())
        .when(start(1, PENDING_DUE - 1))
        .then_expect_error(JobError::NotDue {
            status: Pending,
            due_at: t(PENDING_DUE),
        });
    at(RETRY_DUE - 1)
        .given(retrying_job())
        .when(start(2, RETRY_DUE - 1))
        .then_expect_error(JobError::NotDue {
            status: Retrying,
            due_at: t(RETRY_DUE),
        });
}

#[test]
fn start_of_any_attempt_but_the_next_is_stale() {
    for got in [0, 2] {
        at(5)
            .given(queued_job())
            .when(start(got, 5))
            .then_expect_error(JobError::StaleAttempt {
                expected: 1,
                got,
                status: Queued,
            });
    }
    // A worker that missed the failure of attempt 1 tries to start it again.
    at(RETRY_DUE)
        .given(retrying_job())
        .when(start(1, RETRY_DUE))
        .then_expect_error(JobError::StaleAttempt {
            expected: 2,
            got: 1,
            status: Retrying,
        });
    at(5)
        .given(queued_job())
        .when(start(2, 5))
        .then_expect_error_message("attempt 2 does not match the job's 1 (status QUEUED)");
}

#[test]
fn start_is_refused_outside_pending_queued_and_retrying() {
    for status in all_but(&[Pending, Queued, Retrying]) {
        at(100)
            .given(history(status))
            .when(start(2, 100))
            .then_expect_error(invalid("start", status));
    }
    at(100)
        .given(running_job())
        .when(start(2, 100))
        .then_expect_error_message("cannot start a job that is RUNNING");
}

// ---------------------------------------------------------------------------------------------
// Complete
// ---------------------------------------------------------------------------------------------

#[test]
fn complete_finishes_the_running_attempt() {
    at(11)
        .given(running_job())
        .when(complete(1))
        .then_expect_events(vec![completed(1, 11)]);
    assert_eq!(replay(completed_job()).lease(), None);
}

#[test]
fn complete_of_another_attempt_is_stale() {
    for got in [0, 2] {
        at(11)
            .given(running_job())
            .when(complete(got))
            .then_expect_error(JobError::StaleAttempt {
                expected: 1,
                got,
                status: Running,
            });
    }
    at(11)
        .given(running_job())
        .when(complete(2))
        .then_expect_error_message("attempt 2 does not match the job's 1 (status RUNNING)");
}

#[test]
fn complete_is_refused_unless_running() {
    for status in all_but(&[Running]) {
        at(100)
            .given(history(status))
            .when(complete(1))
            .then_expect_error(invalid("complete", status));
    }
    at(100)
        .given(retrying_job())
        .when(complete(1))
        .then_expect_error_message("cannot complete a job that is RETRYING");
}

// ---------------------------------------------------------------------------------------------
// Release
// ---------------------------------------------------------------------------------------------

fn release(attempt: u32) -> JobCommand {
    JobCommand::Release {
        attempt,
        reason: "shutting down".to_owned(),
    }
}

fn released(attempt: u32, at: i64) -> JobEvent {
    JobEvent::JobReleased {
        attempt,
        reason: "shutting down".to_owned(),
        at: t(at),
    }
}

#[test]
fn a_released_attempt_does_not_count_and_runs_again_under_its_number() {
    // The last of three attempts is released: the job is QUEUED, not dead-lettered.
    let given = running_attempt(3);
    let now = start_of(3) + 10;
    at(now)
        .given(given.clone())
        .when(release(3))
        .then_expect_events(vec![released(3, now)]);
    let job = replay(given.iter().cloned().chain([released(3, now)]));
    assert_eq!(
        (job.status(), job.attempt(), job.lease(), job.due_at()),
        (Some(Queued), 2, None, None)
    );
    // Its next start is attempt 3 again, and it can still fail into the dead letter as the
    // third attempt, not a fourth.
    let restarted = given.into_iter().chain([released(3, now)]);
    at(now + 1)
        .given(restarted.clone().collect())
        .when(start(3, now + 1))
        .then_expect_events(vec![started(3, now + 1)]);
    at(now + 2)
        .given(restarted.chain([started(3, now + 1)]).collect())
        .when(fail(3, true))
        .then_expect_events(vec![
            failed(3, true, now + 2),
            dead_lettered("attempts exhausted (3/3): boom", now + 2),
        ]);
}

#[test]
fn only_the_running_attempt_can_be_released() {
    at(11)
        .given(running_attempt(2))
        .when(release(1))
        .then_expect_error(JobError::StaleAttempt {
            expected: 2,
            got: 1,
            status: Running,
        });
    at(11)
        .given(queued_job())
        .when(release(1))
        .then_expect_error(JobError::InvalidTransition {
            command: "release",
            status: Queued,
        });
}

// ---------------------------------------------------------------------------------------------
// Fail
// ---------------------------------------------------------------------------------------------

#[test]
fn retryable_failure_with_attempts_left_schedules_a_jittered_backoff() {
    // Attempt 1: ceiling 10 s, half jitter → 5 s.
    let now = start_of(1) + 10;
    let events = at(now)
        .given(running_job())
        .when(fail(1, true))
        .inspect_result()
        .unwrap();
    assert_eq!(
        events,
        vec![
            failed(1, true, now),
            JobEvent::JobRetryScheduled {
                next_attempt: 2,
                delay_ms: 5_000,
                next_attempt_at: t(now) + Duration::milliseconds(5_000),
            },
        ]
    );
    let job = replay(running_job().into_iter().chain(events));
    assert_eq!(job.status(), Some(Retrying));
    assert_eq!(job.due_at(), Some(t(now + 5)));
    assert_eq!(job.last_error(), Some("boom"));
}

#[test]
fn backoff_grows_and_is_capped() {
    // Attempt 2: ceiling 20 s capped to 15 s, half jitter → 7.5 s.
    let now = start_of(2) + 10;
    at(now)
        .given(running_attempt(2))
        .when(fail(2, true))
        .then_expect_events(vec![failed(2, true, now), retry_scheduled(3, 7_500, now)]);
}

#[test]
fn non_retryable_failure_dead_letters_the_job() {
    at(11)
        .given(running_job())
        .when(fail(1, false))
        .then_expect_events(vec![
            failed(1, false, 11),
            dead_lettered("non-retryable error: boom", 11),
        ]);
}

#[test]
fn failure_of_the_last_attempt_dead_letters_the_job() {
    let now = start_of(3) + 10;
    at(now)
        .given(running_attempt(3))
        .when(fail(3, true))
        .then_expect_events(vec![
            failed(3, true, now),
            dead_lettered("attempts exhausted (3/3): boom", now),
        ]);
}

#[test]
fn a_policy_of_one_attempt_never_retries() {
    let once = JobSpec {
        retry: RetryPolicy {
            max_attempts: 1,
            ..policy()
        },
        ..spec()
    };
    at(11)
        .given(vec![submitted(once, 0), started(1, 1)])
        .when(fail(1, true))
        .then_expect_events(vec![
            failed(1, true, 11),
            dead_lettered("attempts exhausted (1/1): boom", 11),
        ]);
}

#[test]
fn fail_of_another_attempt_is_stale() {
    at(start_of(2) + 10)
        .given(running_attempt(2))
        .when(fail(1, true))
        .then_expect_error(JobError::StaleAttempt {
            expected: 2,
            got: 1,
            status: Running,
        });
}

#[test]
fn fail_is_refused_unless_running() {
    for status in all_but(&[Running]) {
        at(100)
            .given(history(status))
            .when(fail(1, true))
            .then_expect_error(invalid("fail", status));
    }
    at(100)
        .given(dead_letter_job())
        .when(fail(1, true))
        .then_expect_error_message("cannot fail a job that is DEAD_LETTER");
}

// ---------------------------------------------------------------------------------------------
// Extend lease (heartbeat)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_heartbeat_extends_the_lease_and_the_reaper_then_waits_for_the_new_end() {
    let now = start_of(1) + 20;
    let until = now + LEASE_SECS;
    at(now)
        .given(running_job())
        .when(extend(1, until))
        .then_expect_events(vec![lease_extended(1, until, now)]);
    let mut history = running_job();
    history.push(lease_extended(1, until, now));
    at(start_of(1) + LEASE_SECS + 1)
        .given(history.clone())
        .when(expire(1))
        .then_expect_error(JobError::LeaseNotExpired {
            attempt: 1,
            lease_expires_at: t(until),
            status: Running,
        });
    let job = replay(history);
    assert_eq!(job.lease().map(|l| l.expires_at), Some(t(until)));
    assert_eq!(job.status(), Some(Running));
}

#[test]
fn a_heartbeat_of_another_attempt_is_stale() {
    at(1_000)
        .given(running_attempt(2))
        .when(extend(1, 2_000))
        .then_expect_error(JobError::StaleAttempt {
            expected: 2,
            got: 1,
            status: Running,
        });
}

#[test]
fn a_heartbeat_is_refused_unless_running() {
    for status in all_but(&[Running]) {
        at(1_000)
            .given(history(status))
            .when(extend(1, 2_000))
            .then_expect_error(invalid("extend the lease of", status));
    }
}

// ---------------------------------------------------------------------------------------------
// Expire lease
// ---------------------------------------------------------------------------------------------

#[test]
fn expire_lease_before_it_runs_out_is_refused() {
    let expiry = start_of(1) + LEASE_SECS;
    at(expiry - 1)
        .given(running_job())
        .when(expire(1))
        .then_expect_error(JobError::LeaseNotExpired {
            attempt: 1,
            lease_expires_at: t(expiry),
            status: Running,
        });
    at(expiry - 1)
        .given(running_job())
        .when(expire(1))
        .then_expect_error_message(&format!(
            "lease of attempt 1 runs until {} (status RUNNING)",
            t(expiry)
        ));
}

#[test]
fn expired_lease_fails_the_attempt_and_schedules_a_retry() {
    let expiry = start_of(1) + LEASE_SECS;
    for now in [expiry, expiry + 60] {
        at(now)
            .given(running_job())
            .when(expire(1))
            .then_expect_events(vec![lease_expired(1, now), retry_scheduled(2, 5_000, now)]);
    }
    let job = replay(running_job().into_iter().chain([lease_expired(1, expiry)]));
    assert_eq!(job.status(), Some(Failed));
    assert_eq!(
        (job.lease(), job.last_error()),
        (None, Some("lease expired"))
    );
}

#[test]
fn expired_lease_of_the_last_attempt_dead_letters_the_job() {
    let now = start_of(3) + LEASE_SECS;
    at(now)
        .given(running_attempt(3))
        .when(expire(3))
        .then_expect_events(vec![
            lease_expired(3, now),
            dead_lettered("attempts exhausted (3/3): lease expired", now),
        ]);
}

#[test]
fn expire_lease_of_another_attempt_is_stale() {
    at(1_000)
        .given(running_job())
        .when(expire(2))
        .then_expect_error(JobError::StaleAttempt {
            expected: 1,
            got: 2,
            status: Running,
        });
}

#[test]
fn expire_lease_is_refused_unless_running() {
    for status in all_but(&[Running]) {
        at(1_000)
            .given(history(status))
            .when(expire(1))
            .then_expect_error(invalid("expire the lease of", status));
    }
    at(1_000)
        .given(completed_job())
        .when(expire(1))
        .then_expect_error_message("cannot expire the lease of a job that is COMPLETED");
}

// ---------------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_stops_a_job_that_is_not_final() {
    for status in [Pending, Queued, Running, Retrying] {
        at(12)
            .given(history(status))
            .when(cancel())
            .then_expect_events(vec![cancelled(status, 12)]);
    }
    let job = replay(running_job().into_iter().chain([cancelled(Running, 12)]));
    assert_eq!((job.status(), job.lease()), (Some(Cancelled), None));
    let job = replay(retrying_job().into_iter().chain([cancelled(Retrying, 12)]));
    assert_eq!(job.due_at(), None);
}

#[test]
fn cancel_is_refused_once_the_job_is_final() {
    for status in [Completed, Cancelled, DeadLetter] {
        at(100)
            .given(history(status))
            .when(cancel())
            .then_expect_error(invalid("cancel", status));
    }
    at(100)
        .given(completed_job())
        .when(cancel())
        .then_expect_error_message("cannot cancel a job that is COMPLETED");
}

// ---------------------------------------------------------------------------------------------
// Requeue
// ---------------------------------------------------------------------------------------------

#[test]
fn requeue_starts_a_new_cycle_from_the_dead_letter() {
    at(50)
        .given(dead_letter_job())
        .when(JobCommand::Requeue)
        .then_expect_events(vec![requeued(2, 50), queued(50)]);
    let job = replay(
        dead_letter_job()
            .into_iter()
            .chain([requeued(2, 50), queued(50)]),
    );
    assert_eq!(job.status(), Some(Queued));
    assert_eq!((job.attempt(), job.cycle()), (0, 2));
}

#[test]
fn after_a_requeue_attempt_one_starts_again() {
    // Attempts exhausted in cycle 1, then requeued.
    let exhausted = start_of(3) + 10;
    let mut events = running_attempt(3);
    events.extend([
        failed(3, true, exhausted),
        dead_lettered("attempts exhausted (3/3): boom", exhausted),
        requeued(2, 400),
        queued(400),
    ]);
    at(401)
        .given(events.clone())
        .when(start(1, 401))
        .then_expect_events(vec![started(1, 401)]);
    at(401)
        .given(events.clone())
        .when(start(4, 401))
        .then_expect_error(JobError::StaleAttempt {
            expected: 1,
            got: 4,
            status: Queued,
        });
    // The new cycle has the full number of attempts again.
    events.push(started(1, 401));
    at(402)
        .given(events)
        .when(fail(1, true))
        .then_expect_events(vec![failed(1, true, 402), retry_scheduled(2, 5_000, 402)]);
}

#[test]
fn a_second_requeue_starts_a_third_cycle() {
    let mut events = dead_letter_job();
    events.extend([
        requeued(2, 50),
        queued(50),
        started(1, 51),
        failed(1, false, 52),
        dead_lettered("non-retryable error: boom", 52),
    ]);
    at(60)
        .given(events)
        .when(JobCommand::Requeue)
        .then_expect_events(vec![requeued(3, 60), queued(60)]);
}

#[test]
fn requeue_is_refused_outside_the_dead_letter() {
    for status in all_but(&[DeadLetter]) {
        at(100)
            .given(history(status))
            .when(JobCommand::Requeue)
            .then_expect_error(invalid("requeue", status));
    }
    at(100)
        .given(cancelled_job())
        .when(JobCommand::Requeue)
        .then_expect_error_message("cannot requeue a job that is CANCELLED");
}

// ---------------------------------------------------------------------------------------------
// Refusals in general
// ---------------------------------------------------------------------------------------------

/// Every refusal of a submitted job names the state the job is in.
#[test]
fn every_refusal_names_the_current_state() {
    let mut commands = every_other_command();
    commands.extend([submit(spec()), start(2, 10), complete(2)]);
    let mut refusals = 0;
    for status in RESTING {
        for now in [10, 100] {
            for command in commands.clone() {
                let outcome = at(now)
                    .given(history(status))
                    .when(command.clone())
                    .inspect_result();
                if let Err(error) = outcome {
                    refusals += 1;
                    let message = error.to_string();
                    assert!(
                        message.contains(status.as_str()),
                        "{command:?} on {status}: {message:?} does not name the state"
                    );
                }
            }
        }
    }
    assert!(refusals > 50, "only {refusals} refusals exercised");
}

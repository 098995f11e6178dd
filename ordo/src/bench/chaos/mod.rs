//! `ordo bench chaos`: faults under a steady load, on a private stack, with the damage
//! checked from the event store at the end.
//!
//! - [`stack`]: a PostgreSQL cluster, a Redis and a broker of its own on free loopback ports,
//!   and every role as its own `ordo serve` process;
//! - [`load`]: submits at a fixed rate (jobs that complete, fail and retry, dead-letter, and
//!   are cancelled), with what came of each in a ledger;
//! - [`faults`]: kill -9 and restart of each role in turn, PostgreSQL restarted, Redis and
//!   the broker restarted empty, on a schedule, with the recovery time after each;
//! - [`checks`]: settled, in the state their commands imply, no attempt started twice,
//!   nothing lost, from the event store; plus `ordo replay --verify`;
//! - [`report`]: what an operator reads, and the exit code.

mod checks;
mod faults;
mod load;
mod report;
mod stack;

use crate::cli::{ChaosBenchArgs, GlobalArgs};
use anyhow::Context;
use ordo_common::db::{self, DbConfig};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest wait for the first completion, before any fault: the stack must work at all.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(90);
/// Tries of `ordo replay --verify`: the projector may still be applying the last events.
const VERIFY_TRIES: u32 = 3;
const VERIFY_PAUSE: Duration = Duration::from_secs(5);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn run(global: &GlobalArgs, args: ChaosBenchArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs(args.interval_secs);
    let seconds = Duration::from_secs(
        args.seconds.unwrap_or(
            args.interval_secs
                .saturating_mul(args.faults.len() as u64 + 1),
        ),
    );
    if seconds < interval * 2 {
        anyhow::bail!(
            "--seconds ({}) must be at least twice --interval-secs ({}): the first fault comes \
             one interval into the load, and each needs an interval to recover in",
            seconds.as_secs(),
            interval.as_secs()
        );
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "ordo-chaos-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            std::process::id()
        )),
    };
    std::fs::create_dir_all(dir.parent().unwrap_or(&dir))?;
    std::fs::create_dir(&dir).with_context(|| {
        format!(
            "cannot create the run's directory {} (it must not exist)",
            dir.display()
        )
    })?;
    let faults: Vec<&str> = args.faults.iter().map(|&f| faults::name(f)).collect();
    println!(
        "ordo bench chaos: {} s of load at {} submits/s, a fault every {} s ({}), {} worker \
         processes; private PostgreSQL, Redis and broker; logs in {}",
        seconds.as_secs(),
        args.rate,
        args.interval_secs,
        faults.join(", "),
        args.workers,
        dir.display()
    );
    // Ctrl-C or SIGTERM drops the run, and with it the stack: every process it started is
    // killed and the cluster stopped (pg_ctl daemonizes PostgreSQL, which would outlive us).
    let result = tokio::select! {
        result = chaos(global, &args, &dir, interval, seconds) => result,
        _ = crate::serve::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    println!("logs: {}", dir.display());
    result.with_context(|| format!("the run's logs are in {}", dir.display()))
}

async fn chaos(
    global: &GlobalArgs,
    args: &ChaosBenchArgs,
    dir: &Path,
    interval: Duration,
    seconds: Duration,
) -> anyhow::Result<()> {
    let mut stack = stack::Stack::start(global, dir, args.workers).await?;
    println!(
        "stack up: PostgreSQL {}, Redis {}, broker {}, API {}",
        stack.database_url, stack.redis_url, stack.brokers, stack.api_url
    );
    // Its own small pool: the checks must not take a connection a role is waiting for.
    let pool = db::connect(&DbConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(2),
        ..DbConfig::new(&stack.database_url)
    })?;
    let recovery_timeout = Duration::from_secs(args.recovery_timeout_secs);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let load = load::Load::start(&stack.api_url, args.rate, &run_id)?;
    let started = Instant::now();

    let warm_up = faults::first_completion(
        &mut stack,
        &pool,
        0,
        Instant::now(),
        chrono::Utc::now(),
        WARM_UP_TIMEOUT,
    )
    .await;
    if warm_up.is_none() {
        load.stop().await;
        anyhow::bail!(
            "no job completed within {WARM_UP_TIMEOUT:?} of the load's start, before any fault: \
             the stack does not work (see the role logs)"
        );
    }

    let mut records = Vec::new();
    for fault in args.faults.iter().cycle() {
        let due = interval * (records.len() as u32 + 1);
        // A fault needs an interval after it for its recovery, within the load.
        if due.max(started.elapsed()) + interval > seconds {
            break;
        }
        idle_until(&mut stack, started + due).await;
        let record = faults::strike(
            &mut stack,
            &pool,
            *fault,
            started.elapsed(),
            recovery_timeout,
        )
        .await;
        println!("{}", report::fault_line(&record));
        records.push(record);
    }
    idle_until(&mut stack, started + seconds).await;
    let load_seconds = started.elapsed();
    println!(
        "load stopped after {:.0} s; waiting for the requests in flight",
        load_seconds.as_secs_f64()
    );
    let ledger = load.stop().await;

    let settle_timeout = Duration::from_secs(args.settle_timeout_secs);
    let settled = checks::wait_settled(&pool, settle_timeout).await;
    let findings = checks::examine(&pool, &ledger).await?;
    let mut verify = None;
    for n in 1..=VERIFY_TRIES {
        let outcome = stack.replay_verify(n, VERIFY_TIMEOUT).await;
        let clean = matches!(outcome, Ok((true, _)));
        verify = Some(outcome);
        if clean || n == VERIFY_TRIES {
            break;
        }
        tokio::time::sleep(VERIFY_PAUSE).await;
    }
    stack.supervise();
    let exited = stack.exits().to_vec();
    let retried_calls = ledger
        .counters
        .retried_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    let outcome = report::Outcome {
        seconds: load_seconds,
        rate: args.rate,
        records,
        recovery_timeout,
        settled,
        settle_timeout,
        findings,
        retried_calls,
        verify: verify.expect("at least one try"),
        exited,
    };
    let failed = report::print(&outcome);
    pool.close().await;
    drop(stack);
    if failed > 0 {
        anyhow::bail!("{failed} chaos checks failed (see the report above)");
    }
    Ok(())
}

/// Waits until `deadline`, starting again any role that exits by itself meanwhile.
async fn idle_until(stack: &mut stack::Stack, deadline: Instant) {
    while Instant::now() < deadline {
        stack.supervise();
        let next = (Instant::now() + Duration::from_millis(200)).min(deadline);
        tokio::time::sleep_until(next.into()).await;
    }
}

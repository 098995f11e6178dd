//! The report of a chaos run: a line per fault as it happens, then the totals and one line
//! per check. The number of failed checks decides the exit code.

use super::checks::{kinds, Findings};
use super::faults::{name, FaultRecord};
use std::time::Duration;

/// The statuses a job settles in.
const FINAL: [&str; 3] = ["COMPLETED", "DEAD_LETTER", "CANCELLED"];

pub struct Outcome {
    pub seconds: Duration,
    pub rate: u32,
    pub records: Vec<FaultRecord>,
    pub recovery_timeout: Duration,
    pub settled: Option<Duration>,
    pub settle_timeout: Duration,
    pub findings: Findings,
    pub retried_calls: u64,
    /// `ordo replay --verify`: whether it passed, and its output.
    pub verify: anyhow::Result<(bool, String)>,
    pub exited: Vec<String>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One fault as the schedule reports it.
pub fn fault_line(record: &FaultRecord) -> String {
    let recovery = match (&record.error, record.recovery) {
        (Some(error), _) => format!("FAULT FAILED: {error}"),
        (None, Some(recovery)) => format!("recovered in {}", secs(recovery)),
        (None, None) => "NOT RECOVERED".into(),
    };
    format!(
        "fault at +{:>6.1} s  {:<9} {:<44} took {:>6}  {recovery}",
        record.at.as_secs_f64(),
        name(record.fault),
        record.what,
        secs(record.took),
    )
}

/// Prints the report; answers the number of failed checks.
pub fn print(outcome: &Outcome) -> usize {
    let f = &outcome.findings;
    println!();
    println!("=== ordo bench chaos: report ===");
    println!(
        "recovery = from the start of a fault until the first job submitted after it completed \
         (its JobCompleted's occurred_at in the event store)"
    );
    for record in &outcome.records {
        println!("{}", fault_line(record));
    }
    let mut recoveries: Vec<Duration> = outcome.records.iter().filter_map(|r| r.recovery).collect();
    recoveries.sort();
    if let (Some(min), Some(max)) = (recoveries.first(), recoveries.last()) {
        println!(
            "recovery over {} faults: min {}, median {}, max {}",
            recoveries.len(),
            secs(*min),
            secs(recoveries[recoveries.len() / 2]),
            secs(*max)
        );
    }
    println!(
        "load: {} submits at {}/s over {}: {} acknowledged, {} given up; {} calls retried \
         (5xx or no answer); cancels: {} sent, {} done, {} refused (already final), {} unanswered",
        f.submits,
        outcome.rate,
        secs(outcome.seconds),
        f.submits_acknowledged,
        f.submits_given_up.len(),
        outcome.retried_calls,
        f.cancels,
        f.cancels_done,
        f.cancels_refused,
        f.cancels_unanswered.len(),
    );
    let statuses: Vec<String> = (f.by_status.iter())
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    let by_kind: Vec<String> = kinds()
        .map(|kind| format!("{kind} {}", f.by_kind.get(kind).copied().unwrap_or(0)))
        .collect();
    println!(
        "event store: {} jobs ({} of them from submits never acknowledged), {} events; {}; \
         by kind: {}",
        f.jobs,
        f.unacknowledged_in_store,
        f.events,
        statuses.join(", "),
        by_kind.join(", ")
    );
    println!(
        "totals: submitted {}, completed {}, dead-lettered {}, cancelled {}; {} starts, {} \
         re-runs after release (a released attempt runs again under its number, by design), {} \
         duplicate starts, {} expired leases",
        f.jobs,
        f.by_status.get("COMPLETED").copied().unwrap_or(0),
        f.by_status.get("DEAD_LETTER").copied().unwrap_or(0),
        f.by_status.get("CANCELLED").copied().unwrap_or(0),
        f.starts,
        f.reruns_after_release,
        f.duplicate_starts,
        f.expired_leases,
    );
    let (verify_ok, verify_line) = match &outcome.verify {
        Ok((ok, output)) => {
            let summary = output
                .lines()
                .rfind(|line| line.contains("difference") && line.contains("namespace"))
                .unwrap_or("no summary line (see replay-verify-*.log)");
            (*ok, summary.to_owned())
        }
        Err(e) => (false, format!("did not run: {e:#}")),
    };
    println!("replay --verify: {verify_line}");

    let mut checks: Vec<(bool, String)> = Vec::new();
    checks.push(match outcome.settled {
        Some(after) => (
            true,
            format!("every job settled ({} after the load)", secs(after)),
        ),
        None => (
            false,
            format!(
                "every job settled ({} not final {} after the load)",
                f.by_status
                    .iter()
                    .filter(|(s, _)| !FINAL.contains(&s.as_str()))
                    .map(|(_, n)| n)
                    .sum::<usize>(),
                secs(outcome.settle_timeout)
            ),
        ),
    });
    checks.push((
        f.wrong_state == 0,
        format!(
            "every job in the state its commands imply ({} not)",
            f.wrong_state
        ),
    ));
    checks.push((
        f.duplicate_starts == 0,
        format!(
            "no attempt started twice ({} duplicates; {} re-runs after release not counted)",
            f.duplicate_starts, f.reruns_after_release
        ),
    ));
    checks.push((
        f.lost_jobs.is_empty() && f.damaged_jobs.is_empty(),
        format!(
            "nothing lost ({} acknowledged submits without events, {} jobs with a hole or an \
             unreadable event)",
            f.lost_jobs.len(),
            f.damaged_jobs.len()
        ),
    ));
    checks.push((
        f.submits_given_up.is_empty() && f.cancels_unanswered.is_empty(),
        format!(
            "every request answered ({} submits, {} cancels given up after retrying for a minute)",
            f.submits_given_up.len(),
            f.cancels_unanswered.len()
        ),
    ));
    let unrecovered = (outcome.records.iter())
        .filter(|r| r.recovery.is_none() || r.error.is_some())
        .count();
    checks.push((
        unrecovered == 0 && !outcome.records.is_empty(),
        format!(
            "every fault recovered within {} ({} of {} did not)",
            secs(outcome.recovery_timeout),
            unrecovered,
            outcome.records.len()
        ),
    ));
    checks.push((verify_ok, format!("replay --verify clean ({verify_line})")));
    checks.push((
        outcome.exited.is_empty(),
        format!(
            "no role process exited by itself ({})",
            if outcome.exited.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{}; each was started again at once",
                    outcome.exited.join(", ")
                )
            }
        ),
    ));

    let details = [
        (
            "not in the state their commands imply",
            &f.wrong_state_examples,
        ),
        ("lost", &f.lost_jobs),
        ("damaged", &f.damaged_jobs),
        ("submits given up", &f.submits_given_up),
        ("cancels unanswered", &f.cancels_unanswered),
    ];
    for (what, list) in details {
        for example in list.iter().take(10) {
            println!("  {what}: {example}");
        }
    }
    println!("checks:");
    for (ok, line) in &checks {
        println!("  {} {line}", if *ok { "PASS" } else { "FAIL" });
    }
    let failed = checks.iter().filter(|(ok, _)| !ok).count();
    if failed == 0 {
        println!("chaos: all {} checks passed", checks.len());
    } else {
        println!("chaos: {failed} of {} checks FAILED", checks.len());
    }
    failed
}

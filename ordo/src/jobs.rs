//! `ordo jobs …`: jobs through a running command API.

use crate::cli::JobsSubmitArgs;
use anyhow::{bail, ensure, Context};
use ordo_protocol::jobs::{NewJob, MAX_BATCH_JOBS};
use std::io::{BufRead, Write};
use std::time::Duration;

/// `ordo jobs submit --file jobs.ndjson`: reads every job first (a malformed line stops the
/// command before anything is sent), then posts them in batches and prints one JSON line per
/// job: its input line, the status (201 created, 200 existing, 4xx refused) and the job id or
/// the problem. A batch the API could not take (e.g. 503) stops the command: the jobs of the
/// batches before it are created, the rest are not.
pub async fn submit(args: &JobsSubmitArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_BATCH_JOBS).contains(&args.batch_size),
        "--batch-size must be 1 to {MAX_BATCH_JOBS}"
    );
    let jobs = read_jobs(&args.file)?;
    ensure!(!jobs.is_empty(), "{} holds no job", args.file.display());
    let client = ordo_worker::ApiClient::new(
        &args.api_url,
        &args.tenant,
        Duration::from_millis(args.request_timeout_ms.max(1)),
    )?;
    let (mut created, mut existing, mut refused) = (0, 0, 0);
    let mut out = std::io::stdout().lock();
    for batch in jobs.chunks(args.batch_size) {
        let (lines, jobs): (Vec<usize>, Vec<NewJob>) = batch.iter().cloned().unzip();
        let results = client.submit_batch(&jobs).await.with_context(|| {
            format!(
                "the batch from line {} was not submitted ({created} created and {existing} \
                 existing before it)",
                lines[0]
            )
        })?;
        for (line, result) in lines.iter().zip(&results) {
            match result.status {
                201 => created += 1,
                200 => existing += 1,
                _ => refused += 1,
            }
            let mut answer = serde_json::to_value(result)?;
            answer["line"] = (*line).into();
            writeln!(out, "{answer}")?;
        }
    }
    eprintln!("{created} created, {existing} existing, {refused} refused");
    if refused > 0 {
        bail!("{refused} jobs were refused (see their problem)");
    }
    Ok(())
}

/// The jobs of an NDJSON file (`-`: standard input), each with its line number.
fn read_jobs(path: &std::path::Path) -> anyhow::Result<Vec<(usize, NewJob)>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut jobs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let job: NewJob = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not a job; nothing was submitted", i + 1))?;
        jobs.push((i + 1, job));
    }
    Ok(jobs)
}

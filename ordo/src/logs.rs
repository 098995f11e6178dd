//! `ordo logs search`: log lines through a running query API.

use crate::cli::{LogsOutput, LogsSearchArgs};
use anyhow::{bail, Context};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

pub async fn search(args: &LogsSearchArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.request_timeout_ms.max(1)))
        .build()?;
    let mut params = vec![("q", args.query.clone()), ("limit", args.limit.to_string())];
    for (name, value) in [
        ("since", &args.since),
        ("service", &args.service),
        ("level", &args.level),
        ("job_id", &args.job),
    ] {
        if let Some(value) = value {
            params.push((name, value.clone()));
        }
    }
    let url = format!("{}/api/v1/logs", args.api_url.trim_end_matches('/'));
    let response = client
        .get(&url)
        .query(&params)
        .header("X-Ordo-Tenant", &args.tenant)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        bail!("{}", problem_text(&args.query, &body));
    }
    let mut out = std::io::stdout().lock();
    for line in body["lines"].as_array().into_iter().flatten() {
        match args.output {
            LogsOutput::Json => writeln!(out, "{line}")?,
            LogsOutput::Text => writeln!(out, "{}", text_line(line))?,
        }
    }
    if body["next_cursor"].is_string() {
        eprintln!("more lines match: narrow the query or the window, or raise --limit");
    }
    if body["window"]["clamped"] == true {
        eprintln!(
            "the window was cut to {} .. {}",
            body["window"]["from"], body["window"]["to"]
        );
    }
    Ok(())
}

fn text_line(line: &Value) -> String {
    let field = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
    format!(
        "{} {:<5} {} {}",
        field("ts"),
        field("level").to_uppercase(),
        field("service"),
        field("message")
    )
}

/// A problem's detail; for a query that does not parse, the query with a caret under the
/// offending character.
fn problem_text(query: &str, problem: &Value) -> String {
    let detail = problem["detail"]
        .as_str()
        .unwrap_or("the API refused the search");
    match problem["position"].as_u64() {
        Some(position) => format!("{detail}\n  {query}\n  {}^", " ".repeat(position as usize)),
        None => detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_and_positions_print_readably() {
        let line = json!({"ts": "2026-01-01T00:00:00Z", "level": "warn", "service": "api", "message": "slow"});
        assert_eq!(text_line(&line), "2026-01-01T00:00:00Z WARN  api slow");
        let problem = json!({"detail": "unknown level (at position 6)", "position": 6});
        assert_eq!(
            problem_text("level:loud", &problem),
            "unknown level (at position 6)\n  level:loud\n        ^"
        );
        assert_eq!(problem_text("x", &json!({"detail": "down"})), "down");
    }
}

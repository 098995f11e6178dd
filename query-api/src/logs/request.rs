//! A search request's fields (query string or JSON body, the same names) checked and resolved
//! into a [`Search`]: the parsed query with the plain filters ANDed in, the time window, the
//! page size and position.

use super::parse::{self, Expr, ParseError};
use crate::cursor;
use crate::extract::QueryParams;
use crate::QueryError;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;
/// Most lines of `context` on each side of a hit …
pub const MAX_CONTEXT: u64 = 20;
/// … and most hits of a page with context: each hit's context is one more query.
pub const MAX_CONTEXT_LIMIT: u64 = 50;
/// The window searched when the request names neither `from` nor `since`.
const DEFAULT_WINDOW: Duration = Duration::hours(24);

/// The fields of a search as sent; every one optional. `startTime`, `endTime` and `source`
/// are the names Grafana-style clients use for `from`, `to` and `service`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    pub q: Option<String>,
    #[serde(alias = "startTime")]
    pub from: Option<String>,
    #[serde(alias = "endTime")]
    pub to: Option<String>,
    pub since: Option<String>,
    pub level: Option<String>,
    #[serde(alias = "source")]
    pub service: Option<String>,
    pub job_id: Option<String>,
    pub limit: Option<u64>,
    pub cursor: Option<String>,
    pub context: Option<u64>,
}

/// The query-string names, aliases included.
const PARAMS: [&str; 13] = [
    "q",
    "from",
    "startTime",
    "to",
    "endTime",
    "since",
    "level",
    "service",
    "source",
    "job_id",
    "limit",
    "cursor",
    "context",
];

impl SearchInput {
    pub fn from_query(query: Option<&str>) -> Result<Self, QueryError> {
        let params = QueryParams::parse(query, &PARAMS)?;
        let one = |name: &str, alias: Option<&str>| -> Result<Option<String>, QueryError> {
            let value = params.single(name)?;
            let aliased = alias.map(|a| params.single(a)).transpose()?.flatten();
            match (value, aliased) {
                (Some(_), Some(_)) => Err(QueryError::BadRequest(format!(
                    "give {name} or {} (the same parameter), not both",
                    alias.unwrap_or_default()
                ))),
                (v, a) => Ok(v.or(a).map(str::to_owned)),
            }
        };
        Ok(Self {
            q: one("q", None)?,
            from: one("from", Some("startTime"))?,
            to: one("to", Some("endTime"))?,
            since: one("since", None)?,
            level: one("level", None)?,
            service: one("service", Some("source"))?,
            job_id: one("job_id", None)?,
            limit: params.u64("limit")?,
            cursor: one("cursor", None)?,
            context: params.u64("context")?,
        })
    }

    /// Checks every field; `now` ends the default window.
    pub fn resolve(self, now: DateTime<Utc>, max_window: Duration) -> Result<Search, QueryError> {
        let mut terms: Vec<Expr> = parse::parse(self.q.as_deref().unwrap_or(""))
            .map_err(QueryError::from)?
            .into_iter()
            .collect();
        for (name, field, value) in [
            ("level", "level", &self.level),
            ("service", "service", &self.service),
            ("job_id", "job", &self.job_id),
        ] {
            if let Some(value) = value {
                let term = parse::field_term(field, value).map_err(|e: ParseError| {
                    QueryError::BadRequest(format!("{name}: {}", e.message))
                })?;
                terms.push(Expr::Term(term));
            }
        }
        let context = self.context.unwrap_or(0);
        if context > MAX_CONTEXT {
            return Err(QueryError::BadRequest(format!(
                "context must be 0 to {MAX_CONTEXT} (got {context})"
            )));
        }
        let limit = self.limit.unwrap_or(if context > 0 {
            MAX_CONTEXT_LIMIT
        } else {
            DEFAULT_LIMIT as u64
        });
        if !(1..=MAX_LIMIT as u64).contains(&limit) {
            return Err(QueryError::BadRequest(format!(
                "limit must be 1 to {MAX_LIMIT} (got {limit})"
            )));
        }
        if context > 0 && limit > MAX_CONTEXT_LIMIT {
            return Err(QueryError::BadRequest(format!(
                "with context, limit must be at most {MAX_CONTEXT_LIMIT} (got {limit})"
            )));
        }
        let cursor: Option<LogCursor> = self.cursor.as_deref().map(cursor::decode).transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|t| time("to", t))
            .transpose()?
            .unwrap_or(now);
        let from = match (&self.from, &self.since) {
            (Some(_), Some(_)) => {
                return Err(QueryError::BadRequest(
                    "give from or since, not both".into(),
                ))
            }
            (Some(from), None) => time("from", from)?,
            (None, Some(since)) => to - duration(since)?,
            (None, None) => to - DEFAULT_WINDOW,
        };
        // A later page keeps the first page's start, so the window does not slide under it.
        let from = cursor
            .as_ref()
            .map_or(from, |c| DateTime::from_timestamp_nanos(c.from));
        if from >= to {
            return Err(QueryError::BadRequest(format!(
                "the window is empty: from ({from}) must be before to ({to})"
            )));
        }
        let clamped = to - from > max_window;
        Ok(Search {
            query: match terms.len() {
                0 => None,
                1 => terms.pop(),
                _ => Some(Expr::And(terms)),
            },
            from: if clamped { to - max_window } else { from },
            to,
            clamped,
            limit: limit as usize,
            cursor,
            context: context as usize,
        })
    }
}

/// A checked search.
#[derive(Debug)]
pub struct Search {
    pub query: Option<Expr>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The window asked for was longer than allowed and was cut to its newest part.
    pub clamped: bool,
    pub limit: usize,
    pub cursor: Option<LogCursor>,
    /// Lines around each hit (0: none).
    pub context: usize,
}

/// Position of the last line of a page, newest first: its timestamp and a hash of the line
/// (ties at one nanosecond), and the window's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    #[serde(rename = "t")]
    pub ts: i64,
    #[serde(rename = "h")]
    pub tiebreak: u64,
    #[serde(rename = "f")]
    pub from: i64,
}

fn time(name: &str, text: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            QueryError::BadRequest(format!(
                "{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z (got {text:?}: {e})"
            ))
        })
}

/// `15m`, `24h`, `7d` (also `30s`, `2w`).
fn duration(text: &str) -> Result<Duration, QueryError> {
    let bad = || {
        QueryError::BadRequest(format!(
            "since must be a number and a unit s, m, h, d or w, such as 15m or 7d (got {text:?})"
        ))
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .and_then(Duration::try_seconds)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(query: &str) -> Result<Search, QueryError> {
        SearchInput::from_query(Some(query))?.resolve(Utc::now(), Duration::days(31))
    }

    #[test]
    fn windows_defaults_and_clamping() {
        let search = resolve("").unwrap();
        assert_eq!(search.to - search.from, DEFAULT_WINDOW);
        assert_eq!(search.limit, DEFAULT_LIMIT);
        assert!(search.query.is_none());
        assert_eq!(
            resolve("context=3").unwrap().limit,
            MAX_CONTEXT_LIMIT as usize
        );
        let search = resolve("since=7d&endTime=2026-01-31T00:00:00Z").unwrap();
        assert_eq!(search.to - search.from, Duration::days(7));
        assert!(!search.clamped);
        let search = resolve("from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z").unwrap();
        assert!(search.clamped);
        assert_eq!(search.to - search.from, Duration::days(31));
        for bad in [
            "since=7",
            "since=0m",
            "since=m",
            "since=99999999999999w",
            "from=yesterday",
            "from=2026-01-01T00:00:00Z&since=1h",
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "service=a&source=b",
            "limit=0",
            "limit=1001",
            "context=21",
            "context=2&limit=51",
            "cursor=x",
            "level=loud",
            "job_id=nope",
            "colour=red",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_filters_join_the_query() {
        let search = resolve("q=boom&level=%3E%3Dwarn&source=api").unwrap();
        assert!(matches!(search.query, Some(Expr::And(ref all)) if all.len() == 3));
    }
}

//! A job's view as the API answers it: the flat string fields of its Redis hash (written by
//! `ordo_read_model::view`) turned into typed JSON: numbers as numbers, times as RFC 3339,
//! `labels` and `result` as JSON values. Fields the job does not have (yet) are left out.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// The raw fields of a job's hash.
pub type Fields = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The last event applied to the view: compare with a command's `sequence`.
    pub sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The last applied sequence of a hash; 0 for a job the read model does not have.
pub fn sequence(fields: &Fields) -> u64 {
    fields
        .get("sequence")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl JobView {
    pub fn from_fields(job_id: &str, mut fields: Fields) -> Self {
        let mut take = |name: &str| fields.remove(name);
        let number = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok());
        // The projector writes RFC 3339 already; parsing normalizes and guards the contract.
        let time = |v: Option<String>| {
            v.map(|v| match DateTime::parse_from_rfc3339(&v) {
                Ok(t) => rfc3339(t.with_timezone(&Utc)),
                Err(_) => v,
            })
        };
        // JSON text that does not parse is still shown, as a string.
        let json =
            |v: Option<String>| v.map(|v| serde_json::from_str(&v).unwrap_or(Value::String(v)));
        Self {
            job_id: job_id.to_owned(),
            tenant: take("tenant").unwrap_or_default(),
            name: take("name"),
            job_type: take("type"),
            queue: take("queue"),
            status: take("status"),
            priority: number(take("priority")),
            max_attempts: number(take("max_attempts")),
            timeout_secs: number(take("timeout_secs")),
            labels: json(take("labels")),
            attempt: number(take("attempt")),
            cycle: number(take("cycle")),
            worker_id: take("worker_id"),
            submitted_at: time(take("submitted_at")),
            run_at: time(take("run_at")),
            queued_at: time(take("queued_at")),
            started_at: time(take("started_at")),
            lease_expires_at: time(take("lease_expires_at")),
            next_attempt_at: time(take("next_attempt_at")),
            finished_at: time(take("finished_at")),
            result: json(take("result")),
            last_error: take("last_error"),
            dead_letter_reason: take("dead_letter_reason"),
            cancel_reason: take("cancel_reason"),
            sequence: number(take("sequence")).unwrap_or(0),
            // Stored as epoch milliseconds (it is also the index score).
            updated_at: take("updated_at")
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis)
                .map(rfc3339),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_fields_and_absent_ones_left_out() {
        let fields: Fields = [
            ("tenant", "acme"),
            ("type", "report.build"),
            ("priority", "5"),
            ("labels", r#"{"team":"data"}"#),
            ("result", r#"{"rows":3}"#),
            ("submitted_at", "2030-01-02T03:04:05.678Z"),
            ("sequence", "7"),
            ("updated_at", "1893553445678"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let view = serde_json::to_value(JobView::from_fields("j1", fields)).unwrap();
        assert_eq!(
            view,
            json!({
                "job_id": "j1", "tenant": "acme", "type": "report.build", "priority": 5,
                "labels": {"team": "data"}, "result": {"rows": 3},
                "submitted_at": "2030-01-02T03:04:05.678Z", "sequence": 7,
                "updated_at": "2030-01-02T03:04:05.678Z"
            })
        );
    }
}

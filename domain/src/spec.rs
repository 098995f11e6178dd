//! Value types of a job specification. Each is parsed once, at the edge (HTTP, CLI), into a type
//! that cannot hold an invalid value; the aggregate then trusts them. Deserialization (events
//! read back from the store) does not re-validate, so tightening a rule never breaks a replay.

use crate::retry::RetryPolicy;
use crate::validation::ValidationError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Identifiers that travel in metrics, queue keys and URLs: short, ASCII, no spaces; besides
/// letters and digits only the characters of `punctuation`.
fn parse_identifier(
    field: &str,
    value: &str,
    max: usize,
    punctuation: &str,
) -> Result<String, ValidationError> {
    let valid_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || punctuation.contains(c));
    if value.is_empty() || value.len() > max {
        Err(ValidationError::new(
            field,
            format!("must be 1 to {max} characters long"),
        ))
    } else if !valid_first || !valid_rest {
        let allowed: Vec<String> = punctuation.chars().map(|c| format!("'{c}'")).collect();
        Err(ValidationError::new(
            field,
            format!(
                "must start with a letter or digit and contain only letters, digits, {}",
                allowed.join(", ")
            ),
        ))
    } else {
        Ok(value.to_owned())
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        identifier!($(#[$doc])* $name, $field, $max, "_-.:");
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, $punctuation:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                parse_identifier($field, value, $max, $punctuation).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The handler a worker runs for the job, e.g. `email.send`.
    JobType, "type", 64
);
identifier!(
    /// The queue the job waits in; workers claim from named queues.
    QueueName, "queue", 64
);
identifier!(
    /// The tenant that owns the job; every read and command is scoped to it. No ':', which
    /// separates the parts of the read model's Redis keys: a tenant must never be able to
    /// name another tenant's keys.
    TenantId, "tenant", 64, "_-."
);
identifier!(
    /// The worker process that holds a job's lease.
    WorkerId, "worker_id", 128
);

/// PostgreSQL cannot store NUL (`\u0000`) in `jsonb` or `text`; refuse it at the edge instead
/// of failing the append.
pub fn check_storable_text(field: &str, text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        Err(ValidationError::new(
            field,
            "must not contain NUL characters (\\u0000)",
        ))
    } else {
        Ok(())
    }
}

/// Free text a caller sends along (a reason, an error): at most `max_chars` characters, and
/// storable.
pub fn check_text(field: &str, text: &str, max_chars: usize) -> Result<(), ValidationError> {
    if text.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    check_storable_text(field, text)
}

/// [`check_storable_text`] for every string and key of a JSON document.
pub fn check_storable_json(field: &str, value: &Value) -> Result<(), ValidationError> {
    match value {
        Value::String(s) => check_storable_text(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| check_storable_json(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_storable_text(field, k)?;
            check_storable_json(field, v)
        }),
        _ => Ok(()),
    }
}

/// Whether two JSON documents mean the same: numbers compare by value, so `1e3` equals `1000`
/// (PostgreSQL's `jsonb` rewrites numbers, so a stored document may be spelled differently).
pub fn json_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_equivalent(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_equivalent(x, y)))
        }
        _ => a == b,
    }
}

/// A human-readable job name: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobName(String);

impl JobName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let len = value.chars().count();
        if len == 0 || len > 200 || value.trim().is_empty() {
            Err(ValidationError::new(
                "name",
                "must be 1 to 200 characters, not blank",
            ))
        } else if value.chars().any(char::is_control) {
            Err(ValidationError::new(
                "name",
                "must not contain control characters",
            ))
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 0 (default) to 9; higher runs first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    pub const MAX: u8 = 9;

    pub fn parse(value: i64) -> Result<Self, ValidationError> {
        u8::try_from(value)
            .ok()
            .filter(|p| *p <= Self::MAX)
            .map(Self)
            .ok_or_else(|| ValidationError::new("priority", "must be an integer from 0 to 9"))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// How long one attempt may run before the worker abandons it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeoutSecs(u32);

impl TimeoutSecs {
    pub const DEFAULT: u32 = 300;
    pub const MAX: u32 = 7 * 24 * 3600;

    pub fn parse(value: i64) -> Result<Self, ValidationError> {
        u32::try_from(value)
            .ok()
            .filter(|t| (1..=Self::MAX).contains(t))
            .map(Self)
            .ok_or_else(|| {
                ValidationError::new("timeout_secs", format!("must be from 1 to {}", Self::MAX))
            })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for TimeoutSecs {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// Free-form key/value labels for filtering: at most 32, keys are identifiers, values ≤ 256 chars.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub const MAX_LABELS: usize = 32;

    pub fn parse(labels: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if labels.len() > Self::MAX_LABELS {
            return Err(ValidationError::new(
                "labels",
                format!("at most {} labels", Self::MAX_LABELS),
            ));
        }
        for (key, value) in &labels {
            parse_identifier(&format!("labels.{key}"), key, 63, "_-.:")?;
            if value.chars().count() > 256 || value.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    format!("labels.{key}"),
                    "value must be at most 256 characters, without control characters",
                ));
            }
        }
        Ok(Self(labels))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

/// Everything a submitted job is: validated, immutable for the job's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub tenant: TenantId,
    pub name: JobName,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub queue: QueueName,
    pub payload: Value,
    pub priority: Priority,
    /// Not before this time; `None` (or a past time) means as soon as possible.
    pub run_at: Option<DateTime<Utc>>,
    pub retry: RetryPolicy,
    pub timeout_secs: TimeoutSecs,
    pub labels: Labels,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_bounded_in_characters_and_storable() {
        assert!(check_text("reason", &"é".repeat(10), 10).is_ok());
        let long = check_text("reason", &"é".repeat(11), 10).unwrap_err();
        assert_eq!(
            (long.field.as_str(), long.reason.as_str()),
            ("reason", "must be at most 10 characters")
        );
        assert_eq!(check_text("error", "a\0b", 10).unwrap_err().field, "error");
    }

    #[test]
    fn tenants_cannot_contain_the_key_separator() {
        assert!(TenantId::parse("acme-eu.1_a").is_ok());
        let err = TenantId::parse("acme:eu").unwrap_err();
        assert_eq!(err.field, "tenant");
        assert!(!err.reason.contains("':'"), "{}", err.reason);
    }

    #[test]
    fn identifiers_accept_the_documented_alphabet() {
        assert!(JobType::parse("email.send:v2-fast_1").is_ok());
        for bad in ["", "-lead", "has space", "ünï", &"x".repeat(65)] {
            let err = JobType::parse(bad).unwrap_err();
            assert_eq!(err.field, "type", "{bad:?}");
        }
    }

    #[test]
    fn priority_and_timeout_bounds() {
        assert_eq!(Priority::parse(9).unwrap().get(), 9);
        assert!(Priority::parse(10).is_err());
        assert!(Priority::parse(-1).is_err());
        assert!(TimeoutSecs::parse(0).is_err());
        assert_eq!(TimeoutSecs::parse(1).unwrap().get(), 1);
    }

    #[test]
    fn names_reject_control_characters_and_blanks() {
        assert!(JobName::parse("nightly report 🚀").is_ok());
        assert!(JobName::parse("a\u{7}b").is_err());
        assert!(JobName::parse("   ").is_err());
    }

    #[test]
    fn nul_characters_are_refused_anywhere_in_a_document() {
        let doc = serde_json::json!({"a": [1, {"b\u{0}": "x"}]});
        assert_eq!(
            check_storable_json("payload", &doc).unwrap_err().field,
            "payload"
        );
        assert!(check_storable_json("payload", &serde_json::json!({"a": "ü"})).is_ok());
    }

    #[test]
    fn json_numbers_compare_by_value() {
        let a: Value = serde_json::from_str(r#"{"n": 1e18, "m": [2.0]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"m": [2], "n": 1000000000000000000}"#).unwrap();
        assert!(json_equivalent(&a, &b));
        assert!(!json_equivalent(&a, &serde_json::json!({"n": 1, "m": [2]})));
    }

    #[test]
    fn labels_name_the_offending_key() {
        let mut labels = BTreeMap::new();
        labels.insert("bad key".to_owned(), "v".to_owned());
        assert_eq!(Labels::parse(labels).unwrap_err().field, "labels.bad key");
    }
}

//! The event envelope: the JSON stored as the outbox `payload` and carried verbatim as the Kafka
//! record value. It is the contract every consumer (projectors, external systems) reads.

use crate::event::{JobEvent, EVENT_VERSION};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// Metadata keys cqrs-es stores beside each event (`events.metadata`).
pub mod keys {
    pub const EVENT_ID: &str = "event_id";
    pub const TENANT: &str = "tenant";
    pub const ACTOR: &str = "actor";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const OCCURRED_AT: &str = "occurred_at";
}

/// Who asked for a command, on whose behalf, and when. Shared by all events of one command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandMetadata {
    pub tenant: String,
    pub actor: String,
    pub correlation_id: String,
    pub occurred_at: DateTime<Utc>,
}

impl CommandMetadata {
    pub fn into_map(self) -> HashMap<String, String> {
        HashMap::from([
            (keys::TENANT.to_owned(), self.tenant),
            (keys::ACTOR.to_owned(), self.actor),
            (keys::CORRELATION_ID.to_owned(), self.correlation_id),
            (
                keys::OCCURRED_AT.to_owned(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub job_id: String,
    pub tenant: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: String,
    /// The event's own fields, without the enum tag (that is `event_type`).
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("event {job_id}#{sequence} cannot be enveloped: {reason}")]
pub struct EnvelopeError {
    pub job_id: String,
    pub sequence: u64,
    pub reason: String,
}

impl EventEnvelope {
    /// The domain event this envelope carries. Consumers refuse versions they do not know
    /// rather than guess at a shape.
    pub fn event(&self) -> Result<JobEvent, EnvelopeError> {
        let fail = |reason: String| EnvelopeError {
            job_id: self.job_id.clone(),
            sequence: self.sequence,
            reason,
        };
        if self.event_version != EVENT_VERSION {
            return Err(fail(format!(
                "event_version {} is not supported (this build reads {EVENT_VERSION})",
                self.event_version
            )));
        }
        let tagged = Value::Object(
            [(self.event_type.clone(), self.data.clone())]
                .into_iter()
                .collect(),
        );
        serde_json::from_value(tagged).map_err(|e| fail(format!("{}: {e}", self.event_type)))
    }

    /// The envelope of `event`, number `sequence` of job `job_id`, with a new event id.
    pub fn of(job_id: &str, sequence: u64, metadata: &CommandMetadata, event: &JobEvent) -> Self {
        let data = match serde_json::to_value(event) {
            // Externally tagged: `{"JobQueued": {...}}`; the envelope carries the inside.
            Ok(Value::Object(mut tagged)) => tagged.remove(event.name()).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Self {
            event_id: Uuid::now_v7(),
            job_id: job_id.to_owned(),
            tenant: metadata.tenant.clone(),
            sequence,
            event_type: event.name().to_owned(),
            event_version: EVENT_VERSION,
            occurred_at: metadata.occurred_at,
            actor: metadata.actor.clone(),
            correlation_id: metadata.correlation_id.clone(),
            data,
        }
    }

    /// Builds the envelope of a stored event from its cqrs-es parts: `payload` is the
    /// externally tagged event (`{"JobQueued": {...}}`) and `metadata` the map of [`keys`].
    pub fn from_stored(
        job_id: &str,
        sequence: u64,
        event_type: &str,
        event_version: &str,
        payload: &Value,
        metadata: &Value,
    ) -> Result<Self, EnvelopeError> {
        let fail = |reason: String| EnvelopeError {
            job_id: job_id.to_owned(),
            sequence,
            reason,
        };
        let meta = |key: &str| {
            metadata
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| fail(format!("metadata has no {key}")))
        };
        let data = payload
            .get(event_type)
            .cloned()
            .ok_or_else(|| fail(format!("payload is not tagged {event_type}")))?;
        Ok(Self {
            event_id: meta(keys::EVENT_ID)?
                .parse()
                .map_err(|e| fail(format!("event_id: {e}")))?,
            job_id: job_id.to_owned(),
            tenant: meta(keys::TENANT)?.to_owned(),
            sequence,
            event_type: event_type.to_owned(),
            event_version: event_version
                .parse()
                .map_err(|e| fail(format!("event_version: {e}")))?,
            occurred_at: meta(keys::OCCURRED_AT)?
                .parse()
                .map_err(|e| fail(format!("occurred_at: {e}")))?,
            actor: meta(keys::ACTOR)?.to_owned(),
            correlation_id: meta(keys::CORRELATION_ID)?.to_owned(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_unwraps_the_event_tag_and_reads_metadata() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.000006Z".parse().unwrap();
        let mut metadata = CommandMetadata {
            tenant: "acme".into(),
            actor: "alice".into(),
            correlation_id: "c-1".into(),
            occurred_at: at,
        }
        .into_map();
        let event_id = Uuid::new_v4();
        metadata.insert(keys::EVENT_ID.into(), event_id.to_string());
        let envelope = EventEnvelope::from_stored(
            "job-1",
            2,
            "JobQueued",
            "1",
            &json!({"JobQueued": {"at": "x"}}),
            &serde_json::to_value(metadata).unwrap(),
        )
        .unwrap();
        assert_eq!(envelope.event_id, event_id);
        assert_eq!(envelope.data, json!({"at": "x"}));
        assert_eq!(envelope.occurred_at, at);
        assert_eq!(envelope.tenant, "acme");
    }

    #[test]
    fn envelope_gives_back_its_event_and_refuses_unknown_versions() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let event = JobEvent::JobQueued { at };
        let mut envelope = EventEnvelope {
            event_id: Uuid::new_v4(),
            job_id: "job-1".into(),
            tenant: "acme".into(),
            sequence: 2,
            event_type: "JobQueued".into(),
            event_version: EVENT_VERSION,
            occurred_at: at,
            actor: "alice".into(),
            correlation_id: "c".into(),
            data: serde_json::to_value(&event).unwrap()["JobQueued"].clone(),
        };
        assert_eq!(envelope.event().unwrap(), event);
        envelope.event_version = EVENT_VERSION + 1;
        assert!(envelope
            .event()
            .unwrap_err()
            .reason
            .contains("not supported"));
        envelope.event_version = EVENT_VERSION;
        envelope.event_type = "JobTeleported".into();
        assert!(envelope.event().is_err());
    }

    #[test]
    fn envelope_reports_what_is_missing() {
        let err = EventEnvelope::from_stored("j", 1, "JobQueued", "1", &json!({}), &json!({}))
            .unwrap_err();
        assert!(err.reason.contains("not tagged"), "{err}");
    }
}

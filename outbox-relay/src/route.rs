//! The outbox row → Kafka record mapping of Debezium's outbox EventRouter, with the settings in
//! `debezium/connector.json`: topic from `route.topic.replacement` with `${routedByValue}` =
//! `aggregatetype`, key = `aggregateid`, value = `payload` as text, header `id` = the event id,
//! and `table.fields.additional.placement` `type:header:eventType,sequence:header:sequence`.
//! Values are the text PostgreSQL renders, which is also what Debezium reads through pgoutput,
//! so both paths put the same bytes on the wire.

use crate::pgoutput::{Relation, Value};
use bytes::Bytes;
use uuid::Uuid;

/// The columns the mapping reads, in the order [`OutboxLayout::canonical`] expects them.
pub const OUTBOX_COLUMNS: [&str; 6] = [
    "id",
    "aggregatetype",
    "aggregateid",
    "type",
    "payload",
    "sequence",
];

/// Debezium's default `route.topic.replacement`.
pub const DEFAULT_TOPIC_TEMPLATE: &str = "outbox.event.${routedByValue}";
const ROUTED_BY_VALUE: &str = "${routedByValue}";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("relation {table} has no column {column}; is it the outbox table?")]
    MissingColumn { table: String, column: &'static str },
    #[error("outbox row has a NULL or unsent {0}")]
    MissingValue(&'static str),
    #[error("outbox column {column} is not valid: {reason}")]
    Invalid {
        column: &'static str,
        reason: String,
    },
}

/// One Kafka record, ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub event_id: Uuid,
    pub topic: String,
    pub key: Option<Bytes>,
    /// `None` is a tombstone, as EventRouter emits for a NULL payload.
    pub value: Option<Bytes>,
    pub headers: Vec<(&'static str, Bytes)>,
}

/// Where the outbox columns sit in a relation's rows.
#[derive(Debug, Clone)]
pub struct OutboxLayout {
    id: usize,
    aggregate_type: usize,
    aggregate_id: usize,
    event_type: usize,
    payload: usize,
    sequence: Option<usize>,
}

impl OutboxLayout {
    /// Rows whose values come in the order of [`OUTBOX_COLUMNS`].
    pub fn canonical() -> Self {
        Self {
            id: 0,
            aggregate_type: 1,
            aggregate_id: 2,
            event_type: 3,
            payload: 4,
            sequence: Some(5),
        }
    }

    pub fn of(relation: &Relation) -> Result<Self, RouteError> {
        let find = |column: &'static str| {
            relation
                .columns
                .iter()
                .position(|c| c == column)
                .ok_or_else(|| RouteError::MissingColumn {
                    table: format!("{}.{}", relation.namespace, relation.name),
                    column,
                })
        };
        Ok(Self {
            id: find("id")?,
            aggregate_type: find("aggregatetype")?,
            aggregate_id: find("aggregateid")?,
            event_type: find("type")?,
            payload: find("payload")?,
            sequence: find("sequence").ok(),
        })
    }

    pub fn record(
        &self,
        values: &[Value],
        topic_template: &str,
    ) -> Result<OutboxRecord, RouteError> {
        let id = text(values, self.id, "id")?.ok_or(RouteError::MissingValue("id"))?;
        let event_id = std::str::from_utf8(&id)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| RouteError::Invalid {
                column: "id",
                reason: "not a UUID".into(),
            })?;
        let aggregate_type = text(values, self.aggregate_type, "aggregatetype")?
            .ok_or(RouteError::MissingValue("aggregatetype"))?;
        let aggregate_type =
            std::str::from_utf8(&aggregate_type).map_err(|_| RouteError::Invalid {
                column: "aggregatetype",
                reason: "not UTF-8".into(),
            })?;
        let mut headers = vec![("id", id)];
        if let Some(event_type) = text(values, self.event_type, "type")? {
            headers.push(("eventType", event_type));
        }
        if let Some(sequence) = self
            .sequence
            .map(|i| text(values, i, "sequence"))
            .transpose()?
            .flatten()
        {
            headers.push(("sequence", sequence));
        }
        Ok(OutboxRecord {
            event_id,
            topic: topic_template.replace(ROUTED_BY_VALUE, aggregate_type),
            key: text(values, self.aggregate_id, "aggregateid")?,
            value: text(values, self.payload, "payload")?,
            headers,
        })
    }
}

fn text(values: &[Value], index: usize, column: &'static str) -> Result<Option<Bytes>, RouteError> {
    match values.get(index) {
        Some(Value::Text(bytes)) => Ok(Some(bytes.clone())),
        Some(Value::Null) => Ok(None),
        Some(Value::Unchanged) | None => Err(RouteError::MissingValue(column)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Relation {
        Relation {
            id: 1,
            namespace: "public".into(),
            name: "outbox".into(),
            columns: OUTBOX_COLUMNS
                .iter()
                .chain(&["tenant", "created_at"])
                .map(|c| c.to_string())
                .collect(),
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn row(payload: Value) -> Vec<Value> {
        vec![
            t("0192f0a4-7c3e-7b4a-9f00-000000000001"),
            t("job"),
            t("0192f0a4-7c3e-7b4a-9f00-0000000000aa"),
            t("JobSubmitted"),
            payload,
            t("1"),
            t("default"),
            t("2026-11-21 10:00:00+00"),
        ]
    }

    #[test]
    fn maps_a_row_like_event_router() {
        let layout = OutboxLayout::of(&outbox()).unwrap();
        let record = layout
            .record(&row(t("{\"a\": 1}")), DEFAULT_TOPIC_TEMPLATE)
            .unwrap();
        assert_eq!(record.topic, "outbox.event.job");
        assert_eq!(
            record.key.as_deref(),
            Some(&b"0192f0a4-7c3e-7b4a-9f00-0000000000aa"[..])
        );
        assert_eq!(record.value.as_deref(), Some(&b"{\"a\": 1}"[..]));
        let headers: Vec<(&str, &[u8])> =
            record.headers.iter().map(|(k, v)| (*k, &v[..])).collect();
        assert_eq!(
            headers,
            [
                ("id", &b"0192f0a4-7c3e-7b4a-9f00-000000000001"[..]),
                ("eventType", b"JobSubmitted"),
                ("sequence", b"1"),
            ]
        );
    }

    #[test]
    fn the_canonical_layout_is_the_layout_of_the_column_list() {
        let layout = OutboxLayout::of(&outbox()).unwrap();
        let values = row(t("{}"));
        assert_eq!(
            OutboxLayout::canonical().record(&values[..6], DEFAULT_TOPIC_TEMPLATE),
            layout.record(&values, DEFAULT_TOPIC_TEMPLATE)
        );
    }

    #[test]
    fn null_payload_is_a_tombstone_and_templates_apply() {
        let layout = OutboxLayout::of(&outbox()).unwrap();
        let record = layout
            .record(&row(Value::Null), "run42.outbox.event.${routedByValue}")
            .unwrap();
        assert_eq!(record.value, None);
        assert_eq!(record.topic, "run42.outbox.event.job");
    }

    #[test]
    fn a_table_without_outbox_columns_is_refused() {
        let mut other = outbox();
        other.columns.retain(|c| c != "aggregateid");
        assert!(matches!(
            OutboxLayout::of(&other),
            Err(RouteError::MissingColumn {
                column: "aggregateid",
                ..
            })
        ));
    }

    #[test]
    fn a_bad_event_id_is_an_error() {
        let layout = OutboxLayout::of(&outbox()).unwrap();
        let mut values = row(t("{}"));
        values[0] = t("not-a-uuid");
        assert!(matches!(
            layout.record(&values, DEFAULT_TOPIC_TEMPLATE),
            Err(RouteError::Invalid { column: "id", .. })
        ));
    }
}

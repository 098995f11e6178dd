//! `ordo serve relay`: the outbox, streamed to Kafka over PostgreSQL logical replication, as
//! the records Debezium's outbox EventRouter would produce (`debezium/connector.json`).
//!
//! - [`pgoutput`] decodes the Relation and Insert messages of the replication stream;
//! - [`route`] maps an outbox row to its Kafka record (topic, key, value, headers);
//! - [`slot`] manages the replication slot and the SQL around it;
//! - [`session`] runs one replication session and acknowledges LSNs after Kafka confirmed;
//! - [`relay`] supervises sessions with backoff, deletes published rows, polls slot lag;
//! - [`metrics`] holds the Prometheus instruments.
//!
//! Delivery is at least once: after a crash the relay resumes from the slot's confirmed
//! position, so the records of unconfirmed transactions are produced again.

pub mod metrics;
pub mod pgoutput;
pub mod relay;
pub mod route;
pub mod session;
pub mod slot;

pub use metrics::RelayMetrics;
pub use relay::{run, RelayConfig};

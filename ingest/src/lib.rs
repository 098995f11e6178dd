//! The log-aggregator role (`ordo serve ingest`, and on the API's port in `ordo dev`): log
//! lines from any service, by protocols their shippers already speak, to Kafka `ordo.logs`
//! (record contract v2, [`ordo_protocol::logs`]). A request is answered with success only
//! once Kafka has every line of it, and a refused request writes nothing.
//!
//! - `POST /api/v1/logs`: Ordo's own JSON ([`native`]);
//! - `POST /v1/logs`: OTLP/HTTP logs, protobuf or JSON ([`otlp`]);
//! - `POST /es/_bulk`, `POST /es/{index}/_bulk`, `GET /es/`: the Elasticsearch bulk API
//!   ([`elasticsearch`]);
//! - `POST /loki/api/v1/push`: Loki's push API, snappy protobuf or JSON ([`loki`]).
//!
//! Layout: [`body`] reads and decompresses bodies within the limits; the decoders
//! ([`native`], [`otlp`], [`elasticsearch`], [`loki`]) are plain functions from a body to
//! [`line::Line`]s; [`line`] holds what they share and the rules every line goes through
//! (defaults, timestamps, size limits) into the record batches; [`limiter`] the per-tenant
//! rate limits in Redis; [`service`] the path of a request outside the handlers;
//! [`error`] the one error type; [`http`] the routes.

pub mod body;
pub mod elasticsearch;
pub mod error;
pub mod http;
pub mod limiter;
pub mod line;
pub mod loki;
pub mod native;
pub mod otlp;
pub mod service;

pub use error::IngestError;
pub use http::routes;
pub use limiter::{RateLimiter, TenantLimits};
pub use service::{IngestConfig, IngestService, Protocol};

//! The local stack's addresses, overridable by the environment variables the services read.

use uuid::Uuid;

pub fn database_url() -> String {
    std::env::var("ORDO_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/ordo".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("ORDO_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn kafka_brokers() -> String {
    std::env::var("ORDO_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test run uses: `prefix` + 12 hex digits.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub fn clickhouse_url() -> String {
    std::env::var("ORDO_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

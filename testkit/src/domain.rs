//! Domain values for tests that run commands or build events directly.

use ordo_domain::spec::TenantId;
use ordo_domain::CommandMetadata;

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

/// Metadata of a command by actor `test` of `tenant`, now, with a fresh correlation id.
pub fn metadata(tenant: &str) -> CommandMetadata {
    CommandMetadata {
        tenant: tenant.to_owned(),
        actor: "test".to_owned(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: chrono::Utc::now(),
    }
}

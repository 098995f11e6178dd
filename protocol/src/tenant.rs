//! The tenant of a request. Until JWT authentication lands, it is named by a header.

/// The header naming the tenant a request acts for.
pub const TENANT_HEADER: &str = "x-ordo-tenant";
/// The tenant of a request without [`TENANT_HEADER`].
pub const DEFAULT_TENANT: &str = "default";

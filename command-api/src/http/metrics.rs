//! The instruments the command API's HTTP side records, and the registry its `/metrics`
//! renders: that registry also holds the bus's [`crate::metrics::CommandMetrics`] and, in a
//! process running several roles, theirs.

use ordo_common::http::{render_metrics, HttpMetrics};
use ordo_common::logs::LogMetrics;
use prometheus::Registry;

#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    http: HttpMetrics,
    logs: LogMetrics,
}

impl ApiMetrics {
    /// Registers the HTTP and logs instruments in `registry`; once per registry.
    pub fn register(registry: Registry) -> prometheus::Result<Self> {
        Ok(Self {
            http: HttpMetrics::register(&registry)?,
            logs: LogMetrics::register(&registry)?,
            registry,
        })
    }

    /// The HTTP request instruments, for [`ordo_common::http::finish`]: a process that serves
    /// other routes beside these (`ordo dev`) passes this one set to cover them all.
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    pub fn logs(&self) -> &LogMetrics {
        &self.logs
    }

    /// The text exposition format served on `/metrics`: everything in the registry.
    pub fn render(&self) -> String {
        render_metrics(&self.registry)
    }
}

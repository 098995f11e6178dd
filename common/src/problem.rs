//! The one error shape of Ordo's HTTP APIs: RFC 9457 `application/problem+json`, with a
//! stable `type` a client can branch on and a `detail` that says what to fix.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Rendered as the relative URI `/problems/{kind}`.
    pub kind: &'static str,
    pub detail: String,
    /// Extra members next to the standard ones (`field`, `current_status`, …).
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", self.kind)));
        body.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.extensions);
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Value::Object(body).to_string(),
        )
            .into_response()
    }
}

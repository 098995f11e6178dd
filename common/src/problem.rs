//! The one error shape of Ordo's HTTP APIs: RFC 9457 `application/problem+json`, with a
//! stable `type` a client can branch on, a `detail` that says what to fix, and the
//! `request_id` of the request it answers (also in the `x-request-id` header), so a client's
//! report can be found in the server's logs.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ordo_domain::ValidationError;
use serde_json::{json, Map, Value};
use std::future::Future;

/// How long a client waits before it retries after a 503: every 503 of Ordo is transient
/// (a dependency comes back, a projector catches up).
pub const RETRY_AFTER_SECS: u32 = 1;

tokio::task_local! {
    /// The id of the request being answered; set around every request by the layers of
    /// [`crate::http::finish`], read when a problem is rendered.
    static REQUEST_ID: HeaderValue;
}

/// Runs `answer` (the rest of a request's handling) with `request_id` as the id every
/// [`Problem`] rendered inside it carries.
pub(crate) async fn with_request_id<F: Future>(request_id: HeaderValue, answer: F) -> F::Output {
    REQUEST_ID.scope(request_id, answer).await
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Rendered as the relative URI `/problems/{kind}`.
    pub kind: &'static str,
    pub detail: String,
    /// Extra members next to the standard ones (`field`, `current_status`, …).
    pub extensions: Map<String, Value>,
    /// Sent as the `Retry-After` header (seconds).
    pub retry_after_secs: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after_secs: None,
        }
    }

    /// A 503 of type `unavailable` (a dependency failed or did not answer in time), with
    /// `Retry-After`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            .retry_after(RETRY_AFTER_SECS)
    }

    /// A 422 of type `validation-error` naming the `field` at fault and the `reason`.
    pub fn validation(error: &ValidationError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            error.to_string(),
        )
        .with_extensions(Map::from_iter([
            ("field".to_owned(), json!(error.field)),
            ("reason".to_owned(), json!(error.reason)),
        ]))
    }

    /// The client may try again after `secs` seconds (`Retry-After`).
    pub fn retry_after(self, secs: u32) -> Self {
        Self {
            retry_after_secs: Some(secs),
            ..self
        }
    }

    /// Adds the members of `extensions` next to the standard ones.
    pub fn with_extensions(mut self, extensions: Map<String, Value>) -> Self {
        self.extensions.extend(extensions);
        self
    }
}

impl Problem {
    /// The JSON document of the problem, as its response carries it (e.g. one job's answer
    /// inside a batch).
    pub fn to_json(&self) -> Value {
        Value::Object(self.body())
    }

    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", self.kind)));
        body.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        // Only visible ASCII ids are scoped (see `crate::http`), so `to_str` succeeds.
        if let Ok(Some(request_id)) = REQUEST_ID.try_with(|id| id.to_str().map(str::to_owned).ok())
        {
            body.insert("request_id".into(), json!(request_id));
        }
        body.extend(self.extensions.clone());
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Value::Object(body).to_string(),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn rendered(problem: Problem) -> (Response, Value) {
        let (parts, body) = problem.into_response().into_parts();
        let bytes = to_bytes(body, usize::MAX).await.expect("a buffered body");
        (
            Response::from_parts(parts, Default::default()),
            serde_json::from_slice(&bytes).expect("problem JSON"),
        )
    }

    #[tokio::test]
    async fn unavailable_is_a_503_to_retry_after_a_second() {
        let (response, body) = rendered(Problem::unavailable("redis is down")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body["type"], "/problems/unavailable");
        assert_eq!(body["detail"], "redis is down");
        assert!(
            body.get("request_id").is_none(),
            "outside a request: {body}"
        );
    }

    #[tokio::test]
    async fn a_problem_carries_the_request_id_of_its_request() {
        let problem = Problem::new(StatusCode::NOT_FOUND, "not-found", "no job")
            .with_extensions(Map::from_iter([("field".to_owned(), json!("id"))]));
        let (response, body) =
            with_request_id(HeaderValue::from_static("req-7"), rendered(problem)).await;
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(body["request_id"], "req-7");
        assert_eq!(body["field"], "id");
    }
}

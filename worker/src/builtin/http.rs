//! `http`: calls a URL and succeeds when the answer is 2xx.
//!
//! Payload: `{"url": "https://…", "method": "POST", "headers": {"name": "value"}, "body": …}`,
//! only `url` required:
//! - `method` defaults to `GET`, or `POST` when there is a body;
//! - a string `body` is sent as is (`text/plain; charset=utf-8` unless the headers name a
//!   content type), any other JSON value serialised (`application/json` unless named);
//! - the job's timeout bounds the whole call, the response body included.
//!
//! Result of a 2xx: `{"status": 200, "body": …}`, the body parsed if the response says it is
//! JSON, text otherwise, cut at [`MAX_BODY_BYTES`] (then it is text and `"truncated": true`).
//!
//! Failures: 4xx permanent, except 408 and 429 which say "try again later" and are retryable;
//! 5xx, network errors and timeouts retryable; other statuses and a payload that does not fit
//! permanent. Error messages name the URL without its query (which may carry credentials).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{invalid_payload, parse_payload};
use crate::handler::{JobContext, JobFailure, JobHandler};

/// How much of a 2xx response body goes into the result.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an error response body goes into the failure message.
const ERROR_BODY_BYTES: usize = 1024;

const SHAPE: &str = r#"{"url": <http(s) URL>, "method"?: <string>, "headers"?: {<name>: <string>}, "body"?: <any JSON; a string is sent as is>}"#;

/// One client for all jobs, so connections are pooled.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// With a client of its own. Panics only if the TLS backend cannot be initialised.
    pub fn new() -> Self {
        let client = Client::builder()
            .user_agent(concat!("ordo-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client of the http handler");
        Self::with_client(client)
    }

    /// With a client configured by the caller (proxies, root certificates, …).
    pub fn with_client(client: Client) -> Self {
        Self { client }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

fn invalid(problem: impl std::fmt::Display) -> JobFailure {
    invalid_payload("http", SHAPE, problem)
}

/// The request a payload describes, and how to name it in messages.
fn request(
    client: &Client,
    p: Payload,
    timeout: Duration,
) -> Result<(reqwest::Request, String), JobFailure> {
    let url = Url::parse(&p.url).map_err(|e| invalid(format_args!("url {:?}: {e}", p.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format_args!(
            "url {:?}: the scheme must be http or https",
            p.url
        )));
    }
    let method = match &p.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid(format_args!("method {m:?} is not an HTTP method")))?,
        None if p.body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &p.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format_args!("header name {name:?} is not valid")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format_args!("the value of header {name:?} is not valid")))?;
        headers.append(header, value);
    }
    let body = match p.body {
        None => None,
        Some(Value::String(text)) => Some(("text/plain; charset=utf-8", text.into_bytes())),
        Some(json) => Some((
            "application/json",
            serde_json::to_vec(&json).expect("JSON value"),
        )),
    };
    let what = format!("{method} {}", redacted(&url));
    let mut builder = client.request(method, url).timeout(timeout);
    if let Some((content_type, bytes)) = body {
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        builder = builder.body(bytes);
    }
    let request = builder
        .headers(headers)
        .build()
        .map_err(|e| invalid(chain(&e)))?;
    Ok((request, what))
}

/// The URL without credentials, query and fragment.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// An error and its sources, without the URL (messages name it once, redacted).
fn chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

fn network_failure(what: &str, error: &reqwest::Error, timeout: Duration) -> JobFailure {
    if error.is_timeout() {
        JobFailure::retryable(format!(
            "http: {what} timed out after {} s",
            timeout.as_secs_f64()
        ))
    } else if error.is_builder() || error.is_redirect() {
        JobFailure::permanent(format!("http: {what}: {}", chain(error)))
    } else {
        JobFailure::retryable(format!("http: {what}: {}", chain(error)))
    }
}

/// Up to `limit` bytes of the body, and whether there was more.
async fn read_limited(
    mut response: Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The body as text; a cut body loses the incomplete character at its end.
fn text(bytes: &[u8], truncated: bool) -> String {
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if truncated && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(bytes).into_owned()
}

impl Http {
    async fn call(
        &self,
        request: reqwest::Request,
        what: &str,
        timeout: Duration,
    ) -> Result<Value, JobFailure> {
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| network_failure(what, &e, timeout))?;
        let status = response.status();
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let limit = if status.is_success() {
            MAX_BODY_BYTES
        } else {
            ERROR_BODY_BYTES
        };
        let (bytes, truncated) = read_limited(response, limit)
            .await
            .map_err(|e| network_failure(what, &e, timeout))?;
        if status.is_success() {
            let parsed = if is_json && !truncated {
                serde_json::from_slice(&bytes).ok()
            } else {
                None
            };
            let body = parsed.unwrap_or_else(|| Value::String(text(&bytes, truncated)));
            let mut result = json!({ "status": status.as_u16(), "body": body });
            if truncated {
                result["truncated"] = Value::Bool(true);
            }
            return Ok(result);
        }
        let excerpt = text(&bytes, truncated);
        let excerpt = excerpt.trim();
        let mut error = format!("http: {what} answered {status}");
        if !excerpt.is_empty() {
            error.push_str(": ");
            error.push_str(excerpt);
            if truncated {
                error.push('…');
            }
        }
        let retryable = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        Err(JobFailure { error, retryable })
    }
}

#[async_trait]
impl JobHandler for Http {
    async fn run(&self, job: &JobContext) -> Result<Value, JobFailure> {
        let payload: Payload = parse_payload("http", SHAPE, &job.payload)?;
        let (request, what) = request(&self.client, payload, job.timeout)?;
        tokio::select! {
            result = self.call(request, &what, job.timeout) => result,
            () = job.cancel.cancelled() => Err(JobFailure::cancelled()),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    async fn run(payload: Value) -> Result<Value, JobFailure> {
        let job = JobContext::new(Uuid::now_v7(), "http", payload, Duration::from_secs(5));
        Http::new().run(&job).await
    }

    #[tokio::test]
    async fn invalid_payloads_are_permanent_failures_without_a_call() {
        for (payload, problem) in [
            (Value::Null, "invalid type: null"),
            (json!({}), "missing field `url`"),
            (
                json!({"url": "not a url"}),
                r#"url "not a url": relative URL without a base"#,
            ),
            (
                json!({"url": "ftp://example.com/x"}),
                "the scheme must be http or https",
            ),
            (
                json!({"url": "http://example.com", "method": "GE T"}),
                "is not an HTTP method",
            ),
            (
                json!({"url": "http://example.com", "headers": {"bad name": "x"}}),
                "header name",
            ),
            (
                json!({"url": "http://example.com", "headers": {"x-a": "line\nbreak"}}),
                "the value of header",
            ),
            (
                json!({"url": "http://example.com", "headers": {"x-a": 1}}),
                "invalid type: integer",
            ),
            (
                json!({"url": "http://example.com", "timeout": 3}),
                "unknown field `timeout`",
            ),
        ] {
            let failure = run(payload.clone()).await.unwrap_err();
            crate::builtin::assert_invalid_payload(&failure, "http", &payload, problem);
        }
    }

    #[test]
    fn messages_name_the_url_without_credentials_or_query() {
        let url = Url::parse("https://user:secret@example.com:8443/a/b?token=secret#frag").unwrap();
        assert_eq!(redacted(&url), "https://example.com:8443/a/b");
    }

    #[test]
    fn a_cut_body_loses_only_the_incomplete_character_at_its_end() {
        let bytes = "aé".as_bytes();
        assert_eq!(text(&bytes[..2], true), "a");
        assert_eq!(text(&bytes[..2], false), "a\u{fffd}");
        assert_eq!(text(bytes, true), "aé");
    }
}

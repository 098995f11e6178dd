//! Request extractors that turn HTTP input into validated values or an [`ApiError`].

use super::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{request::Parts, HeaderMap, StatusCode};
use ordo_domain::spec::TenantId;
use ordo_domain::{CommandMetadata, ValidationError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use ordo_protocol::tenant::TENANT_HEADER;
pub const ACTOR_HEADER: &str = "x-ordo-actor";
pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A JSON request body: `Content-Type: application/json` (or `+json`) required, size bounded
/// by the configured limit, syntax errors are 400 and type errors 422 naming the field.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body stands for `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

/// A [`JsonBody`] of a call that carries many items (a bulk submit, a worker's reports), under
/// the batch body limit.
pub struct BatchJsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        json_body(req, state, state.config.body_limit_bytes)
            .await
            .map(JsonBody)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for BatchJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        json_body(req, state, state.config.batch_body_limit_bytes)
            .await
            .map(BatchJsonBody)
    }
}

/// Checks that a batch's `field` holds `min` to `max` items.
pub fn check_batch_len(
    field: &str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if (min..=max).contains(&len) {
        return Ok(());
    }
    Err(ValidationError::new(
        field,
        format!("must hold {min} to {max} {field} (got {len}); split larger batches"),
    ))
}

/// A [`JsonBody`] whose route has a body limit of `limit` bytes (named in the 413).
async fn json_body<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
    limit: usize,
) -> Result<T, ApiError> {
    let (headers, bytes) = read_body(req, state, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::MalformedJson(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    parse_json(&headers, &bytes)
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (headers, bytes) = read_body(req, state, state.config.body_limit_bytes).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&headers, &bytes).map(OptionalJsonBody)
    }
}

async fn read_body(
    req: Request,
    state: &AppState,
    limit: usize,
) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = req.headers().clone();
    let bytes =
        Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
    Ok((headers, bytes))
}

fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    let mime = ordo_common::http::media_type(headers);
    if !ordo_common::http::is_json(&mime) {
        let got = if mime.is_empty() { "none" } else { &mime };
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json (got {got})"
        )));
    }
    // Derived structs would also accept an array of their fields in order; a request is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => {
                    ApiError::Validation(ValidationError::new("body", "must be a JSON object"))
                }
                Err(e) => ApiError::MalformedJson(format!("malformed JSON: {e}")),
            },
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::Validation(ValidationError::new(field, inner.to_string()))
            }
            _ => ApiError::MalformedJson(format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Who is asking, for which tenant, under which correlation id.
///
/// Until JWT authentication lands, the tenant comes from the `X-Ordo-Tenant` header
/// (default `default`) and the actor from `X-Ordo-Actor` (default `anonymous`).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub tenant: TenantId,
    pub actor: String,
    pub correlation_id: String,
}

impl RequestContext {
    pub fn metadata(&self, state: &AppState) -> CommandMetadata {
        CommandMetadata {
            tenant: self.tenant.to_string(),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            occurred_at: state.bus.services().clock.now(),
        }
    }
}

fn header_value<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, ApiError> {
    ordo_common::http::header_str(&parts.headers, name).map_err(ApiError::BadRequest)
}

/// A header of 1 to 200 visible ASCII characters, if present.
fn bounded_header(parts: &Parts, name: &str) -> Result<Option<String>, ApiError> {
    match header_value(parts, name)? {
        Some(v) if v.is_empty() || v.len() > 200 => Err(ApiError::BadRequest(format!(
            "header {name} must be 1 to 200 characters"
        ))),
        other => Ok(other.map(str::to_owned)),
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let tenant = ordo_common::http::tenant(&parts.headers).map_err(ApiError::BadRequest)?;
        Ok(Self {
            tenant,
            actor: bounded_header(parts, ACTOR_HEADER)?.unwrap_or_else(|| "anonymous".into()),
            correlation_id: bounded_header(parts, CORRELATION_HEADER)?
                .unwrap_or_else(|| Uuid::now_v7().to_string()),
        })
    }
}

/// The `Idempotency-Key` header, if any: 1 to 200 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        bounded_header(parts, IDEMPOTENCY_HEADER).map(Self)
    }
}

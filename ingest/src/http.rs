//! The routes of the role. Handlers are thin: receive (admission, tenant, body), decode with
//! the protocol's decoder, accept (rules, limit, Kafka), and render the answer or the
//! refusal in the protocol's own shape.

use crate::error::IngestError;
use crate::otlp::Encoding;
use crate::service::{Accepted, IngestService, Protocol};
use crate::{elasticsearch, loki, native, otlp};
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::time::Instant;

/// The header official Elasticsearch clients check on every answer.
const ELASTIC_PRODUCT: HeaderName = HeaderName::from_static("x-elastic-product");

/// The routes with their state and body limit, without the process-wide fallbacks and layers,
/// to merge with the other APIs of a process and finish with [`ordo_common::http::finish`].
pub fn routes(service: IngestService) -> Router {
    let limit = service.config().max_body_bytes;
    // Nested with a fallback of its own: any other path under /es gets Elasticsearch's 404.
    let elasticsearch = Router::new()
        .route("/", get(es_info))
        .route("/_bulk", post(es_bulk).put(es_bulk))
        .route("/{index}/_bulk", post(es_bulk_into).put(es_bulk_into))
        .fallback(es_unknown)
        // Set before the layer, so that it carries the product header (the process-wide
        // 405 fallback that `finish` adds later only fills routes without one).
        .method_not_allowed_fallback(es_wrong_method)
        .layer(middleware::from_fn(elastic_product));
    Router::new()
        .route("/api/v1/logs", post(native_logs))
        .route("/v1/logs", post(otlp_logs))
        .route("/loki/api/v1/push", post(loki_push))
        // `/es/`, the info path of clients whose base URL ends in /es: the nest takes `/es`.
        .route(
            "/es/",
            get(es_info).layer(middleware::from_fn(elastic_product)),
        )
        .nest("/es", elasticsearch)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(service)
}

/// `POST /api/v1/logs`: 202 `{"accepted": N}`.
async fn native_logs(State(service): State<IngestService>, request: Request) -> Response {
    let protocol = Protocol::Native;
    let accepted = async {
        let incoming = service.receive(protocol, request).await?;
        let max_lines = service.config().max_lines;
        let decode =
            move |media_type: &str, body: &[u8]| native::decode(media_type, body, max_lines);
        let lines = service.decode(protocol, &incoming, decode).await?;
        service.accept(&incoming, protocol, lines).await
    };
    match accepted.await {
        Ok(Accepted { lines, .. }) => {
            (StatusCode::ACCEPTED, Json(json!({"accepted": lines}))).into_response()
        }
        Err(error) => error.problem().into_response(),
    }
}

/// `POST /v1/logs`: OTLP/HTTP, answered in the request's encoding.
async fn otlp_logs(State(service): State<IngestService>, request: Request) -> Response {
    let protocol = Protocol::Otlp;
    let media_type = ordo_common::http::media_type(request.headers());
    // A refusal of an unknown media type is still answered, in protobuf.
    let encoding = Encoding::of(&media_type).unwrap_or(Encoding::Protobuf);
    let accepted = async {
        let incoming = service.receive(protocol, request).await?;
        let encoding = service.counted(protocol, Encoding::of(&incoming.media_type))?;
        let max_lines = service.config().max_lines;
        let decode = move |_: &str, body: &[u8]| otlp::decode(encoding, body, max_lines);
        let lines = service.decode(protocol, &incoming, decode).await?;
        service.accept(&incoming, protocol, lines).await
    };
    let (status, body, retry_after) = match accepted.await {
        Ok(accepted) => (
            StatusCode::OK,
            otlp::response(encoding, 0, accepted.warning()),
            None,
        ),
        Err(error) => (
            error.status(),
            otlp::status(encoding, &error),
            error.retry_after_secs(),
        ),
    };
    answer(status, encoding.content_type(), body, retry_after)
}

/// `POST /loki/api/v1/push`: 204, as Loki answers.
async fn loki_push(State(service): State<IngestService>, request: Request) -> Response {
    let protocol = Protocol::Loki;
    let accepted = async {
        let incoming = service.receive(protocol, request).await?;
        let (limit, max_lines) = (service.config().max_body_bytes, service.config().max_lines);
        let decode =
            move |media_type: &str, body: &[u8]| loki::decode(media_type, body, limit, max_lines);
        let lines = service.decode(protocol, &incoming, decode).await?;
        service.accept(&incoming, protocol, lines).await
    };
    match accepted.await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.problem().into_response(),
    }
}

/// `GET /es/`: the node's self-description, which clients and shippers ask first.
async fn es_info() -> Json<serde_json::Value> {
    Json(elasticsearch::info())
}

async fn es_bulk(State(service): State<IngestService>, request: Request) -> Response {
    bulk(service, None, request).await
}

async fn es_bulk_into(
    State(service): State<IngestService>,
    Path(index): Path<String>,
    request: Request,
) -> Response {
    bulk(service, Some(index), request).await
}

async fn bulk(service: IngestService, index: Option<String>, request: Request) -> Response {
    let protocol = Protocol::Elasticsearch;
    let started = Instant::now();
    let answered = async {
        let incoming = service.receive(protocol, request).await?;
        let media_type = elasticsearch::check_media_type(&incoming.media_type);
        service.counted(protocol, media_type)?;
        let max_lines = service.config().max_lines;
        let decode =
            move |_: &str, body: &[u8]| elasticsearch::decode(index.as_deref(), body, max_lines);
        let mut bulk = service.decode(protocol, &incoming, decode).await?;
        service.rejected_lines(protocol, bulk.rejected());
        let lines = std::mem::take(&mut bulk.lines);
        service.accept(&incoming, protocol, lines).await?;
        Ok(elasticsearch::answer(&bulk, started.elapsed().as_millis()))
    };
    match answered.await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => es_error(&error),
    }
}

/// Any other path under `/es`: Elasticsearch's 404, so a client sees a missing API, not a
/// broken server.
async fn es_unknown(OriginalUri(uri): OriginalUri, method: Method) -> Response {
    es_error(&IngestError::NotFound(format!(
        "no handler found for uri [{}] and method [{method}]: Ordo's ingest serves GET /es/ and _bulk only",
        uri.path()
    )))
}

async fn es_wrong_method(OriginalUri(uri): OriginalUri, method: Method) -> Response {
    es_error(&IngestError::MethodNotAllowed(format!(
        "Incorrect HTTP method for uri [{}] and method [{method}]",
        uri.path()
    )))
}

fn es_error(error: &IngestError) -> Response {
    let body = serde_json::to_vec(&elasticsearch::error_body(error)).expect("plain JSON");
    answer(
        error.status(),
        "application/json",
        body,
        error.retry_after_secs(),
    )
}

/// Adds `X-Elastic-Product: Elasticsearch` to every answer under `/es`, errors included:
/// official clients refuse answers without it.
async fn elastic_product(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(ELASTIC_PRODUCT, HeaderValue::from_static("Elasticsearch"));
    response
}

fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    retry_after: Option<u32>,
) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

//! The HTTP plumbing every Ordo API shares: the tenant header, problem+json fallbacks for
//! unknown routes and methods, request ids and spans, and the HTTP request metrics.
//!
//! An API crate exposes its routes without fallbacks or layers; [`finish`] adds them once. So
//! one process can merge several APIs on one port (`ordo dev`: command and query API) — axum
//! refuses to merge two routers that both have a fallback — and still count and trace every
//! request the same way.

use crate::problem::{self, Problem};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use ordo_domain::spec::TenantId;
use ordo_protocol::tenant::{DEFAULT_TENANT, TENANT_HEADER};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::time::Instant;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// The header that carries a request's id: the client's if it sent one, else a new UUID; the
/// answer echoes it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The value of header `name`, if present; the error (a `detail` for a 400) when it is not
/// visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| format!("header {name} must be visible ASCII"))
        })
        .transpose()
}

/// The media type of the request's `Content-Type`, lowercase, without parameters (`""`
/// without the header).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or a JSON-based `application/…+json` type.
pub fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// The tenant a request acts for: [`TENANT_HEADER`], or [`DEFAULT_TENANT`] without it. The
/// error is the `detail` of a 400 answer.
pub fn tenant(headers: &HeaderMap) -> Result<TenantId, String> {
    TenantId::parse(header_str(headers, TENANT_HEADER)?.unwrap_or(DEFAULT_TENANT))
        .map_err(|e| format!("header {TENANT_HEADER}: {}", e.reason))
}

/// `ordo_http_requests_total{route,method,status}` and
/// `ordo_http_request_duration_seconds{route,method}`. Routes are matched route templates, so
/// label values stay bounded.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers the instruments in `registry`; once per registry (a second registration of
    /// the same names is an error), so APIs served together share one `HttpMetrics`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ordo_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ordo_http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    pub fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// Turns a router of routes (state already supplied) into an application: problem+json
/// answers for unknown routes (404) and methods (405), `metrics` recorded for every matched
/// route, and for every request an id ([`REQUEST_ID_HEADER`], echoed in the answer and in
/// its problem document) and a span with method, route and id. Call it once, after merging
/// every API served on the port.
pub fn finish(routes: Router, metrics: HttpMetrics) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    // The last layer added is the outermost: the id is set first, then the span opened.
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(metrics, record))
        .layer(middleware::from_fn(scope_request_id))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The id [`SetRequestIdLayer`] gave the request; a client's id that is not visible ASCII
/// is kept in the header but left out of logs and problem documents.
fn request_id_of(request: &Request) -> Option<&str> {
    visible_request_id(request).and_then(|id| id.to_str().ok())
}

fn visible_request_id(request: &Request) -> Option<&HeaderValue> {
    request
        .extensions()
        .get::<RequestId>()
        .map(RequestId::header_value)
        .filter(|id| id.to_str().is_ok())
}

fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = request_id_of(request).unwrap_or_default(),
    )
}

/// Makes the request's id the one of every problem rendered while answering it. The header
/// value is shared, not copied: most requests render no problem.
async fn scope_request_id(request: Request, next: Next) -> Response {
    match visible_request_id(&request).cloned() {
        Some(id) => problem::with_request_id(id, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// The fallback for a path no route matches.
pub async fn not_found(request: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no route for {}", request.uri().path()),
    )
}

/// The fallback for a route that exists, called with a method it does not serve.
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts and times every request by its route template, so label values stay bounded.
async fn record(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The Prometheus text exposition of everything in `registry`, as served on `/metrics`.
pub fn render_metrics(registry: &Registry) -> String {
    // Encoding cannot fail for well-formed metric families.
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}

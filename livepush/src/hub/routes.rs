//! The handlers behind [`Hub::health_routes`](super::Hub::health_routes) and
//! [`Hub::admin_routes`](super::Hub::admin_routes).

use axum::extract::Extension;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Hub;
use crate::registry;

pub(super) async fn health(Extension(hub): Extension<Hub>) -> Response {
    let ready = hub.ready().await;
    let status = if ready.is_ok() && !hub.is_shutting_down() {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "broker": hub.broker_kind(),
        "broker_ready": ready.is_ok(),
        "broker_error": ready.err().map(|e| e.to_string()),
        "connections": hub.connection_count(),
        "shutting_down": hub.is_shutting_down(),
    }))
    .into_response()
}

pub(super) async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub(super) async fn ready(Extension(hub): Extension<Hub>) -> Response {
    match hub.ready().await {
        Ok(()) if !hub.is_shutting_down() => Json(json!({ "status": "ready" })).into_response(),
        Ok(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "broker": hub.broker_kind(), "error": error.to_string() })),
        )
            .into_response(),
    }
}

/// OpenMetrics output (`prometheus-client` writes `# EOF` and `_total` counters), so the
/// OpenMetrics media type.
pub(super) async fn metrics(Extension(hub): Extension<Hub>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        hub.metrics_text(),
    )
        .into_response()
}

pub(super) async fn catalog() -> Response {
    Json(registry::catalog()).into_response()
}

/// The document names the host the client asked, so its server entry is where it came from.
pub(super) async fn asyncapi(headers: axum::http::HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Json(
        registry::AsyncApi::default()
            .server(host, "/events")
            .document(),
    )
    .into_response()
}

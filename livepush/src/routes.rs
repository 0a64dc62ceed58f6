//! Adding the hub to an axum `Router`, and the operational routes that come with it.

use axum::extract::Extension;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::hub::Hub;
use crate::registry;

/// Adds livepush to a [`Router`] in one call.
///
/// `router.livepush(&hub)` makes the hub reachable from every `#[publish_event]` and
/// `#[subscribe_to_events]` handler routed so far, and adds the operational routes:
///
/// | route | answer |
/// | --- | --- |
/// | `GET /health` | JSON: broker kind, readiness, open connections |
/// | `GET /health/live` | 200 while the process serves requests |
/// | `GET /health/ready` | 200 when the broker can publish, else 503 |
/// | `GET /metrics` | Prometheus text format |
/// | `GET /events/catalog` | JSON [`Catalog`](crate::registry::Catalog) of routes and event types |
/// | `GET /events/asyncapi.json` | the [AsyncAPI 3.0 document](crate::registry::asyncapi), with the request's host as its server |
///
/// Call it after the routes that publish or subscribe (like any `.layer`), or use
/// [`Hub::layer`] and [`Hub::ops_routes`] separately.
///
/// ```
/// use axum::{routing::get, Router};
/// use livepush::{subscribe_to_events, Hub, LivepushRouter};
///
/// #[subscribe_to_events]
/// async fn events() {}
///
/// let hub = Hub::builder().build().unwrap();
/// let app: Router = Router::new().route("/events", get(events)).livepush(&hub);
/// # drop(app);
/// ```
pub trait LivepushRouter {
    /// Adds the hub and the operational routes.
    fn livepush(self, hub: &Hub) -> Self;
}

impl<S: Clone + Send + Sync + 'static> LivepushRouter for Router<S> {
    fn livepush(self, hub: &Hub) -> Self {
        self.merge(hub.ops_routes()).layer(hub.layer())
    }
}

impl Hub {
    /// The layer that makes the hub reachable from livepush handlers (an [`Extension`]).
    pub fn layer(&self) -> Extension<Hub> {
        Extension(self.clone())
    }

    /// `/health`, `/health/live`, `/health/ready`, `/metrics`, `/events/catalog` and
    /// `/events/asyncapi.json`.
    pub fn ops_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics))
            .route("/events/catalog", get(catalog))
            .route("/events/asyncapi.json", get(asyncapi))
            .layer(self.layer())
    }
}

async fn health(Extension(hub): Extension<Hub>) -> Response {
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

async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn ready(Extension(hub): Extension<Hub>) -> Response {
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

/// The body is the OpenMetrics text format (`prometheus-client` writes `# EOF` and `_total`
/// counters), so it goes out under the OpenMetrics media type that Prometheus negotiates;
/// labelling it `text/plain; version=0.0.4` made strict scrapers reject the `# EOF` line.
async fn metrics(Extension(hub): Extension<Hub>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        hub.metrics_text(),
    )
        .into_response()
}

async fn catalog() -> Response {
    Json(registry::catalog()).into_response()
}

/// The document names the host the client asked, so its server entry is where it came from.
async fn asyncapi(headers: axum::http::HeaderMap) -> Response {
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

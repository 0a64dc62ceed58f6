//! Adding the hub to an axum `Router`, and the operational routes that come with it.

use axum::extract::Extension;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::hub::Hub;
use crate::layer::HubLayer;
use crate::registry;

/// Adds livepush to a [`Router`] in one call.
///
/// `router.livepush(&hub)` makes the hub reachable from every `#[publish_event]` and
/// `#[subscribe_to_events]` handler routed so far, and adds the probes ([`Hub::health_routes`]):
///
/// | route | answer |
/// | --- | --- |
/// | `GET /health` | JSON: broker kind, readiness, open connections |
/// | `GET /health/live` | 200 while the process serves requests |
/// | `GET /health/ready` | 200 when the broker can publish, else 503 |
///
/// What describes the service from the inside, `/metrics`, `/events/catalog` (every
/// handler's name, module, file and line) and `/events/asyncapi.json`, is not added: mount [`Hub::admin_routes`] where only
/// operators reach it, on another listener or behind your authentication.
///
/// Call it after the routes that publish or subscribe (like any `.layer`), or use
/// [`Hub::layer`] and [`Hub::health_routes`] separately.
///
/// ```
/// use axum::{routing::get, Router};
/// use livepush::{subscribe_to_events, Hub, RouterExt};
///
/// #[subscribe_to_events]
/// async fn events() {}
///
/// let hub = Hub::builder().build().unwrap();
/// let app: Router = Router::new().route("/events", get(events)).livepush(&hub);
/// // /metrics and /events/catalog on a second router, served on an internal port
/// let admin: Router = hub.admin_routes();
/// # drop((app, admin));
/// ```
pub trait RouterExt {
    /// Adds the hub and the health routes.
    fn livepush(self, hub: &Hub) -> Self;
}

impl<S: Clone + Send + Sync + 'static> RouterExt for Router<S> {
    fn livepush(self, hub: &Hub) -> Self {
        self.merge(hub.health_routes()).layer(hub.layer())
    }
}

impl Hub {
    /// The layer that makes the hub reachable from livepush handlers; [`RouterExt::livepush`]
    /// adds it with the health routes.
    pub fn layer(&self) -> HubLayer {
        HubLayer::new(self.clone())
    }

    /// `/health`, `/health/live` and `/health/ready`: what load balancers and orchestrators
    /// probe. [`RouterExt::livepush`] adds them.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .layer(self.layer())
    }

    /// `/metrics` (OpenMetrics text), `/events/catalog` (the JSON
    /// [`Catalog`](crate::registry::Catalog): every publishing and subscribing handler with
    /// its module, source file and line, every event type) and `/events/asyncapi.json` (the
    /// [AsyncAPI 3.0 document](crate::registry::asyncapi), with the request's host as its
    /// server). For operators and client teams, not the public:
    /// serve it on a listener only they reach, or behind your authentication.
    ///
    /// ```
    /// use axum::{http::{HeaderMap, StatusCode}, middleware::{self, Next}, extract::Request, response::Response, Router};
    /// use livepush::{Hub, RouterExt};
    ///
    /// async fn operators_only(headers: HeaderMap, request: Request, next: Next) -> Result<Response, StatusCode> {
    ///     match headers.get("authorization").and_then(|v| v.to_str().ok()) {
    ///         Some("Bearer ops-secret") => Ok(next.run(request).await),
    ///         _ => Err(StatusCode::UNAUTHORIZED),
    ///     }
    /// }
    ///
    /// let hub = Hub::builder().build().unwrap();
    /// let app: Router = Router::new()
    ///     .livepush(&hub)
    ///     .merge(hub.admin_routes().route_layer(middleware::from_fn(operators_only)));
    /// # drop(app);
    /// ```
    pub fn admin_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
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

/// OpenMetrics output (`prometheus-client` writes `# EOF` and `_total` counters), so the
/// OpenMetrics media type.
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

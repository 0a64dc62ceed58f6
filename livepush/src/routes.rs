//! Adding the hub to an axum `Router`, and the operational routes that come with it.

use axum::Router;

use crate::hub::Hub;

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

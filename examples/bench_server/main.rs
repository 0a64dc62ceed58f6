//! # bench_server: the server of the bench protocol
//!
//! The smallest livepush app: `POST /publish` with any JSON object answers 200 echoing it and
//! publishes it as event `tick` on topic `bench`; `GET /events?topic=bench` streams it. The
//! load generator of `../shared/bench` measures it (see BENCHMARKS.md).
//!
//! Run:   cargo run --release --bin bench_server
//! Try:   curl -N 'localhost:3000/events?topic=bench'
//!        curl -X POST -H 'content-type: application/json' -d '{"seq":1}' localhost:3000/publish
//!
//! A body that is not a JSON object answers 4xx and publishes nothing. Also served: `/health`,
//! `/health/live`, `/health/ready`, `/metrics`, `/events/catalog`. Settings: `HOST`, `PORT`,
//! `REDIS_URL`, `LIVEPUSH_*` (raise `LIVEPUSH_MAX_CONNECTIONS` above 10,000 for big runs).

#[path = "../common/mod.rs"]
mod common;

use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, RouterExt};
use serde_json::{Map, Value};

/// Echoes the object; `#[publish_event]` publishes it once the 200 is decided. Anything but a
/// JSON object is refused by the extractor (400/415/422) and never published.
#[publish_event(topic = "bench", event = "tick")]
async fn publish(Json(body): Json<Map<String, Value>>) -> Json<Map<String, Value>> {
    Json(body)
}

/// `GET /events?topic=bench`.
#[subscribe_to_events]
async fn events() {}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let hub = common::hub_from_env();
    let app = Router::new()
        .route("/publish", post(publish))
        .route("/events", get(events))
        .livepush(&hub)
        // /metrics and /events/catalog: open here, as a demo (see the README on mounting them)
        .merge(hub.admin_routes());
    common::serve("bench_server", app, &hub).await;
}

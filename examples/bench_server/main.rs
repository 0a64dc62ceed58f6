//! # bench_server: the server of the bench protocol
//!
//! The smallest livepush app: `POST /publish` with any JSON object answers 200 echoing it and
//! publishes it as event `tick` on topic `bench` (or on `T` for `POST /publish?topic=T`);
//! `GET /events?topic=bench` streams it. The project's load generator, `benchmarks/loadgen/`,
//! measures it (see BENCHMARKS.md). `POST /state?topic=T` does the same as event `state`,
//! retained as `T`'s current value (docs/state.md), which every new subscriber of `T` gets
//! first (`livepush/benches/current_value.rs` measures how long that takes).
//!
//! Run:   cargo run --release --bin bench_server
//! Try:   curl -N 'localhost:3000/events?topic=bench'
//!        curl -X POST -H 'content-type: application/json' -d '{"seq":1}' localhost:3000/publish
//!
//! A body that is not a JSON object answers 4xx and publishes nothing. Also served: `/health`,
//! `/health/live`, `/health/ready`, `/metrics`, `/events/catalog`, `/events/asyncapi.json`.
//! Settings: `HOST`, `PORT`, `REDIS_URL` or `NATS_URL` (the broker), `LIVEPUSH_*` (raise `LIVEPUSH_MAX_CONNECTIONS` above
//! 10,000 for big runs); the first-head deadline and the idle timeout default to 600 s here, not
//! 10 s and 60 s (see `main`).

#[path = "../common/mod.rs"]
mod common;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, RouterExt, Topic};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `?topic=T` of `POST /publish`; `bench` when absent.
#[derive(Deserialize)]
struct Target {
    #[serde(default = "bench")]
    topic: String,
}

fn bench() -> String {
    "bench".to_owned()
}

/// Echoes the object; `#[publish_event]` publishes it on `?topic=` (default `bench`) once the
/// 200 is decided. Anything but a JSON object is refused by the extractor (400/415/422), an
/// invalid topic with 400, and nothing is published.
#[publish_event(topic = "{target.topic}", event = "tick")]
async fn publish(
    Query(target): Query<Target>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Map<String, Value>>, StatusCode> {
    Topic::new(&target.topic).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Json(body))
}

/// As `publish`, as event `state` retained as the topic's current value: a new subscriber of the
/// topic gets the latest first.
#[publish_event(topic = "{target.topic}", event = "state", retain)]
async fn state(
    Query(target): Query<Target>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Map<String, Value>>, StatusCode> {
    Topic::new(&target.topic).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Json(body))
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
        .route("/state", post(state))
        .route("/events", get(events))
        .livepush(&hub)
        // /metrics and /events/catalog: open here, as a demo (docs/deployment.md: mounting them)
        .merge(hub.admin_routes());
    // The load generator opens its publishing connections first and sends their first request
    // only once every subscriber is connected (tens of seconds at 19,000 subscribers), so the
    // first-head deadline of 10 s (and the idle timeout of 60 s) would close them before the
    // measurement starts. A public server keeps the defaults; the bench server waits 10
    // minutes for either unless told otherwise.
    let ten_minutes = std::time::Duration::from_secs(600);
    common::serve_with("bench_server", app, &hub, |mut serve| {
        if std::env::var_os("LIVEPUSH_HEADER_READ_TIMEOUT_SECS").is_none() {
            serve = serve.header_read_timeout(ten_minutes);
        }
        if std::env::var_os("LIVEPUSH_IDLE_TIMEOUT_SECS").is_none() {
            serve = serve.idle_timeout(ten_minutes);
        }
        serve
    })
    .await;
}

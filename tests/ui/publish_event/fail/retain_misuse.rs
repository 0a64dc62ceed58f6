use axum::Json;
use livepush::publish_event;

// a TTL of zero seconds
#[publish_event(topic = "a", retain, retain_ttl = 0)]
async fn zero() -> Json<u8> {
    Json(1)
}

// a TTL without `retain`
#[publish_event(topic = "b", retain_ttl = 5)]
async fn ttl_alone() -> Json<u8> {
    Json(1)
}

// `retain` is a flag
#[publish_event(topic = "c", retain = "yes")]
async fn valued() -> Json<u8> {
    Json(1)
}

// a key is per domain event type (`#[sse(retain_key = ...)]`), not per handler
#[publish_event(topic = "d", retain, retain_key = "{id}")]
async fn keyed() -> Json<u8> {
    Json(1)
}

fn main() {}

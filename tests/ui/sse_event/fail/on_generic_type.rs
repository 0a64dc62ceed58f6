use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "changed", topic = "items")]
struct Changed<T> {
    item: T,
}

fn main() {}

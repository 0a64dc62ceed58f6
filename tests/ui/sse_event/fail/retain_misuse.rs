use livepush::SseEvent;
use serde::Serialize;

// the key names no field
#[derive(Serialize, SseEvent)]
#[sse(event = "progress", topic = "jobs", retain, retain_key = "{job}")]
struct Progress {
    id: u64,
}

// a key and a TTL without `retain`, and a TTL of more than a year
#[derive(Serialize, SseEvent)]
#[sse(event = "a", topic = "a", retain_key = "{id}", retain_ttl = 60)]
struct Alone {
    id: u64,
}

#[derive(Serialize, SseEvent)]
#[sse(event = "b", topic = "b", retain, retain_ttl = 40000000)]
struct TooLong {
    id: u64,
}

fn main() {}

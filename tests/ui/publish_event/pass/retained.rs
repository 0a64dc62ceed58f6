// `retain` (with an optional `retain_ttl` in seconds) publishes the value as state: the broker
// keeps it as the topic's current value, and the registry says so.
use axum::extract::Path;
use axum::Json;
use livepush::publish_event;
use serde::Serialize;

#[derive(Serialize)]
struct RoomTopic {
    text: String,
}

#[publish_event(topic = "room:{room}", event = "room_topic", retain)]
async fn set_topic(Path(room): Path<String>, Json(text): Json<String>) -> Json<RoomTopic> {
    let _ = room;
    Json(RoomTopic { text })
}

#[publish_event(topic = "jobs", event = "job_progress", retain, retain_ttl = 60)]
async fn progress() -> Json<u8> {
    Json(40)
}

fn main() {
    let _ = (set_topic, progress);
    let route = |event: &str| {
        livepush::registry::publish_routes()
            .find(|r| r.event == event)
            .map(|r| (r.retained, r.retain_ttl_secs))
            .unwrap()
    };
    assert_eq!(route("room_topic"), (true, None));
    assert_eq!(route("job_progress"), (true, Some(60)));
}

// `#[sse(retain)]` makes the type state: `Hub::emit` publishes it retained, per `retain_key`
// (a template over fields) and for `retain_ttl` seconds when given.
use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "room_topic", topic = "room:{room}", retain)]
struct RoomTopic {
    room: String,
    text: String,
}

#[derive(Serialize, SseEvent)]
#[sse(event = "job_progress", topic = "jobs", retain, retain_key = "job:{id}", retain_ttl = 600)]
struct JobProgress {
    id: u64,
    done: u8,
}

#[derive(Serialize, SseEvent)]
#[sse(event = "tick", topic = "ticks")]
struct Tick;

fn main() {
    let topic = RoomTopic { room: "lobby".into(), text: "hi".into() };
    let retain = topic.retain().unwrap();
    assert_eq!((retain.key_str(), retain.time_to_live()), ("", None));
    let progress = JobProgress { id: 17, done: 40 }.retain().unwrap();
    assert_eq!(progress.key_str(), "job:17");
    assert_eq!(progress.time_to_live(), Some(std::time::Duration::from_secs(600)));
    assert!(Tick.retain().is_none());
    let entry = livepush::registry::event_type_of::<JobProgress>().unwrap();
    assert_eq!((entry.retained, entry.retain_ttl_secs), (true, Some(600)));
    let _ = (topic.text, JobProgress { id: 1, done: 0 }.done);
}

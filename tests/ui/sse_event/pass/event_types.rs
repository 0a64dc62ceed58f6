//! `#[derive(SseEvent)]`: constants, topics from (nested, raw-named) fields, the registry.

use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize)]
struct Org {
    id: u32,
}

#[derive(Serialize, SseEvent)]
#[sse(
    event = "sync.completed",
    topic = "user:{user_id}/{org.id}/{type}",
    category = "data_sync"
)]
struct SyncCompleted {
    user_id: u64,
    org: Org,
    r#type: &'static str,
}

#[derive(Serialize, SseEvent)]
#[sse(event = "maintenance")]
#[sse(topic = "broadcast")]
struct Maintenance(u32);

#[derive(Serialize, SseEvent)]
#[sse(event = "tick", topic = "ticks")]
struct Tick;

fn main() {
    let event = SyncCompleted {
        user_id: 42,
        org: Org { id: 7 },
        r#type: "full",
    };
    assert_eq!(event.topic(), "user:42/7/full");
    assert_eq!(SyncCompleted::EVENT, "sync.completed");
    assert_eq!(SyncCompleted::TOPIC, "user:{user_id}/{org.id}/{type}");
    assert_eq!(SyncCompleted::CATEGORY, Some("data_sync"));
    assert_eq!(Maintenance(5).topic(), "broadcast");
    assert_eq!(Maintenance::CATEGORY, None);
    assert_eq!(Tick.topic(), "ticks");
    assert!(livepush::registry::has_mapping_for::<SyncCompleted>());
    assert!(livepush::registry::has_mapping_for::<Tick>());
    assert!(!livepush::registry::has_mapping_for::<Org>());
    let entry = livepush::registry::event_type_of::<SyncCompleted>().unwrap();
    assert_eq!(
        (entry.type_name, entry.event),
        ("SyncCompleted", "sync.completed")
    );
    assert_eq!(entry.topic, SyncCompleted::TOPIC);
    assert!(entry.file.ends_with("event_types.rs"), "{}", entry.file);
}

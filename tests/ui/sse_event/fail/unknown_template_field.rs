use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "sync.completed", topic = "user:{usr_id}")]
struct SyncCompleted {
    user_id: u64,
    accounts: u32,
}

fn main() {}

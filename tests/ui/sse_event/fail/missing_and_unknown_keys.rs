use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(topic = "tickets", categroy = "support")]
struct TicketClosed {
    id: u64,
}

fn main() {}

use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "ticket closed", topic = "tickets", category = "")]
struct TicketClosed {
    id: u64,
}

fn main() {}

use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
struct TicketClosed {
    id: u64,
}

fn main() {}

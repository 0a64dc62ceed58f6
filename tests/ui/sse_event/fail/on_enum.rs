use livepush::SseEvent;
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "ticket", topic = "tickets")]
enum TicketEvent {
    Created { id: u64 },
    Closed { id: u64 },
}

fn main() {}

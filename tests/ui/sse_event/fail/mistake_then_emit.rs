// One mistake in `#[sse(...)]` is one error: the type still implements `SseEvent` (a stub), so
// the code that emits it adds no "not an SSE event type".
use livepush::{Hub, SseEvent};
use serde::Serialize;

#[derive(Serialize, SseEvent)]
#[sse(event = "ticket.closed", topc = "ticket:{id}")]
struct TicketClosed {
    id: u64,
}

async fn close(hub: &Hub) {
    let _ = hub.emit(&TicketClosed { id: 1 }).await;
}

fn main() {
    drop(close);
}

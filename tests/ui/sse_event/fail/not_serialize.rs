use livepush::SseEvent;

#[derive(SseEvent)]
#[sse(event = "ticket.closed", topic = "ticket:{id}")]
struct TicketClosed {
    id: u64,
}

fn main() {}

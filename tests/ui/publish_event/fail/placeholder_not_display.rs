use axum::Json;
use livepush::publish_event;
use serde::Serialize;

#[derive(Serialize)]
struct Owner {
    id: u64,
}

#[derive(Serialize)]
struct Ticket {
    owner: Owner,
}

// `{owner}` is a struct without `Display`; `{owner.id}` would work.
#[publish_event(topic = "owner:{owner}", event = "ticket_created")]
async fn create() -> Json<Ticket> {
    Json(Ticket {
        owner: Owner { id: 1 },
    })
}

fn main() {}

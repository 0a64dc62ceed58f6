use axum::Json;
use livepush::publish_event;
use serde::Serialize;

#[derive(Serialize)]
struct Comment {
    id: u64,
}

fn only_id(id: u64) -> u64 {
    id
}

#[publish_event(topic = "comments", data = only_id)]
async fn create() -> Json<Comment> {
    Json(Comment { id: 1 })
}

fn main() {}

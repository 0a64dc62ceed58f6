use axum::http::StatusCode;
use axum::Json;
use livepush::publish_event;
use serde::Serialize;

#[derive(Serialize)]
struct Comment {
    id: u64,
    text: String,
}

// `ticket_id` is neither an argument nor a field of the published `Comment`.
#[publish_event(topic = "ticket:{ticket_id}", event = "comment_created")]
async fn create(Json(text): Json<String>) -> (StatusCode, Json<Comment>) {
    (StatusCode::CREATED, Json(Comment { id: 1, text }))
}

fn main() {}

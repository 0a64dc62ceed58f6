use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "comments", event = "created", topic = "tickets")]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

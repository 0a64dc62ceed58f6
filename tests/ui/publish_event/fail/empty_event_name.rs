use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "comments", event = "")]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "comments", evnet = "comment_created", channel = "x")]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

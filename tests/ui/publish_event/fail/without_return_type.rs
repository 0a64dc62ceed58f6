use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "comments", event = "comment_created")]
async fn create(Json(text): Json<String>) {
    drop(text);
}

fn main() {}

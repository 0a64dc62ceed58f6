use axum::Json;
use livepush::publish_event;

#[publish_event(event = "comment_created")]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

use axum::Json;
use livepush::publish_event;

struct Comments;

#[publish_event(topic = "comments")]
impl Comments {
    async fn create(Json(text): Json<String>) -> Json<String> {
        Json(text)
    }
}

fn main() {}

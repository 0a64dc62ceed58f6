use axum::Json;
use livepush::publish_event;

const TOPIC: &str = "comments";

#[publish_event(topic = TOPIC, event = created, data = "only_id", category)]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

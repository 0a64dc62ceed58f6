use axum::Json;
use livepush::publish_event;

// A line break would end the SSE `event:` line and let the rest forge a frame.
#[publish_event(topic = "comments", event = "created\ndata: forged")]
async fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

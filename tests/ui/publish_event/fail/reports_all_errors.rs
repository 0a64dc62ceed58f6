use axum::Json;
use livepush::publish_event;

// Every problem of every stacked attribute is reported in one build.
#[publish_event(topic = "comments", event = "comment created")]
#[publish_event(topic = "comment:{", category = "a,b", colour = "red")]
fn create(Json(text): Json<String>) -> Json<String> {
    Json(text)
}

fn main() {}

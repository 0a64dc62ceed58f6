use axum::Json;
use livepush::publish_event;

// A half-typed body is one error, rustc's, at the mistake: the macro does not parse the body.
#[publish_event(topic = "comments")]
async fn create(Json(text): Json<String>) -> Json<String> {
    let copy = ;
    Json(text)
}

fn main() {}

use axum::response::{IntoResponse, Response};
use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "comments", event = "comment_created")]
async fn create(Json(text): Json<String>) -> impl IntoResponse {
    let response: Response = Json(text).into_response();
    response
}

fn main() {}

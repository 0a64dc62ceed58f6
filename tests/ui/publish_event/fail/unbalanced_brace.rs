use axum::extract::Path;
use axum::Json;
use livepush::publish_event;

#[publish_event(topic = "ticket:{id", event = "renamed")]
async fn rename(Path(id): Path<u64>) -> Json<u64> {
    Json(id)
}

#[publish_event(topic = "ticket:id}", event = "renamed")]
async fn rename_again(Path(id): Path<u64>) -> Json<u64> {
    Json(id)
}

fn main() {}

//! Handlers as the macros expand them, for tests that build their own hubs:
//! `#[subscribe_to_events] async fn events() {}` and
//! `#[publish_event(topic = "comments", event = "created")]` on `create`.

use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use livepush::__private::{encode, PublishContext, SubscribeContext};
use serde_json::Value;

/// `GET /events?topic=a,b`.
pub async fn events(ctx: SubscribeContext) -> Response {
    ctx.from_query().await
}

/// `POST /comments`: answers 201 with the body and publishes it as `created` on `comments`.
pub async fn create(
    publish: PublishContext,
    Json(comment): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let response = (StatusCode::CREATED, Json(comment));
    publish
        .publish(
            "created",
            None,
            "comments".to_owned(),
            &encode(&response.1 .0),
        )
        .await;
    response
}

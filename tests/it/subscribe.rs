//! `#[subscribe_to_events]` over real HTTP: topics, auth, headers, heartbeats, refusals. Its
//! routes ([`start`]) also serve `replay.rs`, `shutdown.rs` and `bad_input.rs`.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use livepush::{subscribe_to_events, Hub, LivepushRouter, Subscription, Topics};
use serde_json::{json, Value};

use crate::support;
use crate::support::{SseClient, TestServer};

/// A demo bearer-token extractor: `Authorization: Bearer user-<id>`.
struct AuthUser {
    id: u64,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer user-"))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let id = token.parse().map_err(|_| StatusCode::UNAUTHORIZED)?;
        Ok(AuthUser { id })
    }
}

#[subscribe_to_events]
async fn events() {}

/// Topics chosen after the auth extractor ran: the user's own topic plus broadcast.
#[subscribe_to_events]
async fn my_events(user: AuthUser) -> Topics {
    Topics::one(format!("user:{}", user.id)).and_broadcast()
}

/// A handler that refuses some users itself.
#[subscribe_to_events]
async fn admin_events(user: AuthUser) -> Result<Subscription, StatusCode> {
    if user.id != 1 {
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(Subscription::new(Topics::one("admin")))
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/me/events", get(my_events))
        .route("/admin/events", get(admin_events))
        .livepush(hub)
}

pub(crate) async fn start(hub: &Hub) -> TestServer {
    TestServer::start(app(hub)).await
}

pub(crate) async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json");
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn sse_headers_are_exact() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    let client = SseClient::connect(&server.url("/events?topic=a")).await;
    assert_eq!(client.status, 200);
    assert_eq!(client.headers["content-type"], "text/event-stream");
    assert_eq!(client.headers["cache-control"], "no-cache, no-transform");
    assert_eq!(client.headers["x-accel-buffering"], "no");
    assert!(client.headers.get("content-length").is_none());
}

#[tokio::test]
async fn handler_chosen_topics_run_after_auth() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;

    let response = SseClient::request(&server.url("/me/events"), &[]).await;
    assert_eq!(response.status(), 401);

    let mut me = SseClient::connect_with(
        &server.url("/me/events"),
        &[("authorization", "Bearer user-7")],
    )
    .await;
    let mut other = SseClient::connect_with(
        &server.url("/me/events"),
        &[("authorization", "Bearer user-8")],
    )
    .await;
    hub.publish("user:7", "private", &json!({"to": 7}))
        .await
        .unwrap();
    hub.publish("broadcast", "all", &json!({"to": "all"}))
        .await
        .unwrap();

    assert_eq!(me.next().await.event, "private");
    assert_eq!(me.next().await.event, "all");
    // user 8 never sees user 7's event
    assert_eq!(other.next().await.event, "all");
}

#[tokio::test]
async fn handler_errors_are_answered_as_is() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    let response = SseClient::request(
        &server.url("/admin/events"),
        &[("authorization", "Bearer user-2")],
    )
    .await;
    assert_eq!(response.status(), 403);
    let mut admin = SseClient::connect_with(
        &server.url("/admin/events"),
        &[("authorization", "Bearer user-1")],
    )
    .await;
    hub.publish("admin", "audit", &json!({})).await.unwrap();
    assert_eq!(admin.next().await.event, "audit");
}

#[tokio::test]
async fn the_authorize_hook_refuses_topics_with_403() {
    let hub = Hub::builder()
        .authorize(|parts, topic| async move {
            !topic.as_str().starts_with("private:") || parts.headers.contains_key("x-staff")
        })
        .build()
        .unwrap();
    let server = start(&hub).await;
    let (status, body) =
        error_of(SseClient::request(&server.url("/events?topic=public,private:x"), &[]).await)
            .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");
    assert!(body["message"].as_str().unwrap().contains("private:x"));
    SseClient::connect_with(
        &server.url("/events?topic=public,private:x"),
        &[("x-staff", "1")],
    )
    .await;
    assert_eq!(hub.connection_count(), 1);
}

#[tokio::test]
async fn heartbeats_are_comment_lines_on_idle_streams() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_millis(200))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let response = SseClient::request(&server.url("/events?topic=quiet"), &[]).await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.matches(": heartbeat\n\n").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("heartbeats arrive")
            .expect("stream open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.starts_with("retry: "), "{seen:?}");
}

#[tokio::test]
async fn the_connection_cap_answers_429_with_retry_after() {
    let hub = Hub::builder().max_connections(2).build().unwrap();
    let server = start(&hub).await;
    let a = SseClient::connect(&server.url("/events?topic=a")).await;
    let _b = SseClient::connect(&server.url("/events?topic=a")).await;
    let response = SseClient::request(&server.url("/events?topic=a"), &[]).await;
    assert_eq!(response.headers()["retry-after"], "5");
    let (status, body) = error_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "too_many_connections");
    // a slot comes back when a client leaves
    drop(a);
    support::eventually("slot released", || async { hub.connection_count() == 1 }).await;
    SseClient::connect(&server.url("/events?topic=a")).await;
}

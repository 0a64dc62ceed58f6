//! `#[subscribe_to_events]` over real HTTP: topics, auth, headers, heartbeats, refusals, replay.

mod support;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use livepush::{subscribe_to_events, Hub, RouterExt, Subscription, Topics};
use serde_json::{json, Value};
use support::{SseClient, TestServer};

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

async fn start(hub: &Hub) -> TestServer {
    TestServer::start(app(hub)).await
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
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
async fn bad_subscriptions_get_400_with_a_json_error() {
    let hub = Hub::builder()
        .max_topics_per_subscription(3)
        .build()
        .unwrap();
    let server = start(&hub).await;
    for (query, code) in [
        ("/events", "no_topics"),
        ("/events?topic=", "no_topics"),
        ("/events?topic=a%0Ab", "invalid_topic"),
        ("/events?topic=a%0Db", "invalid_topic"),
        ("/events?topic=a%00b", "invalid_topic"),
        ("/events?topic=a%20b", "invalid_topic"),
        ("/events?topic=%FF%FE", "invalid_topic"),
        ("/events?topic=a,b,c,d", "too_many_topics"),
        ("/events?topic=a&lastEventId=-1", "invalid_last_event_id"),
        ("/events?topic=a&category=nope", "unknown_category"),
    ] {
        let (status, body) = error_of(SseClient::request(&server.url(query), &[]).await).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"], code, "{query}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let long = "a".repeat(livepush::Topic::MAX_LEN + 1);
    let (status, body) =
        error_of(SseClient::request(&server.url(&format!("/events?topic={long}")), &[]).await)
            .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_topic"))
    );
    let (status, _) = error_of(
        SseClient::request(&server.url("/events?topic=a"), &[("last-event-id", "abc")]).await,
    )
    .await;
    assert_eq!(status, 400);
    // the server is still fine
    SseClient::connect(&server.url("/events?topic=a")).await;
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

#[tokio::test]
async fn replay_sends_missed_events_after_last_event_id_then_live_ones() {
    let hub = Hub::builder()
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let mut first = SseClient::connect(&server.url("/events?topic=r1,r2")).await;
    hub.publish("r1", "e", &json!(0)).await.unwrap();
    let last = first.next().await.id;
    drop(first);
    let mut missed = Vec::new();
    for i in 1..=5 {
        let topic = if i % 2 == 0 { "r1" } else { "r2" };
        missed.push(
            hub.publish(topic, "e", &json!(i))
                .await
                .unwrap()
                .to_string(),
        );
    }
    let mut again = SseClient::connect_with(
        &server.url("/events?topic=r1,r2"),
        &[("last-event-id", &last)],
    )
    .await;
    for id in &missed {
        assert_eq!(&again.next().await.id, id);
    }
    let live = hub.publish("r2", "e", &json!("live")).await.unwrap();
    assert_eq!(again.next().await.id, live.to_string());
    // also through the query parameter, for clients that cannot set headers
    let mut by_query =
        SseClient::connect(&server.url(&format!("/events?topic=r1,r2&lastEventId={}", missed[3])))
            .await;
    assert_eq!(by_query.next().await.id, missed[4]);
    assert_eq!(by_query.next().await.id, live.to_string());
}

#[tokio::test]
async fn an_id_history_cannot_vouch_for_gets_the_reset_event_first() {
    let hub = Hub::builder()
        .replay(2, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let first = hub.publish("t", "e", &json!(1)).await.unwrap();
    for i in 2..=4 {
        hub.publish("t", "e", &json!(i)).await.unwrap();
    }
    let mut client = SseClient::connect_with(
        &server.url("/events?topic=t"),
        &[("last-event-id", &first.to_string())],
    )
    .await;
    let reset = client.next().await;
    assert_eq!(reset.event, livepush::sse::RESET.as_str());
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "history_unavailable");
    // then what is still retained: the last two
    let three = client.next().await;
    assert_eq!(three.data, "3");
    assert_eq!(client.next().await.data, "4");
    // The reset carries the id just below what follows it: a client that reconnects with it
    // (having seen nothing more) is owed exactly the retained events, without a second reset.
    let three_id: u64 = three.id.parse().unwrap();
    assert_eq!(reset.id, (three_id - 1).to_string(), "the reset's id");
    let mut again = SseClient::connect_with(
        &server.url("/events?topic=t"),
        &[("last-event-id", &reset.id)],
    )
    .await;
    assert_eq!(again.next().await.data, "3", "no second reset");
    assert_eq!(again.next().await.data, "4");
}

#[tokio::test]
async fn shutdown_ends_every_stream() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    let mut a = SseClient::connect(&server.url("/events?topic=a")).await;
    let mut b = SseClient::connect(&server.url("/events?topic=b,c")).await;
    hub.shutdown();
    assert!(a.ended_within(Duration::from_secs(5)).await);
    assert!(b.ended_within(Duration::from_secs(5)).await);
    let response = SseClient::request(&server.url("/events?topic=a"), &[]).await;
    assert_eq!(response.status(), 503);
    support::eventually("gauges back to zero", || async {
        hub.connection_count() == 0
    })
    .await;
    assert!(hub.subscriber_counts().is_empty());
}

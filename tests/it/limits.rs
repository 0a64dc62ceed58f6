//! Size limits: `max_event_bytes` (an error on `Hub::publish`, fail-open, counted and logged on the
//! macro path), axum's request body limit on publishing routes, topics per subscription and topic
//! length.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{
    publish_event, subscribe_to_events, Hub, LivepushRouter, PublishError, MAX_TOPIC_LEN,
};
use serde_json::{json, Value};

use crate::support::{capture_logs, http, metric, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

#[publish_event(topic = "notes", event = "note_created")]
async fn create_note(Json(note): Json<Value>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(note))
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/notes", post(create_note))
        .livepush(hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_publish_refuses_an_oversized_event_with_an_error() {
    let hub = Hub::builder().max_event_bytes(1024).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut client = SseClient::connect(&server.url("/events?topic=notes")).await;

    let big = json!({ "text": "x".repeat(2000) });
    let error = hub.publish("notes", "big", &big).await.unwrap_err();
    assert!(
        matches!(error, PublishError::TooLarge { size, max: 1024 } if size > 2000),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("LIVEPUSH_MAX_EVENT_BYTES"),
        "{error}"
    );
    // exactly at the limit is fine: the limit counts the JSON payload
    let fits = json!({ "t": "y".repeat(1024 - 8) });
    assert_eq!(serde_json::to_vec(&fits).unwrap().len(), 1024);
    hub.publish("notes", "fits", &fits).await.unwrap();

    assert_eq!(
        client.next().await.event,
        "fits",
        "the oversized event was never delivered"
    );
    let text = hub.metrics_text();
    assert_eq!(
        metric(&text, "livepush_publish_errors_total{reason=\"too_large\"}"),
        1.0
    );
    assert_eq!(metric(&text, "livepush_events_published_total"), 1.0);
}

// One thread, so the subscriber set for this thread sees the server's logs too.
#[tokio::test(flavor = "current_thread")]
async fn the_macro_path_fails_open_on_an_oversized_event_counted_and_logged() {
    let (logs, _default) = capture_logs("warn");

    let hub = Hub::builder().max_event_bytes(1024).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut client = SseClient::connect(&server.url("/events?topic=notes")).await;

    let big = json!({ "text": "x".repeat(2000) });
    let response = http()
        .post(server.url("/notes"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "the handler's answer is unchanged");
    assert_eq!(response.json::<Value>().await.unwrap(), big);

    let small = json!({ "text": "ok" });
    let response = http()
        .post(server.url("/notes"))
        .json(&small)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event = client.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap(),
        small,
        "only the small note arrived"
    );

    assert_eq!(
        metric(
            &hub.metrics_text(),
            "livepush_publish_errors_total{reason=\"too_large\"}"
        ),
        1.0
    );
    let logs = logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("publish failed"))
        .unwrap_or_else(|| panic!("no publish warning in {logs:?}"));
    assert!(
        line.contains("topic=\"notes\"") || line.contains("topic=notes"),
        "{line}"
    );
    let size = serde_json::to_vec(&big).unwrap().len();
    assert!(line.contains(&format!("size={size}")), "{line}");
    assert!(line.contains("note_created"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_routes_keep_axums_2_mb_body_limit() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let huge = json!({ "text": "x".repeat(3 << 20) });
    let response = http()
        .post(server.url("/notes"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // just under the limit is read, and then refused by max_event_bytes (fail-open: 201)
    let under = json!({ "text": "x".repeat((2 << 20) - 100) });
    let response = http()
        .post(server.url("/notes"))
        .json(&under)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let text = hub.metrics_text();
    assert_eq!(metric(&text, "livepush_events_published_total"), 0.0);
    assert_eq!(
        metric(&text, "livepush_publish_errors_total{reason=\"too_large\"}"),
        1.0
    );
    // the server is fine afterwards
    let response = http()
        .post(server.url("/notes"))
        .json(&json!({"t": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_per_subscription_and_topic_length_are_capped() {
    let hub = Hub::builder()
        .max_topics_per_subscription(3)
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let _ok = SseClient::connect(&server.url("/events?topic=a,b,c")).await;
    // duplicates count once
    let _dups = SseClient::connect(&server.url("/events?topic=a,b,c,a&topic=b")).await;
    let response = SseClient::request(&server.url("/events?topic=a,b,c,d"), &[]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_topics");
    assert!(
        body["message"].as_str().unwrap().contains("limit is 3"),
        "{body}"
    );

    let longest = "t".repeat(MAX_TOPIC_LEN);
    let _long = SseClient::connect(&server.url(&format!("/events?topic={longest}"))).await;
    let response = SseClient::request(&server.url(&format!("/events?topic={longest}x")), &[]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_topic");
    assert!(
        body["message"].as_str().unwrap().contains("257 bytes"),
        "{body}"
    );
    assert_eq!(hub.connection_count(), 3);
}

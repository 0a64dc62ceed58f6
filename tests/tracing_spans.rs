//! Tracing spans carry the connection id and topics, and the topic and event of a publish.
//!
//! A process of its own with a global subscriber: a thread-local one (`capture_logs`) shares the
//! process with other tests' threads, and tracing caches per-callsite interest across them, so
//! an event of the test could go unrecorded now and then.

// The shared helpers of `tests/it`; this binary uses a part of them, the rest is not dead code
// there (hence the allow, on this binary's copy only).
#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, LivepushRouter};
use support::observe::capture_logs_globally;
use support::{eventually, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new().route("/events", get(events)).livepush(hub)
}

#[tokio::test]
async fn spans_name_the_connection_and_its_topics_and_the_published_event() {
    let logs = capture_logs_globally("livepush=debug");

    let hub = Hub::builder().max_event_bytes(64).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut client = SseClient::connect(&server.url("/events?topic=room:1,room:2")).await;
    // an error inside the publish span carries its topic and event
    assert!(hub
        .publish("room:1", "said", &"x".repeat(100))
        .await
        .is_err());
    hub.publish("room:1", "said", &"hi").await.unwrap();
    client.next().await;
    drop(client);
    eventually("closed", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 0 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let text = logs.text();
    let opened = text
        .lines()
        .find(|l| l.contains("stream opened"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        opened.contains("livepush.connection{conn=")
            && opened.contains("room:1")
            && opened.contains("room:2"),
        "{opened}"
    );
    let closed = text
        .lines()
        .find(|l| l.contains("stream closed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(closed.contains("livepush.connection{conn="), "{closed}");
    let published = text
        .lines()
        .find(|l| l.contains("livepush.publish{") && l.contains("close"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        published.contains("room:1") && published.contains("said"),
        "{published}"
    );
}

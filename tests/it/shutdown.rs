//! Graceful shutdown: open streams end at once with a clean close, the server exits promptly,
//! publishes in flight complete, and new subscriptions are refused.
//!
//! "Promptly" is proved without a clock: the servers here get a drain deadline of an hour, so a
//! server that exits within [`EXIT_CEILING`] (a generous bound for a loaded machine, far below
//! the hour) did not wait for the deadline: the streams ended themselves.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, Hub, RouterExt};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::subscribe::start;
use crate::support;
use crate::support::{http, metric, raw_get, GracefulServer, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

/// A drain deadline no test reaches.
const NEVER: Duration = Duration::from_secs(3600);

/// How long a test waits for what a shutdown does without the drain deadline.
const EXIT_CEILING: Duration = Duration::from_secs(30);

/// A graceful server whose drain deadline is never what ends it.
async fn graceful(hub: &Hub) -> GracefulServer {
    GracefulServer::start_with(app(hub), hub, |serve| serve.drain_timeout(NEVER)).await
}

/// Told when `create_order` has started.
static ORDER_ENTERED: Notify = Notify::const_new();

/// Lets `create_order` finish.
static ORDER_RELEASED: Notify = Notify::const_new();

/// A publishing handler that finishes only when the test lets it, so it is in flight when the
/// shutdown signal comes, whatever the machine's speed.
#[publish_event(topic = "orders", event = "order_created")]
async fn create_order(Json(order): Json<Value>) -> (StatusCode, Json<Value>) {
    ORDER_ENTERED.notify_one();
    ORDER_RELEASED.notified().await;
    (StatusCode::CREATED, Json(order))
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/orders", post(create_order))
        .livepush(hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_100_open_streams_ends_them_all_without_waiting_for_the_drain_deadline() {
    let hub = Hub::builder().build().unwrap();
    let mut server = graceful(&hub).await;
    let mut clients = Vec::new();
    for i in 0..100 {
        clients
            .push(SseClient::connect(&server.url(&format!("/events?topic=t{},all", i % 10))).await);
    }
    assert_eq!(hub.connection_count(), 100);
    hub.publish("all", "before", &json!({"n": 1}))
        .await
        .unwrap();
    for client in &mut clients {
        assert_eq!(client.next().await.event, "before");
    }

    let started = Instant::now();
    server.shutdown();
    let handle = std::mem::replace(&mut server.handle, tokio::spawn(async {}));
    tokio::time::timeout(EXIT_CEILING, handle)
        .await
        .expect("the server exits without waiting for its drain deadline")
        .expect("server task");
    let took = started.elapsed();
    eprintln!("graceful shutdown with 100 open streams took {took:?}");
    for client in &mut clients {
        assert!(
            client.ended_within(EXIT_CEILING).await,
            "every stream ended cleanly"
        );
    }
    assert_eq!(hub.connection_count(), 0);
    assert!(hub.subscriber_counts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_a_clean_close_on_shutdown() {
    let hub = Hub::builder().build().unwrap();
    let mut server = graceful(&hub).await;
    let mut stream = raw_get(server.addr, b"/events?topic=a", &[]).await;
    assert_eq!(stream.status, 200);
    stream.read_until(b"retry:").await;
    server.shutdown();
    stream.read_to_end().await;
    // The documented behaviour: no final event, the chunked body simply ends.
    assert!(
        stream.body.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&stream.body)
    );
    assert!(
        !stream.body_text().contains("event:"),
        "no event is sent on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_flight_complete_during_shutdown() {
    let hub = Hub::builder().build().unwrap();
    let mut server = graceful(&hub).await;
    let mut watcher = SseClient::connect(&server.url("/events?topic=orders")).await;
    let url = server.url("/orders");
    let in_flight =
        tokio::spawn(async move { http().post(url).json(&json!({"id": 7})).send().await });
    // Signal once the request is inside the handler.
    tokio::time::timeout(support::WAIT, ORDER_ENTERED.notified())
        .await
        .expect("the order request reached its handler");
    server.shutdown();
    // the shutdown is under way (the streams end first), the handler still runs
    assert!(watcher.ended_within(EXIT_CEILING).await);
    assert!(
        !in_flight.is_finished(),
        "answered before the handler was let go"
    );
    ORDER_RELEASED.notify_one();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"id": 7}));
    let handle = std::mem::replace(&mut server.handle, tokio::spawn(async {}));
    tokio::time::timeout(EXIT_CEILING, handle)
        .await
        .expect("the server exits once the request is answered, not at its drain deadline")
        .expect("server task");
    // The publish after the handler succeeded still happened (its subscribers had already gone).
    let text = hub.metrics_text();
    assert_eq!(
        metric(&text, "livepush_events_published_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "livepush_publish_errors_total{reason=\"broker\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_new_subscriptions_get_503_and_readiness_fails() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut open = SseClient::connect(&server.url("/events?topic=a")).await;
    hub.shutdown();
    assert!(open.ended_within(EXIT_CEILING).await);
    let refused = SseClient::request(&server.url("/events?topic=a"), &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["content-type"], "application/json");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "shutting_down");
    let ready = http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // publishing still works for requests that finish during the shutdown
    hub.publish("a", "late", &1).await.unwrap();
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(
        metric(
            &hub.metrics_text(),
            "livepush_connections_rejected_total{reason=\"shutting_down\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn shutdown_ends_every_stream() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    let mut a = SseClient::connect(&server.url("/events?topic=a")).await;
    let mut b = SseClient::connect(&server.url("/events?topic=b,c")).await;
    hub.shutdown();
    assert!(a.ended_within(EXIT_CEILING).await);
    assert!(b.ended_within(EXIT_CEILING).await);
    let response = SseClient::request(&server.url("/events?topic=a"), &[]).await;
    assert_eq!(response.status(), 503);
    support::eventually("gauges back to zero", || async {
        hub.connection_count() == 0
    })
    .await;
    assert!(hub.subscriber_counts().is_empty());
}

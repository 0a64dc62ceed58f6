//! `/metrics` moves as it should after a connect, a publish, a rejection, a publish error and a
//! disconnect; broker reconnects are counted; the exposition declares each family once.
//! (The tracing spans are checked in `tests/tracing_spans.rs`, a process of their own.)

use std::collections::HashSet;

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, LivepushRouter};
use serde_json::json;

use crate::support::{eventually, http, metric, RedisServer, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .livepush(hub)
        .merge(hub.admin_routes())
}

async fn scrape(server: &TestServer) -> String {
    let response = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_after_connect_publish_rejection_and_disconnect() {
    let hub = Hub::builder().max_connections(1).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "livepush_connections"), 0.0);
    assert_eq!(metric(&m, "livepush_connections_accepted_total"), 0.0);

    let mut client = SseClient::connect(&server.url("/events?topic=a,b")).await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "livepush_connections"), 1.0);
    assert_eq!(metric(&m, "livepush_connections_accepted_total"), 1.0);
    assert_eq!(metric(&m, "livepush_subscriptions"), 2.0);
    assert_eq!(metric(&m, "livepush_topics"), 2.0);

    hub.publish("a", "e", &json!({"n": 1})).await.unwrap();
    hub.publish("nobody", "e", &json!({"n": 2})).await.unwrap();
    client.next().await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "livepush_events_published_total"), 2.0);
    assert_eq!(metric(&m, "livepush_events_delivered_total"), 1.0);
    assert_eq!(metric(&m, "livepush_publish_duration_seconds_count"), 2.0);
    assert_eq!(
        metric(&m, "livepush_queued_bytes"),
        0.0,
        "the client read it"
    );

    // Rejections, by reason.
    let full = SseClient::request(&server.url("/events?topic=c"), &[]).await;
    assert_eq!(full.status(), 429);
    let bad = SseClient::request(&server.url("/events?topic=bad%0Atopic"), &[]).await;
    assert_eq!(bad.status(), 400);
    let none = SseClient::request(&server.url("/events"), &[]).await;
    assert_eq!(none.status(), 400);
    let m = scrape(&server).await;
    assert_eq!(
        metric(
            &m,
            "livepush_connections_rejected_total{reason=\"too_many_connections\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "livepush_connections_rejected_total{reason=\"invalid_topic\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "livepush_connections_rejected_total{reason=\"no_topics\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "livepush_connections"),
        1.0,
        "refusals never count as open"
    );

    // Publish errors, by reason.
    assert!(hub.publish("bad topic", "e", &1).await.is_err());
    assert!(hub.publish("a", "bad name", &1).await.is_err());
    let m = scrape(&server).await;
    assert_eq!(
        metric(
            &m,
            "livepush_publish_errors_total{reason=\"invalid_topic\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "livepush_publish_errors_total{reason=\"invalid_name\"}"),
        1.0
    );
    assert_eq!(metric(&m, "livepush_events_published_total"), 2.0);

    drop(client);
    eventually("the disconnect shows in the gauges", || {
        let hub = hub.clone();
        async move {
            let m = hub.metrics_text();
            metric(&m, "livepush_connections") == 0.0
                && metric(&m, "livepush_subscriptions") == 0.0
                && metric(&m, "livepush_topics") == 0.0
        }
    })
    .await;
    let m = scrape(&server).await;
    assert_eq!(
        metric(&m, "livepush_connections_accepted_total"),
        1.0,
        "a counter never goes down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_declares_each_metric_family_once() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let _client = SseClient::connect(&server.url("/events?topic=a")).await;
    let _ = SseClient::request(&server.url("/events"), &[]).await;
    let m = scrape(&server).await;
    let mut seen = HashSet::new();
    for line in m.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            seen.insert(name.to_owned()),
            "family {name} declared twice:\n{m}"
        );
    }
    for family in [
        "livepush_connections",
        "livepush_connections_accepted",
        "livepush_connections_rejected",
        "livepush_subscriptions",
        "livepush_topics",
        "livepush_events_published",
        "livepush_events_delivered",
        "livepush_events_dropped",
        "livepush_events_replayed",
        "livepush_publish_duration_seconds",
        "livepush_broker_reconnects",
        "livepush_slow_consumer_disconnects",
        "livepush_queued_bytes",
    ] {
        assert!(seen.contains(family), "{family} missing:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_reconnects_are_counted() {
    let mut redis = RedisServer::start();
    let hub = Hub::builder().redis(redis.url()).build().unwrap();
    eventually("redis ready", || {
        let hub = hub.clone();
        async move { hub.ready().await.is_ok() }
    })
    .await;
    let server = TestServer::start(app(&hub)).await;
    // a watched topic makes the pub/sub connection matter
    let _client = SseClient::connect(&server.url("/events?topic=a")).await;
    let before = metric(&hub.metrics_text(), "livepush_broker_reconnects_total");
    redis.restart();
    eventually("the reconnect is counted", || {
        let hub = hub.clone();
        async move { metric(&hub.metrics_text(), "livepush_broker_reconnects_total") > before }
    })
    .await;
}

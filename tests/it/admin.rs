//! The live admin page of `hub.admin_routes()` over real HTTP: the page is self-contained (no
//! URL of another origin, a CSP that allows none), its SSE stream sends snapshots whose numbers
//! move as events are published and streams open (on Redis, with how many instances of the
//! deployment have subscribers of each topic), and the live tail streams a topic's events.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, RouterExt};
use serde_json::{json, Value};

use crate::support::{http, wait_for_status, RedisServer, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .livepush(hub)
        .merge(hub.admin_routes())
}

/// The next `stats` snapshot.
async fn snapshot(stats: &mut SseClient) -> Value {
    let event = stats.next().await;
    assert_eq!(event.event, "stats", "{event:?}");
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn the_admin_page_is_one_self_contained_file() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let response = http().get(server.url("/admin")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    for other_origin in ["http://", "https://", "//cdn", "src=\""] {
        assert!(
            !page.contains(other_origin),
            "the page loads {other_origin}…"
        );
    }
    assert!(page.contains("EventSource(base + \"stats\")"));
}

#[tokio::test]
async fn the_stats_stream_moves_with_connections_and_publishes() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut stats = SseClient::connect(&server.url("/admin/stats")).await;
    let first = snapshot(&mut stats).await;
    assert_eq!(
        first["broker"],
        json!({ "kind": "memory", "ready": true, "error": null })
    );
    assert_eq!(first["metrics"]["livepush_events_published_total"], 0.0);

    let _subscribers = [
        SseClient::connect(&server.url("/events?topic=room:1")).await,
        SseClient::connect(&server.url("/events?topic=room:1")).await,
    ];
    for n in 0..3 {
        hub.publish("room:1", "said", &json!({ "n": n }))
            .await
            .unwrap();
    }
    // a snapshot a second: the one after the publishes (on a busy machine, maybe not the next)
    let mut later = snapshot(&mut stats).await;
    for _ in 0..15 {
        if later["metrics"]["livepush_events_delivered_total"] == 6.0 {
            break;
        }
        later = snapshot(&mut stats).await;
    }
    // the stats stream itself is not a subscriber connection
    assert_eq!(later["connections"], 2, "{later}");
    assert_eq!(
        later["topics"],
        json!([{ "topic": "room:1", "subscribers": 2, "instances": null }]),
        "the in-memory broker cannot say what other instances have"
    );
    assert_eq!(later["metrics"]["livepush_events_published_total"], 3.0);
    assert_eq!(later["metrics"]["livepush_events_delivered_total"], 6.0);
    assert!(later["at_ms"].as_u64().unwrap() > first["at_ms"].as_u64().unwrap());
}

/// A snapshot of `stats` whose `topics` are `expected`, within 15 snapshots (one a second).
async fn topics_become(stats: &mut SseClient, expected: Value) {
    let mut last = Value::Null;
    for _ in 0..15 {
        last = snapshot(stats).await;
        if last["topics"] == expected {
            return;
        }
    }
    panic!("topics never became {expected}: last snapshot {last}");
}

#[tokio::test]
async fn on_redis_each_topic_shows_how_many_instances_of_the_deployment_have_subscribers() {
    let redis = RedisServer::start();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let hub = Hub::builder().redis(redis.url()).build().unwrap();
        let server = TestServer::start(app(&hub)).await;
        wait_for_status(&server.url("/health/ready"), 200).await;
        servers.push(server);
    }
    let (a, b) = (&servers[0], &servers[1]);
    let streams = [
        SseClient::connect(&a.url("/events?topic=room:1")).await,
        SseClient::connect(&a.url("/events?topic=room:1")).await,
        SseClient::connect(&b.url("/events?topic=room:1")).await,
        SseClient::connect(&b.url("/events?topic=room:2")).await,
    ];
    let mut on_a = SseClient::connect(&a.url("/admin/stats")).await;
    let mut on_b = SseClient::connect(&b.url("/admin/stats")).await;
    topics_become(
        &mut on_a,
        json!([{ "topic": "room:1", "subscribers": 2, "instances": 2 }]),
    )
    .await;
    topics_become(
        &mut on_b,
        json!([
            { "topic": "room:1", "subscribers": 1, "instances": 2 },
            { "topic": "room:2", "subscribers": 1, "instances": 1 },
        ]),
    )
    .await;
    // the last stream of room:1 on B leaves: the deployment has it on A only
    let [_a1, _a2, b1, _b2] = streams;
    drop(b1);
    topics_become(
        &mut on_a,
        json!([{ "topic": "room:1", "subscribers": 2, "instances": 1 }]),
    )
    .await;
}

#[tokio::test]
async fn the_tail_streams_a_topics_events_and_refuses_a_bad_topic() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut tail = SseClient::connect(&server.url("/admin/tail?topic=orders")).await;
    assert_eq!(tail.status, 200);
    let id = match hub
        .publish("orders", "order_placed", &json!({ "total": 42 }))
        .await
        .unwrap()
    {
        livepush::Published::Now(id) => id,
        other => panic!("{other:?}"),
    };
    let event = tail
        .next_within(Duration::from_secs(5))
        .await
        .expect("a tail event");
    assert_eq!(event.event, "tail");
    let seen: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        seen,
        json!({ "id": id.to_string(), "event": "order_placed", "topic": "orders", "category": null, "data": { "total": 42 } })
    );
    assert_eq!(
        hub.subscriber_counts().len(),
        1,
        "the tail watches its topic"
    );
    drop(tail);

    for (query, code) in [("", "no_topics"), ("?topic=a%0Db", "invalid_topic")] {
        let response = http()
            .get(server.url(&format!("/admin/tail{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{body}");
    }
}

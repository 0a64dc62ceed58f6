//! The link-time registry, `Hub::emit` of derived events, and `/events/catalog`.
//!
//! A test binary of its own, not a module of `tests/it`: it checks everything the link-time
//! registry of its program holds (the categories, the unregistered topics), which in `tests/it`
//! would be the handlers and events of every module.

// The shared helpers of `tests/it`; this binary uses a part of them, the rest is not dead code
// there (hence the allow, on this binary's copy only).
#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::registry::{self, SubscribeMode};
use livepush::{publish_event, subscribe_to_events, Hub, RouterExt, SseEvent};
use serde::Serialize;
use serde_json::{json, Value};
use support::{get_json, http, SseClient, TestServer};

#[derive(Serialize, SseEvent)]
#[sse(
    event = "sync.completed",
    topic = "user:{user_id}",
    category = "data_sync"
)]
struct SyncCompleted {
    user_id: u64,
    accounts: u32,
}

#[derive(Serialize, SseEvent)]
#[sse(event = "maintenance", topic = "broadcast")]
struct Maintenance {
    minutes: u32,
}

/// State: `hub.emit` retains it per tile, for 30 s.
#[derive(Serialize, SseEvent)]
#[sse(
    event = "tile",
    topic = "dashboard",
    retain,
    retain_key = "{name}",
    retain_ttl = 30
)]
struct Tile {
    name: String,
    value: u32,
}

/// Not an SSE event: the registry must say so.
#[derive(Serialize)]
struct Unmapped;

#[publish_event(topic = "orders", event = "order_placed", category = "orders")]
async fn place_order(Json(order): Json<Value>) -> Json<Value> {
    Json(order)
}

#[subscribe_to_events]
async fn events() {}

#[tokio::test]
async fn emit_publishes_a_domain_event_to_its_templated_topic() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(
        Router::new()
            .route("/events", get(events))
            .livepush(&hub)
            .merge(hub.admin_routes()),
    )
    .await;
    let mut sub = SseClient::connect(&server.url("/events?topic=user:42")).await;
    hub.emit(&SyncCompleted {
        user_id: 41,
        accounts: 1,
    })
    .await
    .unwrap();
    hub.emit(&SyncCompleted {
        user_id: 42,
        accounts: 3,
    })
    .await
    .unwrap();
    let event = sub.next().await;
    assert_eq!(event.event, "sync.completed");
    assert_eq!(event.data, r#"{"user_id":42,"accounts":3}"#);
}

#[tokio::test]
async fn category_filters_let_through_only_matching_events() {
    let hub = Hub::builder().build().unwrap();
    let app = Router::new()
        .route("/orders", post(place_order))
        .route("/events", get(events))
        .livepush(&hub);
    let server = TestServer::start(app).await;
    let mut orders_only =
        SseClient::connect(&server.url("/events?topic=orders,user:1&category=orders")).await;
    hub.emit(&SyncCompleted {
        user_id: 1,
        accounts: 1,
    })
    .await
    .unwrap();
    let response = http()
        .post(server.url("/orders"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = orders_only.next().await;
    assert_eq!(event.event, "order_placed");
}

#[test]
fn the_registry_lists_routes_and_event_types_of_this_program() {
    let routes: Vec<_> = registry::publish_routes().collect();
    let place = routes
        .iter()
        .find(|r| r.handler == "place_order")
        .expect("place_order registered");
    assert_eq!(place.topic, "orders");
    assert_eq!(place.event, "order_placed");
    assert_eq!(place.category, Some("orders"));
    assert!(place.file.ends_with("registry.rs"), "{}", place.file);
    assert!(place.line > 0);

    let subs: Vec<_> = registry::subscribe_routes().collect();
    assert!(subs
        .iter()
        .any(|s| s.handler == "events" && s.mode == SubscribeMode::Query));

    let sync = registry::event_type_of::<SyncCompleted>().expect("SyncCompleted registered");
    assert_eq!(sync.event, "sync.completed");
    assert_eq!(sync.topic, "user:{user_id}");
    assert_eq!(sync.category, Some("data_sync"));
    assert!(sync.type_name.ends_with("SyncCompleted"));
    assert!(registry::has_mapping_for::<Maintenance>());
    assert!(!registry::has_mapping_for::<Unmapped>());

    let catalog = registry::catalog();
    assert_eq!(
        catalog.categories.into_iter().collect::<Vec<_>>(),
        ["data_sync", "orders"]
    );
    let registered = |topic: &str| {
        catalog
            .topics
            .iter()
            .any(|t| livepush::__private::template_matches(t, topic))
    };
    assert!(registered("user:9"));
    assert!(!registered("nobody"));
}

#[tokio::test]
async fn the_catalog_is_served_as_json() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(
        Router::new()
            .route("/events", get(events))
            .livepush(&hub)
            .merge(hub.admin_routes()),
    )
    .await;
    let catalog = get_json(&server.url("/events/catalog")).await;
    let topics = catalog["topics"].as_array().unwrap();
    assert!(topics.contains(&json!("user:{user_id}")));
    assert!(topics.contains(&json!("orders")));
    assert!(catalog["publish_routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["handler"] == "place_order"));
    assert!(catalog["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "maintenance"));
    assert!(catalog["subscribe_routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["mode"] == "query"));
}

#[tokio::test]
async fn unregistered_topics_can_be_refused() {
    let hub = Hub::builder()
        .reject_unregistered_topics(true)
        .build()
        .unwrap();
    let server = TestServer::start(
        Router::new()
            .route("/events", get(events))
            .livepush(&hub)
            .merge(hub.admin_routes()),
    )
    .await;
    let response = SseClient::request(&server.url("/events?topic=nobody"), &[]).await;
    assert_eq!(response.status(), 400);
    SseClient::connect(&server.url("/events?topic=user:5,orders")).await;
}

#[tokio::test]
async fn health_and_metrics_routes_answer() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(
        Router::new()
            .route("/events", get(events))
            .livepush(&hub)
            .merge(hub.admin_routes()),
    )
    .await;
    for path in ["/health", "/health/live", "/health/ready"] {
        let response = http().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["broker"], "memory");
    let _client = SseClient::connect(&server.url("/events?topic=m")).await;
    let metrics = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("livepush_connections 1"), "{text}");
    assert!(
        text.contains("livepush_connections_accepted_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_retained_event_type_is_marked_state_and_emit_retains_it_per_key() {
    let entry = registry::event_type_of::<Tile>().expect("Tile registered");
    assert_eq!((entry.retained, entry.retain_ttl_secs), (true, Some(30)));
    let document = registry::asyncapi();
    let message = &document["components"]["messages"]["tile"];
    assert_eq!(
        message["x-livepush-retained"],
        json!({ "ttlSeconds": [30] })
    );
    assert!(message["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "state"));
    // an event type that is not state carries no mark
    assert!(document["components"]["messages"]["maintenance"]
        .get("x-livepush-retained")
        .is_none());

    let hub = Hub::builder().build().unwrap();
    for (name, value) in [("cpu", 1), ("disk", 2), ("cpu", 3)] {
        let tile = Tile {
            name: name.to_owned(),
            value,
        };
        hub.emit(&tile).await.unwrap();
    }
    let server =
        TestServer::start(Router::new().route("/events", get(events)).livepush(&hub)).await;
    let mut sub = SseClient::connect(&server.url("/events?topic=dashboard")).await;
    let first: Value = serde_json::from_str(&sub.next().await.data).unwrap();
    let second: Value = serde_json::from_str(&sub.next().await.data).unwrap();
    // one value per tile, the newest, in id order
    assert_eq!(first, json!({"name": "disk", "value": 2}));
    assert_eq!(second, json!({"name": "cpu", "value": 3}));
}

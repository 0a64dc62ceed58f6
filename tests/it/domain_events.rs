//! The domain_events example, tested as an app's own tests are written with `livepush::testing`:
//! its router on a recorded hub, called in-process, with subscribers on the user's channel (with
//! and without a category) and on another user's. (The built binary, and its start-up log of the
//! registry, are tested in `examples.rs`.)

use axum::http::StatusCode;
use livepush::testing::{assert_published, read_json, recorded, Client, EventStream};
use livepush::Hub;
use serde_json::{json, Value};

use crate::domain_events_app as app;

#[tokio::test]
async fn the_service_emits_typed_events_to_the_users_channel_with_their_category() {
    let (hub, published) = recorded(Hub::builder());
    let client = Client::new(app::router(&hub));

    let response = client
        .post_json("/users/7/invoices", &json!({"amount_cents": 1200}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invoice: Value = read_json(response).await;
    assert_eq!(
        (&invoice["user_id"], &invoice["amount_cents"]),
        (&json!(7), &json!(1200))
    );
    assert_published!(
        published,
        topic = "user:7",
        event = "invoice.paid",
        category = "billing",
        data = invoice
    );
    let sync = client.post("/users/7/sync").await;
    assert_eq!(sync.status(), StatusCode::ACCEPTED);
    let sync: Value = read_json(sync).await;
    assert_published!(
        published,
        topic = "user:7",
        event = "sync.completed",
        category = "data_sync",
        data = sync
    );
    let notice: Value = read_json(
        client
            .post_json("/maintenance", &json!({"minutes": 15}))
            .await,
    )
    .await;
    assert_published!(
        published,
        topic = "broadcast",
        event = "maintenance.scheduled",
        category = "system",
        data = notice
    );

    published.take();
    let refused = client
        .post_json("/users/7/invoices", &json!({"amount_cents": 0}))
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    published.assert_nothing_published();
}

#[tokio::test]
async fn subscribers_get_their_channel_and_broadcasts_filtered_by_category() {
    let (hub, _published) = recorded(Hub::builder());
    let client = Client::new(app::router(&hub));
    let mut billing = client.subscribe("/users/7/events?category=billing").await;
    let mut everything = client.subscribe("/users/7/events").await;
    let mut other_user = client.subscribe("/users/8/events").await;
    let mut by_hand = client.subscribe("/events?topic=user:7,broadcast").await;

    assert_eq!(
        client.post("/users/7/sync").await.status(),
        StatusCode::ACCEPTED
    );
    let invoice = client
        .post_json("/users/7/invoices", &json!({"amount_cents": 1200}))
        .await;
    assert_eq!(invoice.status(), StatusCode::CREATED);
    let invoice: Value = read_json(invoice).await;
    let maintenance = client
        .post_json("/maintenance", &json!({"minutes": 15}))
        .await;
    assert_eq!(maintenance.status(), StatusCode::CREATED);

    let all = ["sync.completed", "invoice.paid", "maintenance.scheduled"];
    assert_eq!(names(&mut everything, 3).await, all);
    assert_eq!(names(&mut by_hand, 3).await, all);
    let event = billing.next_event().await.unwrap();
    assert_eq!(
        event.event_name(),
        "invoice.paid",
        "the category filter skips sync.completed"
    );
    assert_eq!(event.json::<Value>(), invoice);
    let event = other_user.next_event().await.unwrap();
    assert_eq!(
        event.event_name(),
        "maintenance.scheduled",
        "broadcast reaches everyone"
    );

    let unknown = client.subscribe("/users/7/events?category=nope").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let catalog: Value = read_json(client.get("/events/catalog").await).await;
    let types: Vec<&str> = catalog["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["event"].as_str())
        .collect();
    for event in all {
        assert!(types.contains(&event), "{event} missing from {catalog}");
    }
}

/// The names of the next `count` events of `stream`.
async fn names(stream: &mut EventStream, count: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..count {
        names.push(stream.next_event().await.unwrap().event_name().to_owned());
    }
    names
}

//! `#[publish_event]` over real HTTP: what subscribers receive, and when nothing is published.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, Hub, LivepushRouter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::support::{http, SseClient, TestServer};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ticket {
    id: u64,
    title: String,
}

#[derive(Deserialize)]
struct NewTicket {
    title: String,
}

#[publish_event(topic = "tickets", event = "ticket_created")]
#[publish_event(topic = "ticket:{id}", event = "created")]
async fn create_ticket(
    Json(new): Json<NewTicket>,
) -> Result<(StatusCode, Json<Ticket>), (StatusCode, String)> {
    if new.title.trim().is_empty() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "title must not be empty".into(),
        ));
    }
    let id = new.title.len() as u64;
    Ok((
        StatusCode::CREATED,
        Json(Ticket {
            id,
            title: new.title,
        }),
    ))
}

/// `{id}` binds the destructured path argument, not a field.
#[publish_event(topic = "ticket:{id}", event = "renamed")]
async fn rename_ticket(
    Path(id): Path<u64>,
    Json(new): Json<NewTicket>,
) -> (StatusCode, Json<Ticket>) {
    if new.title == "conflict" {
        return (
            StatusCode::CONFLICT,
            Json(Ticket {
                id,
                title: new.title,
            }),
        );
    }
    (
        StatusCode::OK,
        Json(Ticket {
            id,
            title: new.title,
        }),
    )
}

fn only_id(ticket: &Ticket) -> Value {
    json!({ "id": ticket.id })
}

/// The event name defaults to the handler's name; `data` publishes only the id.
#[publish_event(topic = "tickets", data = only_id)]
async fn touch_ticket(Path(id): Path<u64>) -> Json<Ticket> {
    Json(Ticket {
        id,
        title: "touched".into(),
    })
}

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/tickets", post(create_ticket))
        .route("/tickets/{id}", put(rename_ticket).post(touch_ticket))
        .route("/events", get(events))
        .livepush(hub)
}

async fn server() -> TestServer {
    let hub = Hub::builder().build().unwrap();
    TestServer::start(app(&hub)).await
}

#[tokio::test]
async fn every_subscriber_receives_id_event_and_the_response_json() {
    let server = server().await;
    let mut a = SseClient::connect(&server.url("/events?topic=tickets")).await;
    let mut b = SseClient::connect(&server.url("/events?topic=tickets")).await;

    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "printer on fire"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();

    for client in [&mut a, &mut b] {
        let event = client.next().await;
        assert_eq!(event.event, "ticket_created");
        assert!(event.id.parse::<u64>().is_ok(), "id {:?}", event.id);
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data, body);
        // compact JSON, exactly as serde_json writes it
        assert_eq!(event.data, serde_json::to_string(&body).unwrap());
    }
}

#[tokio::test]
async fn stacked_attributes_publish_to_each_topic_and_templates_use_response_fields() {
    let server = server().await;
    // "abc" → id 3 (the length of the title), so ticket:3 gets the second attribute's event
    let mut one = SseClient::connect(&server.url("/events?topic=ticket:3")).await;
    let mut all = SseClient::connect(&server.url("/events?topic=tickets")).await;
    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "abc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let created = one.next().await;
    assert_eq!(created.event, "created");
    assert_eq!(
        serde_json::from_str::<Value>(&created.data).unwrap()["title"],
        "abc"
    );
    let listed = all.next().await;
    assert_eq!(listed.event, "ticket_created");
    // one publish per attribute, each with its own id
    assert_ne!(created.id, listed.id);
}

#[tokio::test]
async fn templates_bind_destructured_path_arguments() {
    let server = server().await;
    let mut sub = SseClient::connect(&server.url("/events?topic=ticket:42")).await;
    let response = http()
        .put(server.url("/tickets/42"))
        .json(&json!({"title": "new name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = sub.next().await;
    assert_eq!(event.event, "renamed");
    assert_eq!(event.data, r#"{"id":42,"title":"new name"}"#);
}

#[tokio::test]
async fn default_event_name_is_the_handler_name_and_data_maps_the_value() {
    let server = server().await;
    let mut sub = SseClient::connect(&server.url("/events?topic=tickets")).await;
    let response = http().post(server.url("/tickets/7")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let event = sub.next().await;
    assert_eq!(event.event, "touch_ticket");
    assert_eq!(event.data, r#"{"id":7}"#);
}

#[tokio::test]
async fn nothing_is_published_on_errors_or_non_2xx_statuses() {
    let server = server().await;
    let mut sub = SseClient::connect(&server.url("/events?topic=tickets,ticket:8")).await;

    // Err(...) from the handler
    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // Ok((409, ..)): a non-2xx status inside Ok
    let response = http()
        .put(server.url("/tickets/8"))
        .json(&json!({"title": "conflict"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    // an extractor rejection: the handler never ran
    let response = http()
        .post(server.url("/tickets"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // then a success: it must be the first event the subscriber sees
    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event = sub.next().await;
    assert_eq!(event.event, "ticket_created");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["title"],
        "ok"
    );
}

#[tokio::test]
async fn one_stream_receives_several_topics_in_publish_order() {
    let hub = Hub::builder().build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut sub = SseClient::connect(&server.url("/events?topic=a,b&topic=c")).await;
    hub.publish("a", "one", &json!(1)).await.unwrap();
    hub.publish("other", "skipped", &json!(0)).await.unwrap();
    hub.publish("c", "two", &json!(2)).await.unwrap();
    hub.publish("b", "three", &json!(3)).await.unwrap();
    let mut ids = Vec::new();
    for expected in ["one", "two", "three"] {
        let event = sub.next().await;
        assert_eq!(event.event, expected);
        ids.push(event.id.parse::<u64>().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids rise: {ids:?}");
}

#[tokio::test]
async fn a_failing_publish_never_changes_the_response() {
    // events larger than the limit are refused by the hub; the handler's answer is unchanged
    let hub = Hub::builder().max_event_bytes(16).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "a title long enough to exceed sixteen bytes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(hub
        .metrics_text()
        .contains("livepush_publish_errors_total{reason=\"too_large\"} 2"));
}

#[tokio::test]
async fn handlers_without_the_hub_still_answer() {
    // a router that forgot `.livepush(&hub)`: the handler works, publishing is skipped and logged
    let app = Router::new().route("/tickets", post(create_ticket));
    let server = TestServer::start(app).await;
    let response = http()
        .post(server.url("/tickets"))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

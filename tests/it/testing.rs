//! `livepush::testing` as an app's tests use it: what a `Router` call published, recorded by the
//! hub's broker whichever way it was published, and event streams read in-process and over
//! real HTTP from `livepush::serve` on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::testing::{assert_published, read_json, recorded, Client};
use livepush::{
    publish_event, subscribe_to_events, Hub, RouterExt, SseEvent, Subscription, Topics,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app;
use crate::support::{eventually, Sqlite, TestServer};

/// The example test of the `testing` module's docs: crm_comments' `POST /comments`, whose
/// event the outbox relay publishes after the handler answered.
#[tokio::test]
async fn posting_a_comment_publishes_comment_created_on_comments() {
    let (hub, published) = recorded(Hub::builder());
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let _relay = db.outbox().relay(&hub).start();
    let client = Client::new(app::router(&hub, db));
    let response = client
        .post_json("/comments", &json!({"author": "ada", "text": "hi"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let comment: Value = read_json(response).await;
    published.wait_for(1).await;
    assert_published!(
        published,
        topic = "comments",
        event = "comment_created",
        data = comment
    );
}

#[tokio::test]
async fn a_refused_comment_publishes_nothing() {
    let (hub, published) = recorded(Hub::builder());
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let _relay = db.outbox().relay(&hub).start();
    let client = Client::new(app::router(&hub, db));
    let refused = client.post_json("/comments", &json!({"author": ""})).await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    // The relay publishes rows in order: once the next comment is published, a row of the
    // refused one would have been too.
    let response = client
        .post_json("/comments", &json!({"author": "ada", "text": "ok"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let published = published.wait_for(1).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].json::<Value>()["text"], "ok");
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    id: u64,
    text: String,
}

#[publish_event(topic = "note:{id}", event = "note_saved")]
async fn save(Json(note): Json<Note>) -> Result<Json<Note>, StatusCode> {
    if note.text.is_empty() {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(Json(note))
}

#[derive(Serialize, SseEvent)]
#[sse(event = "note.archived", topic = "note:{id}", category = "notes")]
struct Archived {
    id: u64,
}

#[subscribe_to_events]
async fn note_events() {}

fn notes(hub: &Hub) -> Client {
    let router = Router::new()
        .route("/notes", post(save))
        .route("/events", get(note_events));
    Client::new(router.livepush(hub))
}

#[tokio::test]
async fn the_recorder_sees_the_macros_emit_and_publish() {
    let (hub, published) = recorded(Hub::builder());
    let client = notes(&hub);
    let note = Note {
        id: 7,
        text: "hi".into(),
    };
    assert_eq!(client.post_json("/notes", &note).await.status(), 200);
    assert_published!(
        published,
        topic = "note:7",
        event = "note_saved",
        data = note
    );
    hub.emit(&Archived { id: 7 }).await.unwrap();
    assert_published!(
        published,
        topic = "note:7",
        event = "note.archived",
        category = "notes",
        data = json!({"id": 7})
    );
    hub.publish("note:7", "note_read", &json!({}))
        .await
        .unwrap();
    assert_published!(published, event = "note_read");
    assert_eq!(published.take().len(), 3);
    // A handler that fails publishes nothing.
    let empty = Note {
        id: 8,
        text: String::new(),
    };
    assert_eq!(client.post_json("/notes", &empty).await.status(), 422);
    published.assert_nothing_published();
}

#[tokio::test]
#[should_panic(expected = "no publication matched: expected event `note_saved`, topic `note:8`")]
async fn a_publication_on_another_topic_fails_the_assertion() {
    let (hub, published) = recorded(Hub::builder());
    let note = Note {
        id: 7,
        text: "hi".into(),
    };
    notes(&hub).post_json("/notes", &note).await;
    assert_published!(published, topic = "note:8", event = "note_saved");
}

#[tokio::test]
async fn a_subscriber_reads_what_a_handler_published() {
    let (hub, _published) = recorded(Hub::builder());
    let client = notes(&hub);
    let mut stream = client.subscribe("/events?topic=note:7").await;
    assert_eq!(stream.status(), 200);
    let note = Note {
        id: 7,
        text: "hi".into(),
    };
    client.post_json("/notes", &note).await;
    let frame = stream.next_event().await.unwrap();
    assert_eq!(frame.event_name(), "note_saved");
    assert_eq!(frame.json::<Note>(), note);
    assert!(frame.id.is_some());
}

// The same client over real HTTP, against `livepush::serve` on loopback.

fn served_notes(hub: &Hub) -> Router {
    Router::new()
        .route("/notes", post(save))
        .route("/events", get(note_events))
        .livepush(hub)
}

#[tokio::test]
async fn over_http_a_subscriber_reads_typed_events() {
    let (hub, _published) = recorded(Hub::builder());
    let server = TestServer::start(served_notes(&hub)).await;
    let client = Client::http(&server.url(""));
    let mut stream = client.subscribe("/events?topic=note:7").await;
    assert_eq!(stream.status(), 200);
    let note = Note {
        id: 7,
        text: "over the wire".into(),
    };
    assert_eq!(client.post_json("/notes", &note).await.status(), 200);
    let frame = stream.next_event().await.unwrap();
    assert_eq!(frame.event_name(), "note_saved");
    assert_eq!(frame.json::<Note>(), note);
    assert!(frame.id.is_some());
}

#[tokio::test]
async fn over_http_a_stream_resumes_after_a_disconnect() {
    let (hub, _published) = recorded(Hub::builder().replay(100, Duration::from_secs(60)));
    let server = TestServer::start(served_notes(&hub)).await;
    let client = Client::http(&server.url(""));
    let mut stream = client.subscribe("/events?topic=comments").await;
    hub.publish("comments", "comment_created", &json!({ "n": 1 }))
        .await
        .unwrap();
    let first = stream.next_event().await.unwrap();
    assert_eq!(first.json::<Value>()["n"], 1);
    assert_eq!(stream.last_event_id(), first.id.as_deref());
    // The connection closes; what is published meanwhile comes back on the new one.
    let first_id = first.id.clone().unwrap();
    drop(stream);
    hub.publish("comments", "comment_created", &json!({ "n": 2 }))
        .await
        .unwrap();
    let mut stream = client
        .subscribe_after("/events?topic=comments", &first_id)
        .await;
    assert_eq!(stream.status(), 200);
    let missed = stream.next_event().await.unwrap();
    assert_eq!(missed.json::<Value>()["n"], 2);
    // and `resume` sends the id of the last event read, as `EventSource` does
    hub.publish("comments", "comment_created", &json!({ "n": 3 }))
        .await
        .unwrap();
    let mut stream = stream.resume().await;
    assert_eq!(stream.next_event().await.unwrap().json::<Value>()["n"], 3);
}

static CAPPED_CALLS: AtomicUsize = AtomicUsize::new(0);

/// One stream at a time for each `?key=`.
#[subscribe_to_events]
async fn capped(Query(key): Query<Key>) -> Subscription {
    CAPPED_CALLS.fetch_add(1, Ordering::SeqCst);
    Subscription::new(Topics::one(format!("capped:{}", key.key))).cap_key(key.key)
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

fn rejected(hub: &Hub) -> f64 {
    hub.metrics_text()
        .lines()
        .filter(|line| line.starts_with("livepush_connections_rejected_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_capped_subscription_is_retried_after_retry_after() {
    let (hub, _published) = recorded(
        Hub::builder()
            .max_connections_per_key(1)
            .retry_after(Duration::from_secs(1)),
    );
    let server =
        TestServer::start(Router::new().route("/capped", get(capped)).livepush(&hub)).await;
    let client = Client::http(&server.url(""));
    let first = client.subscribe("/capped?key=ada").await;
    assert_eq!(first.status(), 200);
    // Without retries the second connection is refused, and told when to come back.
    let refused = client
        .clone()
        .attempts(1)
        .subscribe("/capped?key=ada")
        .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    drop(refused);
    // With retries it waits out the refusals until the first stream closes.
    let calls_before = CAPPED_CALLS.load(Ordering::SeqCst);
    let second = tokio::spawn({
        let client = client.clone().attempts(10);
        async move { client.subscribe("/capped?key=ada").await }
    });
    // Its first ask has been refused (two refusals counted) before the first stream closes.
    eventually("the retrying client is refused once", || async {
        rejected(&hub) >= 2.0
    })
    .await;
    drop(first);
    let mut second = second.await.unwrap();
    assert_eq!(second.status(), 200);
    assert!(CAPPED_CALLS.load(Ordering::SeqCst) >= calls_before + 2);
    hub.publish("capped:ada", "hello", &json!({ "to": "ada" }))
        .await
        .unwrap();
    assert_eq!(second.next_event().await.unwrap().event_name(), "hello");
}

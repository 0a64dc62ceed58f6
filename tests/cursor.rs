//! `Livepush-Cursor` on `GET /comments`: subscribing with it as `Last-Event-ID` yields exactly
//! the events published after the list was read (replay on), or a reset (replay off, behind).

mod support;

#[path = "../examples/common/mod.rs"]
mod common;

#[path = "../examples/crm_comments/app.rs"]
mod app;

use std::time::Duration;

use livepush::outbox::RelayHandle;
use livepush::sse::RESET;
use livepush::Hub;
use serde_json::{json, Value};
use support::{http, Sqlite, SseClient, TestServer};

/// crm_comments on a SQLite file of its own with its outbox relay, and a watcher stream that
/// tells when the relay has published a comment.
struct Crm {
    server: TestServer,
    watcher: SseClient,
    _relay: RelayHandle,
    _file: Sqlite,
}

impl std::ops::Deref for Crm {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

async fn start(hub: &Hub) -> Crm {
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let relay = db.outbox().relay(hub).start();
    let server = TestServer::start(app::router(hub, db)).await;
    let watcher = SseClient::connect(&server.url("/events?topic=comments")).await;
    Crm {
        server,
        watcher,
        _relay: relay,
        _file: file,
    }
}

/// Posts a comment and waits until the relay has published it (the watcher saw it), so the
/// stream's position is past it.
async fn post(crm: &mut Crm, text: &str) -> Value {
    let response = http()
        .post(crm.server.url("/comments"))
        .json(&json!({ "author": "a", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    loop {
        let event = crm.watcher.next().await;
        if serde_json::from_str::<Value>(&event.data).is_ok_and(|d| d["text"] == text) {
            break;
        }
    }
    response.json().await.unwrap()
}

/// The list and its cursor.
async fn list(server: &TestServer) -> (Vec<Value>, String) {
    let response = http().get(server.url("/comments")).send().await.unwrap();
    let cursor = response
        .headers()
        .get("livepush-cursor")
        .expect("GET /comments carries Livepush-Cursor")
        .to_str()
        .unwrap()
        .to_owned();
    (response.json().await.unwrap(), cursor)
}

#[tokio::test]
async fn subscribing_from_the_cursor_yields_what_came_after_the_list_and_nothing_before() {
    let hub = Hub::builder()
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut server = start(&hub).await;
    post(&mut server, "before").await;
    let (comments, cursor) = list(&server).await;
    assert_eq!(comments.len(), 1);
    // Published after the list was read, before the subscription: the page's race.
    post(&mut server, "in between").await;
    let url = server.url("/events?topic=comments");
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    let event = sse.next().await;
    assert_eq!(event.event, "comment_created");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "in between"
    );
    post(&mut server, "live").await;
    let event = sse.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "live"
    );
}

#[tokio::test]
async fn without_replay_a_cursor_behind_the_stream_gets_a_reset_to_resume_from() {
    let hub = Hub::builder().build().unwrap();
    let mut server = start(&hub).await;
    let (_, cursor) = list(&server).await;
    post(&mut server, "in between").await;
    let url = server.url("/events?topic=comments");
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    let reset = sse.next().await;
    assert_eq!(reset.event, RESET.as_str());
    assert!(reset.id.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
    post(&mut server, "live").await;
    let event = sse.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "live"
    );

    // A cursor nothing was published after needs no reset.
    let (_, cursor) = list(&server).await;
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    post(&mut server, "next").await;
    let event = sse.next().await;
    assert_eq!(event.event, "comment_created");
}

//! The crm_comments contract over real HTTP: its router, served on loopback, watched by a real
//! SSE client.

use livepush::outbox::RelayHandle;
use livepush::Hub;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::app;
use crate::support::{get_json, http, Sqlite, SseClient, TestServer, LIVEPUSH_ROUTES};

/// The app on a SQLite file of its own, with its outbox relay, as `main.rs` runs it.
struct Crm {
    server: TestServer,
    _relay: RelayHandle,
    _file: Sqlite,
}

impl Crm {
    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

async fn start() -> Crm {
    let hub = Hub::builder().build().unwrap();
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let relay = db.outbox().relay(&hub).start();
    Crm {
        server: TestServer::start(app::router(&hub, db)).await,
        _relay: relay,
        _file: file,
    }
}

async fn subscribe(server: &Crm) -> SseClient {
    SseClient::connect(&server.url("/events?topic=comments")).await
}

/// Sends a JSON request; returns the status and the body parsed as JSON.
async fn send(method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = http().request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (status, value)
}

async fn post_comment(server: &Crm, author: &str, text: &str) -> Value {
    let (status, body) = send(
        reqwest::Method::POST,
        server.url("/comments"),
        Some(json!({"author": author, "text": text})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn post_answers_201_and_publishes_comment_created_with_the_response_json() {
    let server = start().await;
    let mut sub = subscribe(&server).await;

    let body = post_comment(&server, "ann", "first!").await;
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{body}");
    for key in ["id", "author", "text", "created_at"] {
        assert!(keys.contains(&key), "missing {key} in {body}");
    }
    assert_eq!(body["author"], "ann");
    assert_eq!(body["text"], "first!");
    assert!(body["id"].is_u64());

    let event = sub.next().await;
    assert_eq!(event.event, "comment_created");
    assert!(!event.id.is_empty(), "every event carries an id");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), body);
    assert!(
        !event.data.contains('\n'),
        "data is compact JSON: {:?}",
        event.data
    );
}

#[tokio::test]
async fn put_and_delete_publish_the_changed_and_the_deleted_comment() {
    let server = start().await;
    let mut sub = subscribe(&server).await;
    let created = post_comment(&server, "bob", "draft").await;
    let id = created["id"].as_u64().unwrap();
    assert_eq!(sub.next().await.event, "comment_created");

    let (status, updated) = send(
        reqwest::Method::PUT,
        server.url(&format!("/comments/{id}")),
        Some(json!({"text": "final"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["text"], "final");
    assert_eq!(updated["author"], "bob");
    let event = sub.next().await;
    assert_eq!(event.event, "comment_updated");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), updated);

    let (status, deleted) = send(
        reqwest::Method::DELETE,
        server.url(&format!("/comments/{id}")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, updated, "DELETE answers the deleted comment");
    let event = sub.next().await;
    assert_eq!(event.event, "comment_deleted");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), deleted);

    let (status, _) = send(
        reqwest::Method::GET,
        server.url(&format!("/comments/{id}")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = send(reqwest::Method::GET, server.url("/comments"), None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn invalid_input_answers_4xx_json_and_publishes_nothing() {
    let server = start().await;
    let mut sub = subscribe(&server).await;
    let existing = post_comment(&server, "cy", "keep me").await;
    let id = existing["id"].as_u64().unwrap();
    // The relay publishes after the commit, so the event may follow the response: take it
    // before checking that nothing else comes.
    assert_eq!(sub.next().await.event, "comment_created");
    let client = http();
    let long = "x".repeat(app::MAX_TEXT_CHARS + 1);

    let bad_posts: Vec<(&str, String, &str)> = vec![
        ("bad JSON", "{\"author\":".into(), "application/json"),
        ("not an object", "[1,2]".into(), "application/json"),
        (
            "missing text",
            json!({"author": "a"}).to_string(),
            "application/json",
        ),
        (
            "missing author",
            json!({"text": "t"}).to_string(),
            "application/json",
        ),
        (
            "empty author",
            json!({"author": "", "text": "t"}).to_string(),
            "application/json",
        ),
        (
            "blank text",
            json!({"author": "a", "text": "   "}).to_string(),
            "application/json",
        ),
        (
            "text too long",
            json!({"author": "a", "text": long}).to_string(),
            "application/json",
        ),
        (
            "wrong types",
            json!({"author": 1, "text": true}).to_string(),
            "application/json",
        ),
        (
            "not JSON content",
            "author=a&text=t".into(),
            "application/x-www-form-urlencoded",
        ),
    ];
    for (what, body, content_type) in bad_posts {
        let response = client
            .post(server.url("/comments"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_client_error(what, response).await;
    }
    let bad_changes: Vec<(&str, reqwest::Method, String, Option<Value>)> = vec![
        (
            "PUT unknown id",
            reqwest::Method::PUT,
            "/comments/999".into(),
            Some(json!({"text": "x"})),
        ),
        (
            "PUT id not a number",
            reqwest::Method::PUT,
            "/comments/abc".into(),
            Some(json!({"text": "x"})),
        ),
        (
            "PUT no field",
            reqwest::Method::PUT,
            format!("/comments/{id}"),
            Some(json!({})),
        ),
        (
            "PUT empty text",
            reqwest::Method::PUT,
            format!("/comments/{id}"),
            Some(json!({"text": ""})),
        ),
        (
            "PUT too long",
            reqwest::Method::PUT,
            format!("/comments/{id}"),
            Some(json!({"text": long})),
        ),
        (
            "DELETE unknown id",
            reqwest::Method::DELETE,
            "/comments/999".into(),
            None,
        ),
        (
            "DELETE id not a number",
            reqwest::Method::DELETE,
            "/comments/-1".into(),
            None,
        ),
    ];
    for (what, method, path, body) in bad_changes {
        let mut req = client.request(method, server.url(&path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        assert_client_error(what, req.send().await.unwrap()).await;
    }

    // Had anything above been published, it would arrive before this event.
    let marker = post_comment(&server, "cy", "marker").await;
    let event = sub.next().await;
    assert_eq!(event.event, "comment_created");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), marker);
    let (_, unchanged) = send(
        reqwest::Method::GET,
        server.url(&format!("/comments/{id}")),
        None,
    )
    .await;
    assert_eq!(unchanged, existing);
}

async fn assert_client_error(what: &str, response: reqwest::Response) {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_client_error(), "{what}: answered {status} {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what}: error body is not JSON: {text:?}"));
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn the_page_and_the_operational_routes_are_served() {
    let server = start().await;
    let client = http();

    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/page.js\">"));
    let script = client.get(server.url("/page.js")).send().await.unwrap();
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let script = script.text().await.unwrap();
    assert!(script.contains("topics: [\"comments\"]"), "{script}");

    for path in LIVEPUSH_ROUTES {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // The handlers publish through the outbox with `#[derive(SseEvent)]` types, which the
    // catalog lists with their topics.
    let catalog = get_json(&server.url("/events/catalog")).await;
    let types = catalog["event_types"].as_array().unwrap();
    for (ty, event) in [
        ("CommentCreated", "comment_created"),
        ("CommentUpdated", "comment_updated"),
        ("CommentDeleted", "comment_deleted"),
    ] {
        assert!(
            types
                .iter()
                .any(|t| t["type_name"].as_str().is_some_and(|n| n.ends_with(ty))
                    && t["event"] == event
                    && t["topic"] == "comments"),
            "{ty} missing from {catalog}"
        );
    }
}

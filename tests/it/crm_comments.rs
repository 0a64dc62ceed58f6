//! The crm_comments contract, tested as an app's own tests are written with `livepush::testing`:
//! its router called in-process on a SQLite file of its own, the outbox relay publishing to a
//! recorded hub, and a subscriber reading `/events` as `EventSource` does. (The built binary,
//! served over TCP, is tested in `examples.rs` and `tests/browser.rs`.)

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use livepush::outbox::RelayHandle;
use livepush::testing::{assert_published, read_json, read_text, recorded, Client, Recorder};
use livepush::Hub;
use serde_json::{json, Value};

use crate::app;
use crate::support::{Sqlite, LIVEPUSH_ROUTES};

/// The app on a SQLite file of its own, with its outbox relay, as `main.rs` runs it.
struct Crm {
    client: Client,
    published: Recorder,
    _relay: RelayHandle,
    _file: Sqlite,
}

async fn start() -> Crm {
    let (hub, published) = recorded(Hub::builder());
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let relay = db.outbox().relay(&hub).start();
    Crm {
        client: Client::new(app::router(&hub, db)),
        published,
        _relay: relay,
        _file: file,
    }
}

/// The status and the JSON body of `response` (which must be JSON).
async fn answer(response: Response) -> (StatusCode, Value) {
    (response.status(), read_json(response).await)
}

async fn post_comment(crm: &Crm, author: &str, text: &str) -> Value {
    let comment = json!({"author": author, "text": text});
    let (status, body) = answer(crm.client.post_json("/comments", &comment).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn post_answers_201_and_publishes_comment_created_with_the_response_json() {
    let crm = start().await;
    let mut sub = crm.client.subscribe("/events?topic=comments").await;

    let body = post_comment(&crm, "ann", "first!").await;
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["author", "created_at", "id", "text"], "{body}");
    assert_eq!(
        (&body["author"], &body["text"]),
        (&json!("ann"), &json!("first!"))
    );
    assert!(body["id"].is_u64());
    crm.published.wait_for(1).await; // the relay publishes after the commit
    assert_published!(
        crm.published,
        topic = "comments",
        event = "comment_created",
        data = body
    );

    // What a subscriber reads: that comment, with an id, as one line of compact JSON.
    let event = sub.next_event().await.unwrap();
    assert_eq!(event.event_name(), "comment_created");
    assert!(
        event.id.as_ref().is_some_and(|id| !id.is_empty()),
        "every event carries an id"
    );
    assert_eq!(event.json::<Value>(), body);
    assert!(
        !event.data.as_ref().unwrap().contains('\n'),
        "compact: {event:?}"
    );
}

#[tokio::test]
async fn put_and_delete_publish_the_changed_and_the_deleted_comment() {
    let crm = start().await;
    let created = post_comment(&crm, "bob", "draft").await;
    let comment = format!("/comments/{}", created["id"].as_u64().unwrap());

    let (status, updated) = answer(
        crm.client
            .put_json(&comment, &json!({"text": "final"}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (&updated["text"], &updated["author"]),
        (&json!("final"), &json!("bob"))
    );
    let (status, deleted) = answer(crm.client.delete(&comment).await).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, updated, "DELETE answers the deleted comment");

    let published = crm.published.wait_for(3).await;
    let published: Vec<_> = published
        .iter()
        .map(|p| (p.topic.as_str(), p.event.as_str(), p.value()))
        .collect();
    assert_eq!(
        published,
        [
            ("comments", "comment_created", created),
            ("comments", "comment_updated", updated),
            ("comments", "comment_deleted", deleted),
        ]
    );
    assert_eq!(
        crm.client.get(&comment).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(answer(crm.client.get("/comments").await).await.1, json!([]));
}

#[tokio::test]
async fn invalid_input_answers_4xx_json_and_publishes_nothing() {
    let crm = start().await;
    let existing = post_comment(&crm, "cy", "keep me").await;
    let id = existing["id"].as_u64().unwrap();
    let long = "x".repeat(app::MAX_TEXT_CHARS + 1);
    let post = |body: &dyn ToString| request("POST", "/comments", "application/json", body);
    let put = |path: &str, body: Value| request("PUT", path, "application/json", &body);
    let delete = |path: &str| request("DELETE", path, "text/plain", &"");
    let (one, form) = (
        format!("/comments/{id}"),
        "application/x-www-form-urlencoded",
    );

    let bad = [
        ("bad JSON", post(&"{\"author\":")),
        ("not an object", post(&"[1,2]")),
        ("missing text", post(&json!({"author": "a"}))),
        ("missing author", post(&json!({"text": "t"}))),
        ("empty author", post(&json!({"author": "", "text": "t"}))),
        ("blank text", post(&json!({"author": "a", "text": "   "}))),
        ("text too long", post(&json!({"author": "a", "text": long}))),
        ("wrong types", post(&json!({"author": 1, "text": true}))),
        (
            "not JSON content",
            request("POST", "/comments", form, &"author=a&text=t"),
        ),
        ("PUT unknown id", put("/comments/999", json!({"text": "x"}))),
        (
            "PUT id not a number",
            put("/comments/abc", json!({"text": "x"})),
        ),
        ("PUT no field", put(&one, json!({}))),
        ("PUT empty text", put(&one, json!({"text": ""}))),
        ("PUT too long", put(&one, json!({"text": long}))),
        ("DELETE unknown id", delete("/comments/999")),
        ("DELETE id not a number", delete("/comments/-1")),
    ];
    for (what, request) in bad {
        assert_client_error(what, crm.client.send(request).await).await;
    }

    // The relay publishes the outbox's rows in order: had any request above written an event,
    // it would be published between these two comments.
    let marker = post_comment(&crm, "cy", "marker").await;
    let published: Vec<Value> = crm
        .published
        .wait_for(2)
        .await
        .iter()
        .map(|p| p.value())
        .collect();
    assert_eq!(published, [existing.clone(), marker]);
    let (_, unchanged) = answer(crm.client.get(&one).await).await;
    assert_eq!(unchanged, existing);
}

fn request(method: &str, uri: &str, content_type: &str, body: &dyn ToString) -> Request<Body> {
    let request = Request::builder().method(method).uri(uri);
    let request = request.header("content-type", content_type);
    request.body(Body::from(body.to_string())).unwrap()
}

async fn assert_client_error(what: &str, response: Response) {
    let status = response.status();
    let text = read_text(response).await;
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
    let crm = start().await;
    let content_type = |r: &Response| r.headers()["content-type"].to_str().unwrap().to_owned();

    let page = crm.client.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(content_type(&page).starts_with("text/html"));
    assert!(read_text(page)
        .await
        .contains("<script type=\"module\" src=\"/page.js\">"));
    let script = crm.client.get("/page.js").await;
    assert!(content_type(&script).starts_with("text/javascript"));
    let script = read_text(script).await;
    assert!(script.contains("topics: [\"comments\"]"), "{script}");

    for path in LIVEPUSH_ROUTES {
        assert_eq!(
            crm.client.get(path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // The handlers publish through the outbox with `#[derive(SseEvent)]` types, which the
    // catalog lists with their topics.
    let catalog: Value = read_json(crm.client.get("/events/catalog").await).await;
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

//! The tickets example, tested as an app's own tests are written with `livepush::testing`: its
//! router and its authorize hook on a recorded hub, called in-process by one client per user,
//! each sending that user's bearer token. (The built binary is tested in `examples.rs`.)

use axum::http::StatusCode;
use livepush::testing::{assert_published, read_json, recorded, Client, Recorder};
use livepush::Hub;
use serde_json::{json, Value};

use crate::tickets_app as app;

/// The app on a recorded hub, and a client without a token.
fn start() -> (Client, Recorder) {
    let store = app::Store::seeded();
    let (hub, published) = recorded(app::authorized(Hub::builder(), store.clone()));
    (Client::new(app::router(store, &hub)), published)
}

/// `client` acting as the owner of `token`.
fn user(client: &Client, token: &str) -> Client {
    client
        .clone()
        .header("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn a_comment_is_published_on_its_ticket() {
    let (client, published) = start();
    let bob = user(&client, "bob-token");
    let response = bob
        .post_json("/tickets/1/comments", &json!({"text": "on it"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let comment: Value = read_json(response).await;
    assert_eq!(comment["author"], "bob");
    assert_published!(
        published,
        topic = "ticket:1",
        event = "comment_added",
        data = comment
    );
}

#[tokio::test]
async fn a_new_ticket_is_published_on_its_workspace_and_a_status_change_on_both_topics() {
    let (client, published) = start();
    let carol = user(&client, "carol-token");
    let response = carol
        .post_json("/tickets", &json!({"title": "Fax jammed"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = read_json(response).await;
    // `{workspace}` is read from the returned ticket: carol's
    assert_published!(
        published,
        topic = "workspace:globex",
        event = "ticket_created",
        data = created
    );

    published.take();
    let response = user(&client, "bob-token")
        .patch_json("/tickets/1", &json!({"status": "closed"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ticket: Value = read_json(response).await;
    assert_eq!(ticket["status"], "closed");
    // Stacked attributes: once on the ticket's topic, once on its workspace's.
    let published = published.take();
    let published: Vec<_> = published
        .iter()
        .map(|p| (p.topic.as_str(), p.event.as_str(), p.value()))
        .collect();
    assert_eq!(
        published,
        [
            ("ticket:1", "ticket_updated", ticket.clone()),
            ("workspace:acme", "ticket_updated", ticket),
        ]
    );
}

#[tokio::test]
async fn refused_requests_answer_401_or_404_with_json_and_publish_nothing() {
    let (client, published) = start();

    let anonymous = client
        .post_json("/tickets/1/comments", &json!({"text": "hi"}))
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bad_token = user(&client, "nope")
        .post_json("/tickets/1/comments", &json!({"text": "hi"}))
        .await;
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    // Carol cannot reach alice's ticket through the API either: not found, not forbidden.
    let carol = user(&client, "carol-token");
    let response = carol
        .post_json("/tickets/1/comments", &json!({"text": "let me in"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(read_json::<Value>(response).await["error"].is_string());
    let response = carol
        .patch_json("/tickets/1", &json!({"status": "closed"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let blank = user(&client, "bob-token")
        .post_json("/tickets/1/comments", &json!({"text": " "}))
        .await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    published.assert_nothing_published();
}

#[tokio::test]
async fn a_subscription_answers_401_without_a_token_and_403_outside_the_users_workspace() {
    let (client, _published) = start();

    let anonymous = client.subscribe("/events?topic=ticket:1").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let error: Value = serde_json::from_str(&anonymous.text().await).unwrap();
    assert!(error["error"].is_string(), "{error}");
    let bad_token = user(&client, "nope")
        .subscribe("/events?topic=ticket:1")
        .await;
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    let carol = user(&client, "carol-token");
    for topics in [
        "ticket:1",
        "workspace:acme",
        "ticket:3,ticket:1",
        "ticket:999",
        "comments",
    ] {
        let refused = carol.subscribe(&format!("/events?topic={topics}")).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "carol on {topics}");
        let error: Value = serde_json::from_str(&refused.text().await).unwrap();
        assert_eq!(error["error"], "forbidden", "carol on {topics}");
    }
}

#[tokio::test]
async fn watchers_get_their_tickets_events_and_nobody_elses() {
    let (client, _published) = start();
    let (bob, carol) = (user(&client, "bob-token"), user(&client, "carol-token"));
    let mut alice = user(&client, "alice-token")
        .subscribe("/events?topic=ticket:1,workspace:acme")
        .await;
    let mut carols = carol.subscribe("/events?topic=ticket:3").await;
    assert_eq!(
        (alice.status(), carols.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    let comment: Value = read_json(
        bob.post_json("/tickets/1/comments", &json!({"text": "on it"}))
            .await,
    )
    .await;
    let event = alice.next_event().await.unwrap();
    assert_eq!(
        (event.event_name(), event.json::<Value>()),
        ("comment_added", comment)
    );
    let ticket: Value = read_json(
        bob.patch_json("/tickets/1", &json!({"status": "closed"}))
            .await,
    )
    .await;
    for _ in 0..2 {
        // once on ticket:1, once on workspace:acme: alice listens to both
        let event = alice.next_event().await.unwrap();
        assert_eq!(
            (event.event_name(), event.json::<Value>()),
            ("ticket_updated", ticket.clone())
        );
    }
    // Carol's own ticket's event is the first she gets: she saw none of acme's before it.
    let own: Value = read_json(
        carol
            .post_json("/tickets/3/comments", &json!({"text": "mine"}))
            .await,
    )
    .await;
    let event = carols.next_event().await.unwrap();
    assert_eq!(
        (event.event_name(), event.json::<Value>()),
        ("comment_added", own)
    );
}

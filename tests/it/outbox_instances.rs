//! crm_comments instances on one database and one Redis, run as a user runs them: they serve
//! the same comments, a comment committed by an instance that dies before relaying it reaches
//! subscribers through another, 1,000 concurrent commits from four instances reach every
//! subscriber once and in commit order, and a database that is down answers 503 and publishes
//! nothing.
//!
//! PostgreSQL tests run on the server `LIVEPUSH_TEST_POSTGRES_URL` names (`scripts/test.sh` starts
//! one; see `tests/it/support/database.rs`).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{get_json, http, Example, Postgres, RedisServer, Sqlite, SseClient, TcpProxy};

fn start(db: &str, redis: &RedisServer, relay: &str) -> Example {
    Example::start(
        "crm_comments",
        &[
            ("DATABASE_URL", db),
            ("REDIS_URL", &redis.url()),
            ("LIVEPUSH_OUTBOX_RELAY", relay),
        ],
    )
}

async fn post(example: &Example, text: &str) -> reqwest::Response {
    http()
        .post(example.url("/comments"))
        .json(&json!({"author": "ann", "text": text}))
        .send()
        .await
        .unwrap()
}

async fn post_created(example: &Example, text: &str) -> Value {
    let response = post(example, text).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// A stream of `comments` on `example`, once its broker is connected (a stream opened before
/// the first Redis connection starts with a `broker_gap` reset).
async fn subscribe(example: &Example) -> SseClient {
    example.wait_ready().await;
    SseClient::connect(&example.url("/events?topic=comments")).await
}

/// The comment of the next `comment_created` event.
async fn next_created(sub: &mut SseClient) -> (String, Value) {
    let event = sub.next().await;
    assert_eq!(event.event, "comment_created", "{event:?}");
    (event.id, serde_json::from_str(&event.data).unwrap())
}

async fn two_instances_serve_the_same_comments_and_deliver_to_both(db: &str) {
    let redis = RedisServer::start();
    let a = start(db, &redis, "on");
    let b = start(db, &redis, "on");
    let mut on_a = subscribe(&a).await;
    let mut on_b = subscribe(&b).await;
    let first = post_created(&a, "posted to A").await;
    let second = post_created(&b, "posted to B").await;
    for sub in [&mut on_a, &mut on_b] {
        assert_eq!(next_created(sub).await.1, first);
        assert_eq!(next_created(sub).await.1, second);
    }
    let list_a = get_json(&a.url("/comments")).await;
    let list_b = get_json(&b.url("/comments")).await;
    assert_eq!(list_a, json!([first, second]));
    assert_eq!(list_a, list_b, "both instances read one database");
}

#[tokio::test]
async fn sqlite_two_instances_on_one_file_serve_the_same_comments_and_deliver_to_both() {
    let file = Sqlite::create();
    two_instances_serve_the_same_comments_and_deliver_to_both(&file.url).await;
}

#[tokio::test]
async fn postgres_two_instances_serve_the_same_comments_and_deliver_to_both() {
    let pg = Postgres::create().await;
    two_instances_serve_the_same_comments_and_deliver_to_both(&pg.url).await;
}

#[tokio::test]
async fn a_comment_committed_by_an_instance_killed_before_relaying_reaches_subscribers_once() {
    let pg = Postgres::create().await;
    let redis = RedisServer::start();
    let a = start(&pg.url, &redis, "off");
    let b = start(&pg.url, &redis, "on");
    let mut on_b = subscribe(&b).await;

    let comment = post_created(&a, "committed, then the process died").await;
    drop(a); // SIGKILL: A never relays anything (its relay is off)
    assert_eq!(
        next_created(&mut on_b).await.1,
        comment,
        "B relayed A's row"
    );

    let a = start(&pg.url, &redis, "on");
    let mut on_a = subscribe(&a).await;
    on_b.assert_quiet(
        Duration::from_millis(1500),
        "A's relay, back on, publishes nothing twice",
    )
    .await;
    // And the restarted A still relays new comments, once.
    let next = post_created(&a, "after the restart").await;
    assert_eq!(next_created(&mut on_b).await.1, next);
    assert_eq!(next_created(&mut on_a).await.1, next);
    on_b.assert_quiet(Duration::from_millis(500), "once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_commits_from_four_instances_reach_every_subscriber_once_in_commit_order(
) {
    const COMMENTS: usize = 1000;
    let pg = Postgres::create().await;
    let redis = RedisServer::start();
    let instances: Vec<Example> = (0..4).map(|_| start(&pg.url, &redis, "on")).collect();
    let mut subs = Vec::new();
    for example in &instances {
        subs.push(subscribe(example).await);
    }
    let client = http();
    let statuses: Vec<StatusCode> = stream::iter(0..COMMENTS)
        .map(|i| {
            let url = instances[i % instances.len()].url("/comments");
            let client = client.clone();
            async move {
                client
                    .post(url)
                    .json(&json!({"author": "load", "text": format!("comment {i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED));

    // Commit order of the topic: the outbox rows of `comments` in id order (PostgreSQL's topic
    // lock makes row ids of one topic follow commit order).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url)
        .await
        .unwrap();
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT data FROM livepush_outbox WHERE topic = 'comments' ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let committed: Vec<u64> = rows
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(committed.len(), COMMENTS);

    for (n, sub) in subs.iter_mut().enumerate() {
        let mut ids = HashSet::new();
        let mut received = Vec::with_capacity(COMMENTS);
        for _ in 0..COMMENTS {
            let (event_id, comment) = next_created(sub).await;
            assert!(ids.insert(event_id), "subscriber {n}: an event id twice");
            received.push(comment["id"].as_u64().unwrap());
        }
        assert_eq!(
            received, committed,
            "subscriber {n}: commit order, each once"
        );
        sub.assert_quiet(Duration::from_millis(300), "nothing more")
            .await;
    }
}

// Multi-threaded: the proxy's tasks run while `Example::start` blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_answers_503_json_and_publishes_nothing() {
    let pg = Postgres::create().await;
    let proxy = TcpProxy::start(pg.loopback_port());
    let url = pg.url_through(proxy.port);
    let redis = RedisServer::start();
    let example = start(&url, &redis, "on");
    let mut sub = subscribe(&example).await;

    proxy.cut();
    let response = post(&example, "while the database is down").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable", "{body}");
    assert!(body["message"].is_string());
    sub.assert_quiet(Duration::from_millis(500), "no row, no event")
        .await;

    proxy.heal();
    let comment = post_created(&example, "once it is back").await;
    assert_eq!(next_created(&mut sub).await.1, comment);
    assert_eq!(
        get_json(&example.url("/comments")).await,
        json!([comment]),
        "the refused comment was never written"
    );
}

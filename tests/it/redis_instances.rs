//! The Redis broker with real `redis-server`s: several hubs on one Redis, restarts, replay,
//! subscription counts, slot leases. (Fan-out, exact replay, ordering, resets and per-key caps
//! shared across instances are the broker conformance suite's, `conformance.rs`.)

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use livepush::__private::SubscribeContext;
use livepush::broker::redis::RedisBroker;
use livepush::sse::RESET;
use livepush::{Config, Hub, HubBuilder, RouterExt, Subscription, Topics};
use serde_json::{json, Value};

use crate::support;
use crate::support::handlers::{create, events};
use crate::support::{eventually, http, wait_for_status, RedisServer, SseClient, TestServer};

/// One user's stream, capped per user across instances: `x-user: <id>`.
async fn my_events(ctx: SubscribeContext, headers: HeaderMap) -> Response {
    let user = headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    ctx.with(Subscription::new(Topics::one(format!("user:{user}"))).cap_key(user))
        .await
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/me/events", get(my_events))
        .route("/comments", post(create))
        .livepush(hub)
        .merge(hub.admin_routes())
}

fn builder(redis: &RedisServer) -> HubBuilder {
    Hub::builder()
        .redis(redis.url())
        .replay(1000, Duration::from_secs(600))
}

/// [`builder`] with a publish timeout of an hour: a publish that fails within a test's
/// ceiling did not wait for its timeout.
fn patient(redis: &RedisServer) -> HubBuilder {
    Hub::builder()
        .publish_timeout(Duration::from_secs(3600))
        .redis(redis.url())
        .replay(1000, Duration::from_secs(600))
}

/// A hub on `redis` served on a loopback port, once it is ready.
async fn instance(hub: Hub) -> (Hub, TestServer) {
    let server = TestServer::start(app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    (hub, server)
}

async fn numsub(redis: &RedisServer, channel: &str) -> i64 {
    let mut conn = redis.connection().await;
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    n
}

/// Waits until `n` processes subscribe the channel of `topic` (SUBSCRIBE is sent in the background).
async fn subscribed(redis: &RedisServer, topic: &str, n: i64) {
    let channel = format!("livepush:topic:{topic}");
    eventually(&format!("{n} subscriptions of {channel}"), || async {
        numsub(redis, &channel).await == n
    })
    .await;
}

async fn client_count(redis: &RedisServer) -> usize {
    let mut conn = redis.connection().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines().count()
}

fn id_of(event: &eventsource_stream::Event) -> u64 {
    event.id.parse().expect("decimal event id")
}

/// Reads events until the first event that is not a comment or hint, skipping nothing else.
async fn next_event(client: &mut SseClient) -> eventsource_stream::Event {
    client.next().await
}

#[tokio::test]
async fn a_stream_answers_once_redis_confirmed_its_topic_so_the_next_event_is_not_missed() {
    let redis = RedisServer::start();
    // no replay: only the live subscription can bring the event
    let (a, server_a) = instance(Hub::builder().redis(redis.url()).build().unwrap()).await;
    let (b, _server_b) = instance(Hub::builder().redis(redis.url()).build().unwrap()).await;

    redis.pause();
    let url = server_a.url("/events?topic=fresh");
    let connecting = tokio::spawn(async move { SseClient::connect(&url).await });
    // Once A registered the stream's topic, it asks Redis to confirm the SUBSCRIBE, which a
    // paused Redis cannot do: the response must not have gone out. (A answers anyway after 2 s,
    // fail-open; the check below runs right after the registration is seen, with no await in
    // between, so only a stall of this thread longer than that could make it miss.)
    eventually("A registered the stream's topic", || async {
        a.subscriber_counts()
            .iter()
            .any(|(t, _)| t.as_str() == "fresh")
    })
    .await;
    assert!(
        !connecting.is_finished(),
        "the SSE response went out before Redis confirmed the subscription"
    );
    redis.resume();
    let mut client = connecting.await.unwrap();

    // published the moment the client has its response, from another instance
    b.publish("fresh", "created", &json!({"n": 1}))
        .await
        .unwrap();
    let event = next_event(&mut client).await;
    assert_eq!(event.event, "created");
    assert_eq!(event.data, r#"{"n":1}"#);
}

#[tokio::test]
async fn a_replay_without_a_confirmed_subscription_waits_once_and_tells_the_client_to_reset() {
    // Which way the subscription went is told by the hub's warnings (this test runs on one
    // thread, so the capture sees them).
    const UNCONFIRMED: &str = "live delivery not confirmed, history not read";
    const HISTORY_FAILED: &str = "history unavailable; the client is told to reset";
    let (logs, _guard) = support::capture_logs("livepush=warn");
    let redis = RedisServer::start();
    let (_a, server) = instance(builder(&redis).build().unwrap()).await;
    redis.pause();
    let url = server.url("/events?topic=frozen");
    let mut client = SseClient::connect_with(&url, &[("last-event-id", "1")]).await;
    redis.resume();
    // History cannot be read in order without live delivery: a reset, not a silent gap.
    let reset = next_event(&mut client).await;
    assert_eq!(reset.event, RESET.as_str());
    assert!(reset.data.contains("history_unavailable"), "{}", reset.data);
    // One wait, for the subscription; no history read tried against the frozen Redis after it.
    let text = logs.text();
    assert_eq!(
        (
            text.matches(UNCONFIRMED).count(),
            text.matches(HISTORY_FAILED).count()
        ),
        (1, 0),
        "{text}"
    );
}

#[tokio::test]
async fn prefixes_keep_apps_on_one_redis_apart() {
    let redis = RedisServer::start();
    let (one, _s1) = instance(builder(&redis).redis_prefix("app1:").build().unwrap()).await;
    let (_two, s2) = instance(builder(&redis).redis_prefix("app2:").build().unwrap()).await;
    let mut client = SseClient::connect(&s2.url("/events?topic=comments")).await;
    let mut conn = redis.connection().await;
    eventually("app2 subscribed", || {
        let mut conn = conn.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("app2:topic:comments")
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 1
        }
    })
    .await;
    one.publish("comments", "created", &json!({"app": 1}))
        .await
        .unwrap();
    client
        .assert_quiet(Duration::from_millis(500), "app1's event is not app2's")
        .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    // app2 keeps its own position and readiness probe, under its own prefix; the event of app1
    // went into app1's keys only.
    assert!(
        keys.iter()
            .all(|k| k.starts_with("app1:") || k.starts_with("app2:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k == "app1:stream:comments")
            && !keys.iter().any(|k| k.starts_with("app2:stream:")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn subscribers_get_what_was_published_during_an_outage_after_a_reset_when_redis_restarts_empty(
) {
    let mut redis = RedisServer::start();
    let (a, server_a) = instance(patient(&redis).build().unwrap()).await;
    let (_b, server_b) = instance(builder(&redis).build().unwrap()).await;
    let mut on_a = SseClient::connect(&server_a.url("/events?topic=comments")).await;
    let mut on_b = SseClient::connect(&server_b.url("/events?topic=comments")).await;
    subscribed(&redis, "comments", 2).await;

    redis.kill();
    for server in [&server_a, &server_b] {
        wait_for_status(&server.url("/health/ready"), 503).await;
        let live = http().get(server.url("/health/live")).send().await.unwrap();
        assert_eq!(live.status(), 200);
    }
    // A's publish timeout is an hour: answered within the HTTP client's 30 s, the publish to a
    // dead Redis failed fast, on the refused connection, not on the timeout
    let response = http()
        .post(server_a.url("/comments"))
        .json(&json!({"text": "during the outage"}))
        .send()
        .await
        .expect("answered: publishing to a dead Redis fails fast");
    assert_eq!(
        response.status(),
        201,
        "a failed publish never changes the handler's answer"
    );
    let buffered = a.publish("comments", "created", &json!({})).await;
    assert!(
        matches!(buffered, Ok(livepush::Published::Buffered)),
        "{buffered:?}"
    );

    redis.restart();
    // ready again only once A's retry buffer published what it held
    for server in [&server_a, &server_b] {
        wait_for_status(&server.url("/health/ready"), 200).await;
    }
    subscribed(&redis, "comments", 2).await;
    let response = http()
        .post(server_b.url("/comments"))
        .json(&json!({"text": "after the restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for client in [&mut on_a, &mut on_b] {
        // Redis came back empty: each stream is told to reset (its history is gone), and what
        // A accepted during the outage arrives late, in order, before the next event.
        let mut data = Vec::new();
        let mut reset_first = false;
        loop {
            let event = next_event(client).await;
            if event.event == RESET.as_str() {
                assert!(!event.id.is_empty(), "a reset carries an id to resume from");
                reset_first |= data.is_empty();
                continue;
            }
            data.push(event.data);
            if data.last().is_some_and(|d| d.contains("after the restart")) {
                break;
            }
        }
        assert!(reset_first, "the restart is a gap: a reset comes first");
        assert_eq!(
            data,
            [
                r#"{"text":"during the outage"}"#,
                "{}",
                r#"{"text":"after the restart"}"#
            ]
        );
    }
    let metrics = http()
        .get(server_a.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reconnects = metrics
        .lines()
        .find(|l| l.starts_with("livepush_broker_reconnects"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(reconnects >= 1.0, "reconnects are counted:\n{metrics}");
}

#[tokio::test]
async fn the_app_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.kill();
    let hub = builder(&redis).build().expect("building never needs Redis");
    let server = TestServer::start(app(&hub)).await;
    assert_eq!(
        http()
            .get(server.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let response = http()
        .post(server.url("/comments"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    redis.restart();
    let (_hub, server) = instance(hub).await;
    let mut client = SseClient::connect(&server.url("/events?topic=comments")).await;
    subscribed(&redis, "comments", 1).await;
    http()
        .post(server.url("/comments"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(next_event(&mut client).await.data, r#"{"n":1}"#);
}

#[tokio::test]
async fn a_stream_opened_before_redis_was_ever_reached_is_reset_when_it_connects() {
    let mut redis = RedisServer::start();
    redis.kill();
    let hub = builder(&redis).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    // No confirmed subscription can exist yet: the stream opens anyway (fail-open) after the
    // bounded wait, and what others publish before its subscription exists may be missed.
    let mut client = SseClient::connect(&server.url("/events?topic=early")).await;
    // the current values could not be read either: the client is told at once
    let unread = next_event(&mut client).await;
    assert_eq!(unread.event, RESET.as_str(), "{unread:?}");
    assert!(unread.data.contains("state_unavailable"), "{}", unread.data);
    redis.restart();
    wait_for_status(&server.url("/health/ready"), 200).await;
    let reset = next_event(&mut client).await;
    assert_eq!(reset.event, RESET.as_str(), "the gap is told, not hidden");
    assert!(reset.data.contains("broker_gap"), "{}", reset.data);
    let (other, _other_server) = instance(builder(&redis).build().unwrap()).await;
    let id = other
        .publish("early", "created", &json!({"n": 1}))
        .await
        .unwrap()
        .id()
        .unwrap();
    let event = next_event(&mut client).await;
    assert_eq!((event.event.as_str(), id_of(&event)), ("created", id.get()));
}

#[tokio::test]
async fn a_client_is_told_when_the_stream_expired() {
    let redis = RedisServer::start();
    // retention: 10 events per topic, 1 second
    let (hub, server) = instance(
        Hub::builder()
            .redis(redis.url())
            .replay(10, Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .await;
    let url = server.url("/events?topic=t");
    let _watcher = SseClient::connect(&url).await;
    subscribed(&redis, "t", 1).await;

    // expired: the whole stream is gone after its TTL
    let old = hub
        .publish("t", "e", &json!({"n": 0}))
        .await
        .unwrap()
        .id()
        .unwrap();
    let conn = redis.connection().await;
    eventually("the stream expired", || {
        let mut conn = conn.clone();
        async move {
            !redis::cmd("EXISTS")
                .arg("livepush:stream:t")
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;
    let fresh = hub
        .publish("t", "e", &json!({"n": 1}))
        .await
        .unwrap()
        .id()
        .unwrap();
    let mut client = SseClient::connect_with(&url, &[("last-event-id", &old.to_string())]).await;
    let reset = next_event(&mut client).await;
    assert_eq!(reset.event, RESET.as_str());
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["last_event_id"], json!(old.get()));
    assert_eq!(
        id_of(&next_event(&mut client).await),
        fresh.get(),
        "then what is retained"
    );
}

#[tokio::test]
async fn one_redis_subscription_per_channel_per_process_whatever_the_number_of_clients() {
    let redis = RedisServer::start();
    let (_a, server_a) = instance(builder(&redis).build().unwrap()).await;
    let (_b, server_b) = instance(builder(&redis).build().unwrap()).await;
    let url_a = server_a.url("/events?topic=crowd");

    let one = SseClient::connect(&url_a).await;
    subscribed(&redis, "crowd", 1).await;
    let connections_with_one_client = client_count(&redis).await;
    let mut many = vec![one];
    for _ in 1..50 {
        many.push(SseClient::connect(&url_a).await);
    }
    let on_b = SseClient::connect(&server_b.url("/events?topic=crowd")).await;
    subscribed(&redis, "crowd", 2).await; // one per process, not one per client
    assert_eq!(
        client_count(&redis).await,
        connections_with_one_client,
        "50 clients use the connections one client used"
    );

    drop(many);
    subscribed(&redis, "crowd", 1).await; // process A left the channel
    drop(on_b);
    subscribed(&redis, "crowd", 0).await;
    assert_eq!(client_count(&redis).await, connections_with_one_client);
}

#[tokio::test]
async fn slots_of_a_crashed_instance_expire_while_live_ones_are_kept() {
    let redis = RedisServer::start();
    let lease = Duration::from_millis(900);
    let config = Config::default();
    let broker = RedisBroker::new(
        &redis.url(),
        "livepush:",
        config.replay(),
        config.replay_ttl(),
    )
    .unwrap()
    .slot_lease(lease);
    let (_hub, server) = instance(
        Hub::builder()
            .broker(broker)
            .max_connections_per_key(2)
            .build()
            .unwrap(),
    )
    .await;
    let url = server.url("/me/events");
    let user = [("x-user", "crash")];

    // a crashed instance left one slot behind: a member it will never refresh nor remove
    let mut conn = redis.connection().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let expires_ms = secs * 1000 + micros / 1000 + lease.as_millis() as u64;
    let _: () = redis::cmd("ZADD")
        .arg("livepush:slots:crash")
        .arg(expires_ms)
        .arg("crashed-instance:1")
        .query_async(&mut conn)
        .await
        .unwrap();

    let _live = SseClient::connect_with(&url, &user).await;
    assert_eq!(SseClient::request(&url, &user).await.status(), 429);
    // The live slot's expiry (ms, Redis clock) as first written, then moved on by a refresh.
    let live_expiry = || {
        let mut conn = conn.clone();
        async move {
            let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg("livepush:slots:crash")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .unwrap();
            members
                .into_iter()
                .find(|(member, _)| member != "crashed-instance:1")
                .map(|(_, expiry)| expiry)
        }
    };
    let first = live_expiry()
        .await
        .expect("the live connection holds a slot");
    eventually("a refresh moved the live slot's expiry on", || async {
        live_expiry().await.is_some_and(|e| e > first)
    })
    .await;
    // Once Redis's clock is past both first expiries, a slot that was not refreshed is gone:
    // the crashed one frees its place, the live one must still hold its own.
    let deadline = first.max(expires_ms as f64);
    eventually("Redis's clock passed the first leases", || {
        let mut conn = conn.clone();
        async move {
            let (secs, micros): (u64, u64) =
                redis::cmd("TIME").query_async(&mut conn).await.unwrap();
            (secs * 1000 + micros / 1000) as f64 > deadline
        }
    })
    .await;
    let _next = SseClient::connect_with(&url, &user).await;
    assert_eq!(
        SseClient::request(&url, &user).await.status(),
        429,
        "the live slot was refreshed"
    );
}

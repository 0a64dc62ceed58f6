//! No event lost silently through broker faults, with real `redis-server`s: Redis killed and
//! restarted empty, one instance cut off by a TCP proxy, pub/sub connections killed, Redis frozen,
//! the retry buffer overflowing or ageing out, wrong and rotated passwords, a full Redis, a
//! `Last-Event-ID` from the future, and a Sentinel failover.
//!
//! Every subscriber is checked with the no-silent-gap rule of [`read_without_silent_gap`]
//! (`support/gaps.rs`). Tests in which replay recovers everything also assert that no reset
//! came.

use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use livepush::sse::RESET;
use livepush::{Hub, HubBuilder, RouterExt};
use serde_json::{json, Value};

use crate::support::gaps::{
    accepted, buffered, check_missing_accounted_for, check_order, check_resets_have_ids,
    post_comment, published, read_without_silent_gap, Duplicates, Item, Sent, Transcript,
};
use crate::support::handlers::{create, events};
use crate::support::{
    capture_logs, eventually, http, metric, wait_for_status, RedisServer, Sentinel, SseClient,
    TcpProxy, TestServer,
};

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/comments", post(create))
        .livepush(hub)
        .merge(hub.admin_routes())
}

/// A hub on the Redis at `url`, replay on.
fn builder(url: String) -> HubBuilder {
    Hub::builder()
        .redis(url)
        .replay(1000, Duration::from_secs(600))
}

/// A hub served on a loopback port, once it is ready.
async fn instance(hub: Hub) -> (Hub, TestServer) {
    let server = TestServer::start(app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    (hub, server)
}

/// A ceiling on how soon an instance is ready again once Redis answers: generous (the contract
/// says 3 s; the real figure is measured elsewhere), so a loaded machine does not fail it, and
/// it still catches "never".
const READY_AGAIN: Duration = Duration::from_secs(15);

/// Polls `/health/ready` of `server` until it answers 200; panics when that takes more than
/// `limit` from `since`.
async fn ready_within(server: &TestServer, since: Instant, limit: Duration, what: &str) {
    let url = server.url("/health/ready");
    loop {
        let status = http().get(&url).send().await.map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "{what}: not ready {:?} after Redis answered again (last answer {status:?})",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn ready_status(server: &TestServer) -> u16 {
    http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn metrics(server: &TestServer) -> String {
    http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An SSE stream of `topic` on `server` that keeps its raw bytes (to check each reset's `id:`).
async fn subscribe(server: &TestServer, topic: &str) -> SseClient {
    SseClient::connect_recorded(&server.url(&format!("/events?topic={topic}")), &[]).await
}

/// How many connections subscribe the channel of `topic` on `redis`.
async fn numsub(redis: &RedisServer, topic: &str) -> i64 {
    let channel = format!("livepush:topic:{topic}");
    let answer = redis.admin_command(&["PUBSUB", "NUMSUB", &channel]).await;
    let (_, n): (String, i64) = redis::from_redis_value(answer).expect("PUBSUB NUMSUB answer");
    n
}

/// Waits until `n` processes subscribe the channel of `topic`.
async fn subscribed(redis: &RedisServer, topic: &str, n: i64) {
    eventually(&format!("{n} subscriptions of topic {topic}"), || async {
        numsub(redis, topic).await == n
    })
    .await;
}

/// `CLIENT KILL TYPE <kind>` as admin; returns how many connections Redis closed.
async fn client_kill(redis: &RedisServer, kind: &str) -> i64 {
    let answer = redis.admin_command(&["CLIENT", "KILL", "TYPE", kind]).await;
    redis::from_redis_value(answer).expect("CLIENT KILL answers a count")
}

fn comment(what: &str, n: usize) -> Value {
    json!({ "text": what, "n": n })
}

#[tokio::test]
async fn events_accepted_while_redis_is_down_reach_both_instances_after_it_restarts_empty() {
    let mut redis = RedisServer::start();
    let (a, server_a) = instance(builder(redis.url()).build().unwrap()).await;
    let (_b, server_b) = instance(builder(redis.url()).build().unwrap()).await;
    let mut on_a = subscribe(&server_a, "comments").await;
    let mut on_b = subscribe(&server_b, "comments").await;
    subscribed(&redis, "comments", 2).await;

    redis.kill();
    for server in [&server_a, &server_b] {
        wait_for_status(&server.url("/health/ready"), 503).await;
    }
    let mut expected = Vec::new();
    for n in 1..=2 {
        expected.push(post_comment(&server_a, &comment("during the outage", n)).await);
    }
    expected.push(buffered(&a, "comments", &comment("during the outage", 3)).await);
    let text = metrics(&server_a).await;
    assert_eq!(
        metric(&text, "livepush_retry_buffer_events"),
        3.0,
        "the 3 events wait in A's retry buffer:\n{text}"
    );
    assert_eq!(ready_status(&server_a).await, 503);

    redis.restart();
    let restarted = Instant::now();
    ready_within(&server_a, restarted, READY_AGAIN, "A").await;
    ready_within(&server_b, restarted, READY_AGAIN, "B").await;
    expected.push(post_comment(&server_b, &comment("after the restart", 4)).await);

    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        // Redis restarted empty: a reset (`broker_gap`), but every buffered event arrives
        read_without_silent_gap(client, who, &expected, Duplicates::Refused)
            .await
            .assert_nothing_missing(&["broker_gap"]);
    }
    let text = metrics(&server_a).await;
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 0.0, "{text}");
    assert!(
        metric(&text, "livepush_events_retried_total") >= 3.0,
        "the 3 buffered events are counted as retried:\n{text}"
    );
    assert_eq!(
        metric(&text, "livepush_events_given_up_total"),
        0.0,
        "{text}"
    );
}

#[tokio::test]
async fn an_instance_cut_off_from_redis_catches_up_and_publishes_what_it_accepted_once_healed() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.port);
    let (a, server_a) = instance(builder(proxy.url()).build().unwrap()).await;
    let (b, server_b) = instance(builder(redis.url()).build().unwrap()).await;
    let mut on_a = subscribe(&server_a, "comments").await;
    let mut on_b = subscribe(&server_b, "comments").await;
    subscribed(&redis, "comments", 2).await;
    // through the proxy, A publishes as usual
    let first = vec![accepted(&a, "comments", &comment("before the cut", 0)).await];
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        read_without_silent_gap(client, who, &first, Duplicates::Refused)
            .await
            .assert_complete();
    }

    proxy.cut();
    wait_for_status(&server_a.url("/health/ready"), 503).await;
    assert_eq!(ready_status(&server_b).await, 200, "B still has Redis");
    let mut expected = Vec::new();
    for n in 1..=2 {
        let data = comment("on B while A is cut off", n);
        expected.push(published(&b, "comments", &data, "B publishes as usual").await);
    }
    for n in 3..=4 {
        expected.push(post_comment(&server_a, &comment("accepted by A while cut off", n)).await);
    }
    let text = metrics(&server_a).await;
    assert_eq!(
        metric(&text, "livepush_retry_buffer_events"),
        2.0,
        "A keeps what it accepted:\n{text}"
    );

    proxy.heal();
    let healed = Instant::now();
    ready_within(&server_a, healed, READY_AGAIN, "A").await;
    expected.push(accepted(&b, "comments", &comment("after the heal", 5)).await);
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        // A reads what it missed from the streams, and publishes what it buffered: no reset
        read_without_silent_gap(client, who, &expected, Duplicates::Refused)
            .await
            .assert_complete();
    }
}

/// Two instances on one Redis, each with a subscriber of `ticks` whose channel is subscribed.
struct Ticks {
    redis: RedisServer,
    a: Hub,
    servers: [TestServer; 2],
    on_a: SseClient,
    on_b: SseClient,
}

async fn ticks() -> Ticks {
    let redis = RedisServer::start();
    let (a, server_a) = instance(builder(redis.url()).build().unwrap()).await;
    let (_b, server_b) = instance(builder(redis.url()).build().unwrap()).await;
    let on_a = subscribe(&server_a, "ticks").await;
    let on_b = subscribe(&server_b, "ticks").await;
    subscribed(&redis, "ticks", 2).await;
    Ticks {
        redis,
        a,
        servers: [server_a, server_b],
        on_a,
        on_b,
    }
}

#[tokio::test]
async fn killing_the_pubsub_connections_mid_stream_loses_no_event_silently() {
    let Ticks {
        redis,
        a,
        servers: _servers, // serving until the end of the test
        mut on_a,
        mut on_b,
    } = ticks().await;

    const TOTAL: usize = 80;
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut published = Vec::with_capacity(TOTAL);
            for n in 0..TOTAL {
                published.push(accepted(&a, "ticks", &json!({ "n": n })).await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            published
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    let killed = client_kill(&redis, "pubsub").await;
    assert!(
        killed >= 2,
        "both instances' subscriptions were killed ({killed})"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    client_kill(&redis, "pubsub").await; // again, maybe during a catch-up
    let mut expected = publisher.await.unwrap();
    expected.push(accepted(&a, "ticks", &json!({ "n": "last" })).await);
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        // the streams hold everything missed meanwhile: caught up, no reset
        read_without_silent_gap(client, who, &expected, Duplicates::Refused)
            .await
            .assert_complete();
    }
}

#[tokio::test]
async fn a_redis_frozen_by_debug_sleep_mid_stream_loses_no_event_silently() {
    let Ticks {
        redis,
        a,
        servers: [server_a, server_b],
        mut on_a,
        mut on_b,
    } = ticks().await;

    // One publisher (A) whose publishes run into the freeze: some wait, some time out and are
    // buffered, and a timed-out one may have been executed by Redis anyway (at-least-once).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut published = Vec::new();
            for n in 0.. {
                if *stopped.borrow_and_update() {
                    break;
                }
                published.push(accepted(&a, "ticks", &json!({ "n": n })).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            published
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // DEBUG SLEEP answers when Redis wakes up, 3 s later
    redis.admin_command(&["DEBUG", "SLEEP", "3"]).await;
    let woke = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send_replace(true);
    let mut expected = publisher.await.unwrap();
    assert!(expected.len() >= 10, "published {}", expected.len());
    ready_within(&server_a, woke, READY_AGAIN, "A").await;
    ready_within(&server_b, woke, READY_AGAIN, "B").await;
    expected.push(accepted(&a, "ticks", &json!({ "n": "last" })).await);
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        // late, maybe twice, but all of it and no reset
        read_without_silent_gap(client, who, &expected, Duplicates::Allowed)
            .await
            .assert_complete();
    }
}

/// The overflow and expiry tests cut instance A off Redis with a proxy, so that Redis keeps
/// every other connection: B's subscribers see only what A's retry buffer causes.
struct CutOff {
    redis: RedisServer,
    proxy: TcpProxy,
    a: Hub,
    server_a: TestServer,
    b: Hub,
    server_b: TestServer,
}

async fn cut_off(retry_buffer: (usize, usize, Duration)) -> CutOff {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.port);
    let (events, bytes, age) = retry_buffer;
    let (a, server_a) = instance(
        builder(proxy.url())
            .retry_buffer(events, bytes, age)
            .build()
            .unwrap(),
    )
    .await;
    let (b, server_b) = instance(builder(redis.url()).build().unwrap()).await;
    CutOff {
        redis,
        proxy,
        a,
        server_a,
        b,
        server_b,
    }
}

#[tokio::test]
async fn a_retry_buffer_overflow_resets_that_topic_on_every_instance_and_nothing_else() {
    let t = cut_off((2, 1 << 20, Duration::from_secs(30))).await;
    let mut a_on_a = subscribe(&t.server_a, "a").await;
    let mut a_on_b = subscribe(&t.server_b, "a").await;
    let mut b_on_a = subscribe(&t.server_a, "b").await;
    let mut b_on_b = subscribe(&t.server_b, "b").await;
    subscribed(&t.redis, "a", 2).await;
    subscribed(&t.redis, "b", 2).await;

    t.proxy.cut();
    wait_for_status(&t.server_a.url("/health/ready"), 503).await;
    let mut on_a_topic = Vec::new();
    for n in 1..=5 {
        on_a_topic.push(buffered(&t.a, "a", &json!({ "n": n })).await);
    }
    let text = metrics(&t.server_a).await;
    assert_eq!(
        metric(&text, "livepush_retry_buffer_events"),
        2.0,
        "the buffer keeps the newest 2:\n{text}"
    );

    t.proxy.heal();
    let healed = Instant::now();
    ready_within(&t.server_a, healed, READY_AGAIN, "A").await;
    on_a_topic.push(accepted(&t.b, "a", &json!({ "n": "after" })).await);
    let on_b_topic = vec![accepted(&t.b, "b", &json!({ "b": "after" })).await];

    for (who, client) in [("a on A", &mut a_on_a), ("a on B", &mut a_on_b)] {
        let got = read_without_silent_gap(client, who, &on_a_topic, Duplicates::Refused).await;
        let dropped: Vec<String> = on_a_topic[..3].iter().map(|s| s.data.clone()).collect();
        assert_eq!(
            got.missing,
            dropped,
            "{who}: exactly the 3 oldest were dropped from the buffer\n{}",
            got.dump()
        );
        let kept = got
            .position(&on_a_topic[3].data)
            .expect("the kept events arrive");
        let resets = got.resets();
        assert!(
            resets.iter().any(|&(at, _)| at < kept)
                && resets
                    .iter()
                    .all(|&(_, reason)| reason == "retry_buffer_overflow"),
            "{who}: one kind of reset, retry_buffer_overflow, before the kept events\n{}",
            got.dump()
        );
    }
    for (who, client) in [("b on A", &mut b_on_a), ("b on B", &mut b_on_b)] {
        // topic b lost nothing in the buffer, and A caught up on it from the stream
        read_without_silent_gap(client, who, &on_b_topic, Duplicates::Refused)
            .await
            .assert_complete();
    }
    let got = read_without_silent_gap(
        &mut b_on_b,
        "b on B",
        &[accepted(&t.b, "b", &json!({ "b": "again" })).await],
        Duplicates::Refused,
    )
    .await;
    assert!(
        got.resets().is_empty(),
        "B kept Redis and b lost nothing\n{}",
        got.dump()
    );
    let text = metrics(&t.server_a).await;
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 0.0, "{text}");
    assert_eq!(
        metric(&text, "livepush_events_given_up_total"),
        3.0,
        "3 dropped:\n{text}"
    );
    assert!(
        metric(&text, "livepush_events_retried_total") >= 2.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_buffered_event_older_than_the_retry_buffer_age_is_given_up_with_a_reset() {
    let t = cut_off((100, 1 << 20, Duration::from_millis(500))).await;
    let mut on_a = subscribe(&t.server_a, "a").await;
    let mut on_b = subscribe(&t.server_b, "a").await;
    subscribed(&t.redis, "a", 2).await;

    t.proxy.cut();
    wait_for_status(&t.server_a.url("/health/ready"), 503).await;
    let mut expected = Vec::new();
    for n in 1..=2 {
        expected.push(buffered(&t.a, "a", &json!({ "n": n })).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // three times the age
    t.proxy.heal();
    let healed = Instant::now();
    ready_within(&t.server_a, healed, READY_AGAIN, "A").await;
    expected.push(accepted(&t.b, "a", &json!({ "n": "after" })).await);
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        let got = read_without_silent_gap(client, who, &expected, Duplicates::Refused).await;
        let expired: Vec<String> = expected[..2].iter().map(|s| s.data.clone()).collect();
        assert_eq!(got.missing, expired, "{who}: both expired\n{}", got.dump());
        let resets = got.resets();
        assert!(
            !resets.is_empty()
                && resets
                    .iter()
                    .all(|&(_, reason)| reason == "retry_buffer_expired"),
            "{who}: one kind of reset, retry_buffer_expired\n{}",
            got.dump()
        );
    }
    let text = metrics(&t.server_a).await;
    assert_eq!(
        metric(&text, "livepush_events_given_up_total"),
        2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 0.0, "{text}");
}

/// The WARN lines of `logs` that name an authentication failure.
fn auth_warnings(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|line| line.contains(" WARN "))
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.contains("wrongpass") || line.contains("auth")
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_password_is_logged_without_the_password_and_the_instance_recovers_by_itself() {
    let (logs, _guard) = capture_logs("warn");
    const SERVER_PASSWORD: &str = "server-Pa55-2207";
    const APP_PASSWORD: &str = "app-Pa55-9c41";
    let redis = RedisServer::start_with(&["--requirepass", SERVER_PASSWORD]);
    let hub = builder(redis.url_with_password(APP_PASSWORD))
        .build()
        .expect("building never needs Redis");
    let server = TestServer::start(app(&hub)).await;

    wait_for_status(&server.url("/health/ready"), 503).await;
    eventually("a WARN names the authentication failure", || async {
        !auth_warnings(&logs.text()).is_empty()
    })
    .await;
    let mut client = subscribe(&server, "comments").await; // answered without Redis (fail-open)
    let mut expected = vec![post_comment(&server, &comment("while refused", 1)).await];
    assert_eq!(
        ready_status(&server).await,
        503,
        "still refused, an event waits"
    );

    // attempts go on after an authentication error: accepting the app's password is enough
    redis
        .admin_command(&["CONFIG", "SET", "requirepass", APP_PASSWORD])
        .await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    subscribed(&redis, "comments", 1).await;
    expected.push(post_comment(&server, &comment("once accepted", 2)).await);
    // a stream opened while Redis refused may be reset (`broker_gap`) when it connects; the
    // event accepted meanwhile arrives all the same
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Refused)
        .await
        .assert_nothing_missing(&["broker_gap"]);

    let text = logs.text();
    for password in [APP_PASSWORD, SERVER_PASSWORD] {
        assert!(
            !text.contains(password),
            "the logs show a password:\n{text}"
        );
    }
    eprintln!(
        "authentication warnings:\n{}",
        auth_warnings(&text).join("\n")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_password_rotated_under_a_connected_instance_makes_it_unready_until_redis_takes_it_again()
{
    let (logs, _guard) = capture_logs("warn");
    const P1: &str = "first-Pa55-4410";
    const P2: &str = "second-Pa55-8027";
    let redis = RedisServer::start_with(&["--requirepass", P1]);
    let (_hub, server) = instance(builder(redis.url_with_password(P1)).build().unwrap()).await;
    let mut client = subscribe(&server, "comments").await;
    subscribed(&redis, "comments", 1).await;
    let before = vec![post_comment(&server, &comment("before the rotation", 0)).await];
    read_without_silent_gap(&mut client, "subscriber", &before, Duplicates::Refused)
        .await
        .assert_complete();
    let warnings_before = auth_warnings(&logs.text()).len();

    redis
        .admin_command(&["CONFIG", "SET", "requirepass", P2])
        .await;
    let normal = client_kill(&redis, "normal").await;
    let pubsub = client_kill(&redis, "pubsub").await;
    assert!(
        normal >= 1 && pubsub >= 1,
        "the app's connections were closed ({normal} normal, {pubsub} pubsub)"
    );
    wait_for_status(&server.url("/health/ready"), 503).await;
    eventually("a WARN names the authentication failure", || async {
        auth_warnings(&logs.text()).len() > warnings_before
    })
    .await;
    let mut expected = vec![post_comment(&server, &comment("during the rotation", 1)).await];

    redis
        .admin_command(&["CONFIG", "SET", "requirepass", P1])
        .await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    expected.push(post_comment(&server, &comment("after the rotation", 2)).await);
    // Redis kept its data: caught up from the stream, the buffered event published, no reset
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Refused)
        .await
        .assert_complete();

    let text = logs.text();
    for password in [P1, P2] {
        assert!(
            !text.contains(password),
            "the logs show a password:\n{text}"
        );
    }
}

/// A client whose `Last-Event-ID` lies far ahead of every id `hub` issued gets a reset that
/// carries an id, then every live event; reconnecting with the reset's id needs no reset.
async fn check_a_last_event_id_from_the_future(hub: &Hub, server: &TestServer) {
    let now = hub
        .publish("future", "created", &json!({ "n": "now" }))
        .await
        .unwrap()
        .id()
        .unwrap()
        .get();
    let url = server.url("/events?topic=future");
    for foreign in [(now + 3_600_000_000).to_string(), u64::MAX.to_string()] {
        let mut client = SseClient::connect_recorded(&url, &[("last-event-id", &foreign)]).await;
        let reset = client.next().await;
        assert_eq!(
            reset.event,
            RESET.as_str(),
            "Last-Event-ID {foreign}: {reset:?}"
        );
        check_resets_have_ids(&client, &format!("Last-Event-ID {foreign}"));
        let data: Value = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(data["reason"], "history_unavailable", "{}", reset.data);
        let reset_id: u64 = reset.id.parse().unwrap();
        assert!(
            reset_id < now + 3_600_000_000,
            "the reset's id ({reset_id}) is not ahead of the server (at {now})"
        );

        let mut expected = Vec::new();
        for n in 1..=3 {
            expected.push(accepted(hub, "future", &json!({ "n": n })).await);
        }
        let got = read_without_silent_gap(
            &mut client,
            &format!("Last-Event-ID {foreign}"),
            &expected,
            Duplicates::Refused,
        )
        .await;
        assert!(
            got.resets().is_empty() && got.items.len() == 3,
            "exactly the 3 live events after the reset\n{}",
            got.dump()
        );
        assert!(
            got.items
                .iter()
                .all(|item| matches!(item, Item::Event { id, .. } if *id > reset_id)),
            "every event after the reset is above its id ({reset_id})\n{}",
            got.dump()
        );
        client
            .assert_quiet(Duration::from_millis(200), "nothing more")
            .await;

        // the reset's id is where the client resumes: what came after, no second reset
        let mut again = SseClient::connect_recorded(&url, &[("last-event-id", &reset.id)]).await;
        // resuming at the reset's id needs no reset
        read_without_silent_gap(&mut again, "resumed", &expected, Duplicates::Refused)
            .await
            .assert_complete();
    }
}

#[tokio::test]
async fn a_last_event_id_from_the_future_is_reset_then_gets_every_live_event_in_memory() {
    let hub = Hub::builder()
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let (hub, server) = instance(hub).await;
    check_a_last_event_id_from_the_future(&hub, &server).await;
}

#[tokio::test]
async fn a_last_event_id_from_the_future_is_reset_then_gets_every_live_event_on_redis() {
    let redis = RedisServer::start();
    let (hub, server) = instance(builder(redis.url()).build().unwrap()).await;
    check_a_last_event_id_from_the_future(&hub, &server).await;
}

#[tokio::test]
async fn a_full_redis_makes_the_instance_unready_and_what_it_accepted_arrives_once_memory_is_freed()
{
    let redis = RedisServer::start();
    let (a, server) = instance(builder(redis.url()).build().unwrap()).await;
    let mut client = subscribe(&server, "comments").await;
    subscribed(&redis, "comments", 1).await;
    let before = vec![post_comment(&server, &comment("before", 0)).await];
    read_without_silent_gap(&mut client, "subscriber", &before, Duplicates::Refused)
        .await
        .assert_complete();

    // 4 MiB of data, then a 1 MiB limit that refuses writes instead of evicting
    let filler = "x".repeat(4 << 20);
    redis
        .admin_command(&["SET", "livepush-test:filler", &filler])
        .await;
    redis
        .admin_command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .await;
    redis
        .admin_command(&["CONFIG", "SET", "maxmemory", "1mb"])
        .await;
    let refused = redis
        .try_admin_command(&["SET", "livepush-test:probe", "1"])
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("OOM")),
        "Redis refuses writes now: {refused:?}"
    );

    wait_for_status(&server.url("/health/ready"), 503).await;
    let mut expected = Vec::new();
    for n in 1..=2 {
        expected.push(post_comment(&server, &comment("while Redis is full", n)).await);
    }
    expected.push(buffered(&a, "comments", &comment("while Redis is full", 3)).await);
    assert_eq!(
        ready_status(&server).await,
        503,
        "not ready while publishes fail"
    );
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 3.0, "{text}");

    redis
        .admin_command(&["CONFIG", "SET", "maxmemory", "0"])
        .await;
    let freed = Instant::now();
    ready_within(&server, freed, READY_AGAIN, "the instance").await;
    expected.push(post_comment(&server, &comment("after", 4)).await);
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Refused)
        .await
        .assert_complete();
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 0.0, "{text}");
}

#[tokio::test]
async fn after_a_sentinel_failover_both_instances_publish_and_deliver_without_a_silent_gap() {
    let mut topology = Sentinel::start().await;
    let (a, server_a) = instance(builder(topology.url()).build().unwrap()).await;
    let (b, server_b) = instance(builder(topology.url()).build().unwrap()).await;
    let mut on_a = subscribe(&server_a, "comments").await;
    let mut on_b = subscribe(&server_b, "comments").await;
    subscribed(&topology.master, "comments", 2).await;
    let before = vec![
        accepted(&a, "comments", &comment("before the failover", 1)).await,
        accepted(&b, "comments", &comment("before the failover", 2)).await,
    ];
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        read_without_silent_gap(client, who, &before, Duplicates::Refused)
            .await
            .assert_complete();
    }

    topology.kill_master();
    topology.wait_for_promotion().await;
    let promoted = Instant::now();
    // published as soon as the replica is master: taken, or buffered until the hub finds it
    let mut expected = vec![accepted(&a, "comments", &comment("after the promotion", 3)).await];
    let limit = Duration::from_secs(10);
    ready_within(&server_a, promoted, limit, "A").await;
    ready_within(&server_b, promoted, limit, "B").await;
    for (n, hub) in [(4, &b), (5, &a)] {
        let data = comment("after the failover", n);
        expected.push(published(hub, "comments", &data, "a ready instance publishes").await);
    }
    for (who, client) in [("on A", &mut on_a), ("on B", &mut on_b)] {
        // everything expected was published after the promotion: it all arrives (a reset for
        // writes the old master never replicated may come first)
        read_without_silent_gap(client, who, &expected, Duplicates::Refused)
            .await
            .assert_nothing_missing(&["broker_gap"]);
    }
    assert_eq!(
        numsub(&topology.replica, "comments").await,
        2,
        "both subscribe the new master"
    );
}

/// The recent-history cache (`recent.rs`) answers a resuming client only for what its
/// instance saw without a gap. Here instance A, cut off from Redis, misses events that B
/// publishes and that a Redis restart then loses for good; A's cache held what came before, and
/// after A reconnects it sees newer events live again. A client resuming on A from before the
/// gap must get a `livepush.reset` for the lost events (history from Redis), never the cached
/// and the new events stitched together as if nothing were missing.
#[tokio::test]
async fn a_resume_across_events_an_instance_missed_for_good_is_reset_not_served_from_its_cache() {
    let mut redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.port);
    let (_a, server_a) = instance(builder(proxy.url()).build().unwrap()).await;
    let (b, server_b) = instance(builder(redis.url()).build().unwrap()).await;
    let mut anchor = subscribe(&server_a, "ticks").await;
    subscribed(&redis, "ticks", 1).await;
    let first = published(&b, "ticks", &json!({ "n": 0 }), "B is connected").await;
    let start = first.id.expect("published").to_string();
    let mut expected = vec![accepted(&b, "ticks", &json!({ "n": 1 })).await];
    let so_far = [first, expected[0].clone()];
    read_without_silent_gap(&mut anchor, "anchor", &so_far, Duplicates::Refused)
        .await
        .assert_complete();
    // a first resume seeds A's cache with what follows `start`
    let url = server_a.url("/events?topic=ticks");
    let mut seeded = SseClient::connect_recorded(&url, &[("last-event-id", start.as_str())]).await;
    read_without_silent_gap(&mut seeded, "first resume", &expected, Duplicates::Refused)
        .await
        .assert_complete();

    proxy.cut();
    wait_for_status(&server_a.url("/health/ready"), 503).await;
    for n in 2..=3 {
        let data = json!({ "n": n, "lost": true });
        expected.push(published(&b, "ticks", &data, "B keeps Redis").await);
    }
    // lost for good by the restart; the resume below asks for 1 too, which went with them
    let lost: Vec<String> = expected[1..].iter().map(|s| s.data.clone()).collect();
    let before_the_gap: Vec<String> = expected.iter().map(|s| s.data.clone()).collect();
    redis.restart();
    wait_for_status(&server_b.url("/health/ready"), 200).await;
    expected.push(accepted(&b, "ticks", &json!({ "n": 4 })).await);
    proxy.heal();
    ready_within(&server_a, Instant::now(), READY_AGAIN, "A").await;
    expected.push(accepted(&b, "ticks", &json!({ "n": 5 })).await);

    let mut resumed = SseClient::connect_recorded(&url, &[("last-event-id", start.as_str())]).await;
    let transcript = read_without_silent_gap(
        &mut resumed,
        "resumed after the gap",
        &expected,
        Duplicates::Refused,
    )
    .await;
    assert!(
        !transcript.resets().is_empty() && transcript.missing == before_the_gap,
        "events 1 to 3 are gone from Redis for good: the client must be told\n{}",
        transcript.dump()
    );
    // the live stream on A missed them too, and was told so
    let anchored =
        read_without_silent_gap(&mut anchor, "anchor", &expected[1..], Duplicates::Refused).await;
    assert_eq!(anchored.missing, lost, "{}", anchored.dump());
}

/// The gap checker itself fails where it must: fed transcripts by hand, it accepts what a
/// reset covers and refuses a reset that cannot cover what is missing.
#[test]
fn the_gap_checker_refuses_resets_that_do_not_cover_what_is_missing() {
    let sent = |data: &str, id: Option<u64>| Sent {
        data: data.to_owned(),
        id,
    };
    let event = |id: u64, data: &str| Item::Event {
        id,
        event: "created".to_owned(),
        data: data.to_owned(),
    };
    let reset = |id: u64, reason: &str, lost: Option<u64>| Item::Reset {
        id,
        reason: reason.to_owned(),
        lost,
        data: String::new(),
    };
    // Missing payloads, or the panic message of the check.
    let check = |expected: Vec<Sent>, items: Vec<Item>| {
        std::panic::catch_unwind(|| {
            let transcript = Transcript {
                who: "by hand".to_owned(),
                items,
                missing: Vec::new(),
            };
            let first_seen = check_order(&transcript, &expected, Duplicates::Refused);
            check_missing_accounted_for(&transcript, &expected, &first_seen)
        })
        .map_err(|panic| panic.downcast_ref::<String>().cloned().unwrap_or_default())
    };
    let published = vec![
        sent("a", Some(10)),
        sent("b", Some(20)),
        sent("c", Some(30)),
    ];
    // a broker_gap reset at or above the missing event's id covers it
    assert_eq!(
        check(
            published.clone(),
            vec![
                event(10, "a"),
                reset(25, "broker_gap", None),
                event(30, "c")
            ]
        ),
        Ok(vec!["b".to_owned()])
    );
    // one below it does not (the event was published after the reset), nor a retry-buffer
    // reset (it covers only buffered publications), nor a reset outside its neighbours
    let four = vec![
        sent("a", Some(10)),
        sent("b", Some(20)),
        sent("c", Some(30)),
        sent("d", Some(40)),
    ];
    for items in [
        vec![
            event(10, "a"),
            reset(15, "broker_gap", None),
            event(30, "c"),
            event(40, "d"),
        ],
        vec![
            event(10, "a"),
            reset(25, "retry_buffer_overflow", Some(1)),
            event(30, "c"),
            event(40, "d"),
        ],
        vec![
            event(10, "a"),
            event(30, "c"),
            reset(35, "broker_gap", None),
            event(40, "d"),
        ],
    ] {
        let refused = check(four.clone(), items).unwrap_err();
        assert!(refused.contains("SILENT GAP"), "{refused}");
    }
    // buffered publications: covered by a retry-buffer reset, at most `lost` of them
    let buffered = vec![
        sent("a", Some(10)),
        sent("x", None),
        sent("y", None),
        sent("c", Some(30)),
    ];
    assert_eq!(
        check(
            buffered.clone(),
            vec![
                event(10, "a"),
                reset(25, "retry_buffer_expired", Some(2)),
                event(30, "c")
            ]
        ),
        Ok(vec!["x".to_owned(), "y".to_owned()])
    );
    for items in [
        vec![
            event(10, "a"),
            reset(25, "retry_buffer_expired", Some(1)),
            event(30, "c"),
        ],
        vec![
            event(10, "a"),
            reset(25, "broker_gap", None),
            event(30, "c"),
        ],
    ] {
        let refused = check(buffered.clone(), items).unwrap_err();
        assert!(refused.contains("SILENT GAP"), "{refused}");
    }
    // every event after a reset is above its id
    let refused = check(
        published,
        vec![
            event(10, "a"),
            reset(25, "broker_gap", None),
            event(20, "b"),
            event(30, "c"),
        ],
    )
    .unwrap_err();
    assert!(refused.contains("ids must rise"), "{refused}");
}

//! Reconnect storms: many clients of one process resume with their `Last-Event-ID` at once
//! while publishing goes on (a deploy). Each must get every event after its id exactly once, in
//! order, and on Redis and NATS the storm must cost about one history read per position, not one
//! per client (the recent-history cache and coalesced reads, `recent.rs` and `catchup.rs`).
//! The 10,000-subscriber storms, with figures, are `ROWS=storm scripts/bench.sh` (BENCHMARKS.md).

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::future::join_all;
use livepush::sse::RESET;
use livepush::{EventId, Hub, HubBuilder, RouterExt};
use serde_json::json;

use crate::support::handlers::events;
use crate::support::{
    eventually, get_json, wait_for_status, NatsServer, RedisServer, SseClient, TestServer,
};

/// Resuming clients per storm: a few hundred, within the test process's descriptor limit.
const CLIENTS: usize = 200;

/// Distinct positions the clients resume from (client `i` from the `i % POSITIONS`-th).
const POSITIONS: usize = 5;

/// Events published before the storm (the clients' positions are among them).
const BEFORE: usize = 12;

/// Events published while the clients resume.
const DURING: usize = 40;

const TOPIC: &str = "storm";

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .livepush(hub)
        .merge(hub.admin_routes())
}

async fn instance(hub: Hub) -> TestServer {
    let server = TestServer::start(app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    server
}

fn redis_hub(redis: &RedisServer) -> HubBuilder {
    Hub::builder()
        .redis(redis.url())
        .replay(1000, Duration::from_secs(600))
}

/// `INFO commandstats` as command → calls (commands run inside scripts included).
async fn command_calls(redis: &RedisServer) -> std::collections::HashMap<String, u64> {
    let info: String =
        redis::from_redis_value(redis.admin_command(&["INFO", "commandstats"]).await)
            .expect("INFO answers text");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.parse::<u64>().ok())
            };
            let calls = field("calls=")?;
            // `name:failed` only where some failed, so the printed map stays readable
            let failed = field("failed_calls=").filter(|n| *n > 0);
            Some(
                std::iter::once((name.to_owned(), calls))
                    .chain(failed.map(|n| (format!("{name}:failed"), n))),
            )
        })
        .flatten()
        .collect()
}

/// Reads `client` until `last` arrived; the data of every event, in arrival order. Fails on a
/// reset: nothing here lets history fall short.
async fn read_until(client: &mut SseClient, who: &str, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let Some(event) = client.next_within(Duration::from_secs(30)).await else {
            panic!("{who}: {last} did not arrive (or the stream ended); got {got:?}");
        };
        assert_ne!(
            event.event,
            RESET.as_str(),
            "{who}: told to reset ({}) after {got:?}",
            event.data
        );
        let done = event.data == last;
        got.push(event.data);
        if done {
            return got;
        }
    }
}

/// Publishes `BEFORE` events on `TOPIC`: their ids, and their `data` as the stream shows it.
async fn publish_before(hub: &Hub) -> (Vec<EventId>, Vec<String>) {
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for n in 0..BEFORE {
        let payload = json!({ "n": n });
        ids.push(
            hub.publish(TOPIC, "tick", &payload)
                .await
                .unwrap()
                .id()
                .unwrap(),
        );
        data.push(payload.to_string());
    }
    (ids, data)
}

/// Publishes `BEFORE` events, keeps an anchor subscriber (the topic stays watched, as it does
/// in a process that other clients keep using), then resumes `CLIENTS` clients at once from
/// `POSITIONS` positions while `DURING` more events are published, and checks that each got
/// exactly the events after its position, once, in order.
async fn storm(hub: &Hub, server: &TestServer) {
    let url = server.url(&format!("/events?topic={TOPIC}"));
    let mut anchor = SseClient::connect(&url).await;
    let (ids, mut data) = publish_before(hub).await;
    let last_before = data.last().unwrap().clone();
    read_until(&mut anchor, "anchor", &last_before).await;

    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut data = Vec::new();
            for n in BEFORE..BEFORE + DURING {
                let payload = json!({ "n": n });
                hub.publish(TOPIC, "tick", &payload).await.unwrap();
                data.push(payload.to_string());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            data
        })
    };
    let clients = (0..CLIENTS).map(|i| {
        let url = url.clone();
        let from = BEFORE - 1 - POSITIONS + i % POSITIONS;
        let id = ids[from].to_string();
        async move {
            let client = SseClient::connect_with(&url, &[("last-event-id", id.as_str())]).await;
            (i, from, client)
        }
    });
    let mut clients = join_all(clients).await;
    data.extend(publisher.await.unwrap());
    let last = data.last().unwrap().clone();
    let reads = clients.iter_mut().map(|(i, from, client)| {
        let expected = &data[*from + 1..];
        let last = &last;
        async move {
            let who = format!("client {i} (after event {from})");
            let got = read_until(client, &who, last).await;
            assert_eq!(got, expected, "{who}: not every event once, in order");
        }
    });
    join_all(reads).await;
}

#[tokio::test]
async fn a_resume_storm_on_redis_gets_every_event_once_with_one_history_read_per_position() {
    let redis = RedisServer::start();
    let hub = redis_hub(&redis).build().unwrap();
    let server = instance(hub.clone()).await;
    redis.admin_command(&["CONFIG", "RESETSTAT"]).await;
    storm(&hub, &server).await;
    let calls = command_calls(&redis).await;
    let publishes = (BEFORE + DURING) as u64;
    // The presence lease script runs in the background every 150 ms, whatever the test does
    // (loaded before the window, at the hub's first tick); it is the only script that calls
    // ZRANGEBYSCORE, once a run: its runs are not counted here.
    let lease_ticks = calls.get("zrangebyscore").copied().unwrap_or(0);
    let scripts = calls.get("evalsha").copied().unwrap_or(0) - lease_ticks;
    // (an EVALSHA that found its script not loaded yet failed with NOSCRIPT and ran nothing)
    let scripts = scripts - calls.get("evalsha:failed").copied().unwrap_or(0);
    // The history script reads each stream with XRANGE; publishing never does.
    let history_reads = calls.get("xrange").copied().unwrap_or(0);
    eprintln!("{CLIENTS} resumes: {history_reads} history reads, commands {calls:?}");
    assert!(
        history_reads >= 1 && history_reads <= POSITIONS as u64,
        "{CLIENTS} clients resuming from {POSITIONS} positions cost {history_reads} history \
         reads: O(positions), not O(clients) ({calls:?})"
    );
    assert!(
        scripts <= publishes + POSITIONS as u64,
        "{scripts} scripts for {publishes} publishes and {CLIENTS} resumes ({calls:?})"
    );
}

#[tokio::test]
async fn a_resume_storm_in_memory_gets_every_event_once() {
    let hub = Hub::builder()
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let server = instance(hub.clone()).await;
    storm(&hub, &server).await;
}

/// Without a subscriber left between the drop and the storm, the topic is unwatched (its
/// channel unsubscribed, its cached history forgotten) and watched again by the first resuming
/// client: still every event once, in order, and still few reads.
#[tokio::test]
async fn a_resume_storm_on_a_topic_nobody_watched_in_between_gets_every_event_once() {
    let redis = RedisServer::start();
    let hub = redis_hub(&redis).build().unwrap();
    let server = instance(hub.clone()).await;
    let url = server.url(&format!("/events?topic={TOPIC}"));
    let (ids, mut data) = publish_before(&hub).await;
    redis.admin_command(&["CONFIG", "RESETSTAT"]).await;
    let from = BEFORE / 2;
    let id = ids[from].to_string();
    let clients = (0..CLIENTS).map(|_| {
        let (url, id) = (url.clone(), id.clone());
        async move { SseClient::connect_with(&url, &[("last-event-id", id.as_str())]).await }
    });
    let mut clients = join_all(clients).await;
    let last = json!({ "n": "last" });
    hub.publish(TOPIC, "tick", &last).await.unwrap();
    data.push(last.to_string());
    let expected = &data[from + 1..];
    let reads = clients
        .iter_mut()
        .enumerate()
        .map(|(i, client)| async move {
            let who = format!("client {i}");
            let got = read_until(client, &who, expected.last().unwrap()).await;
            assert_eq!(got, expected, "{who}: not every event once, in order");
        });
    join_all(reads).await;
    let calls = command_calls(&redis).await;
    let history_reads = calls.get("xrange").copied().unwrap_or(0);
    eprintln!("{CLIENTS} resumes: {history_reads} history reads, commands {calls:?}");
    assert!(
        history_reads <= 3,
        "{CLIENTS} clients resuming from one position cost {history_reads} history reads \
         ({calls:?})"
    );
}

/// JetStream API requests the server has answered (`/jsz`). A NATS history read starts with one
/// (stream info, then direct gets, which are not API requests); publishing makes none.
async fn jetstream_api_calls(nats: &NatsServer) -> u64 {
    let jsz = get_json(&format!("http://127.0.0.1:{}/jsz", nats.monitor_port())).await;
    jsz["api"]["total"].as_u64().expect("/jsz api.total")
}

#[tokio::test]
async fn a_resume_storm_on_nats_gets_every_event_once_with_one_history_read_per_position() {
    let nats = NatsServer::start();
    let hub = Hub::builder()
        .nats(nats.url())
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let server = instance(hub.clone()).await;
    // the hub's presence registration opens its KV bucket once (API requests of its own)
    eventually("the hub's presence is registered", || async {
        nats.presence_instances().await.len() == 1
    })
    .await;
    let before = jetstream_api_calls(&nats).await;
    storm(&hub, &server).await;
    let calls = jetstream_api_calls(&nats).await - before;
    eprintln!("{CLIENTS} resumes: {calls} JetStream API requests");
    // one more: the anchor's subscription is confirmed with a stream info
    assert!(
        calls >= 1 && calls <= POSITIONS as u64 + 1,
        "{CLIENTS} clients resuming from {POSITIONS} positions cost {calls} JetStream API \
         requests: O(positions), not O(clients)"
    );
}

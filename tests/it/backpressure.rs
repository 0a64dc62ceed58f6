//! Slow consumers, end to end over real HTTP: with replay the stream of a client that fell behind is
//! closed and a reconnect replays exactly what it missed; without replay the client is told how
//! many events it missed and keeps its stream.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, EventId, Hub, RouterExt, SlowConsumerPolicy};
use serde_json::{json, Value};

use crate::support::{eventually, metric, raw_get, RawResponse, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new().route("/events", get(events)).livepush(hub)
}

/// Enough to fill the loopback socket buffers many times over, so the bounded queue overflows.
const EVENTS: usize = 1_000;
const PAD: usize = 16 * 1024;

async fn publish_bulk(hub: &Hub) -> Vec<EventId> {
    let pad = "x".repeat(PAD);
    let mut ids = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        ids.push(
            hub.publish("bulk", "item", &json!({"i": i, "pad": pad}))
                .await
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    ids
}

/// The SSE events of a raw body, as (event, id, data) in order.
fn parse_events(body: &str) -> Vec<(String, Option<u64>, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            (!data.is_empty()).then(|| (event, id, data.join("\n")))
        })
        .collect()
}

async fn stalled_client(server: &TestServer) -> RawResponse {
    let mut stalled = raw_get(server.addr, b"/events?topic=bulk", &[]).await;
    assert_eq!(stalled.status, 200);
    stalled.read_until(b"retry:").await;
    stalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_a_slow_client_is_cut_off_and_replays_exactly_what_it_missed() {
    let hub = Hub::builder()
        .replay(2 * EVENTS, Duration::from_secs(600))
        .queue_capacity(4)
        .build()
        .unwrap();
    assert_eq!(
        hub.config().slow_consumer_policy(),
        SlowConsumerPolicy::Disconnect
    );
    let server = TestServer::start(app(&hub)).await;
    let mut stalled = stalled_client(&server).await;
    let published = publish_bulk(&hub).await;
    assert_eq!(
        metric(
            &hub.metrics_text(),
            "livepush_slow_consumer_disconnects_total"
        ),
        1.0
    );

    // The client reads again: what the sockets held, then the end of the stream.
    stalled.read_to_end().await;
    assert!(
        stalled.body.ends_with(b"0\r\n\r\n"),
        "the server ended the stream"
    );
    let got: Vec<u64> = parse_events(&stalled.body_text())
        .into_iter()
        .filter_map(|(_, id, _)| id)
        .collect();
    assert!(got.len() < EVENTS, "it was cut off before the end");
    assert_eq!(
        got,
        published
            .iter()
            .map(|id| id.get())
            .take(got.len())
            .collect::<Vec<_>>(),
        "in order, no gap"
    );
    eventually("the cut-off connection is released", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 0 }
    })
    .await;

    // Reconnecting with Last-Event-ID replays the rest, exactly once and in order.
    let last = got
        .last()
        .map(|id| id.to_string())
        .unwrap_or_else(|| published[0].get().saturating_sub(1).to_string());
    let mut client = SseClient::connect_with(
        &server.url("/events?topic=bulk"),
        &[("last-event-id", last.as_str())],
    )
    .await;
    let mut replayed = Vec::new();
    while replayed.len() < EVENTS - got.len() {
        let event = client.next().await;
        assert_eq!(
            event.event, "item",
            "no reset or lag notice: the history reaches back"
        );
        replayed.push(event.id.parse::<u64>().unwrap());
    }
    let all: Vec<u64> = got.iter().chain(&replayed).copied().collect();
    assert_eq!(all, published.iter().map(|id| id.get()).collect::<Vec<_>>());
    client
        .assert_quiet(Duration::from_millis(200), "nothing twice")
        .await;
    assert_eq!(
        metric(&hub.metrics_text(), "livepush_events_replayed_total"),
        (EVENTS - got.len()) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_a_slow_client_is_told_how_many_events_it_missed() {
    let hub = Hub::builder().queue_capacity(4).build().unwrap();
    assert_eq!(
        hub.config().slow_consumer_policy(),
        SlowConsumerPolicy::Notify
    );
    let server = TestServer::start(app(&hub)).await;
    let mut stalled = stalled_client(&server).await;
    publish_bulk(&hub).await;
    let dropped = metric(&hub.metrics_text(), "livepush_events_dropped_total");
    assert!(dropped > 0.0);

    // Reading again: the events that fitted, then `livepush.lagged`, and the stream goes on.
    stalled.read_until(b"event: livepush.lagged").await;
    // A notice can go out mid-burst: the queue ran empty for a moment while the stream was
    // writing and later burst events were still arriving, and those fill the queue again. Read
    // on until every queued event has been handed to the socket, so `after` finds room.
    stalled
        .read_while(|| metric(&hub.metrics_text(), "livepush_queued_bytes") > 0.0)
        .await;
    hub.publish("bulk", "after", &json!({"ok": true}))
        .await
        .unwrap();
    stalled.read_until(b"event: after").await;
    let events = parse_events(&stalled.body_text());
    let received = events.iter().filter(|(e, _, _)| e == "item").count();
    let missed: u64 = events
        .iter()
        .filter(|(e, _, _)| e == livepush::sse::LAGGED.as_str())
        .map(|(_, id, data)| {
            assert_eq!(
                *id, None,
                "notices carry no id, so Last-Event-ID stays on real events"
            );
            serde_json::from_str::<Value>(data).unwrap()["missed"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        received as u64 + missed,
        EVENTS as u64,
        "every event either arrived or was counted"
    );
    assert_eq!(missed as f64, dropped);
    assert_eq!(
        metric(
            &hub.metrics_text(),
            "livepush_slow_consumer_disconnects_total"
        ),
        0.0
    );
    assert_eq!(hub.connection_count(), 1, "the stream stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_can_be_chosen_against_the_replay_default() {
    // Notify although replay is on: the stream stays open and the lag is reported.
    let hub = Hub::builder()
        .replay(10, Duration::from_secs(60))
        .slow_consumer(SlowConsumerPolicy::Notify)
        .queue_capacity(4)
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut stalled = stalled_client(&server).await;
    publish_bulk(&hub).await;
    stalled.read_until(b"event: livepush.lagged").await;
    assert_eq!(hub.connection_count(), 1);
    assert_eq!(
        metric(
            &hub.metrics_text(),
            "livepush_slow_consumer_disconnects_total"
        ),
        0.0
    );
}

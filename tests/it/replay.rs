//! Replay over real HTTP: a client that reconnects with `Last-Event-ID` (header or query) gets
//! what it missed, then live events; an id the history cannot vouch for gets `livepush.reset`
//! first. (Replay through every broker is in `conformance.rs`, through faults in
//! `redis_faults.rs` and `nats.rs`, after a slow client's cut-off in `backpressure.rs`, with the
//! cursor of a list in `cursor.rs`.)

use std::time::Duration;

use livepush::Hub;
use serde_json::{json, Value};

use crate::subscribe::start;
use crate::support::SseClient;

#[tokio::test]
async fn replay_sends_missed_events_after_last_event_id_then_live_ones() {
    let hub = Hub::builder()
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let mut first = SseClient::connect(&server.url("/events?topic=r1,r2")).await;
    hub.publish("r1", "e", &json!(0)).await.unwrap();
    let last = first.next().await.id;
    drop(first);
    let mut missed = Vec::new();
    for i in 1..=5 {
        let topic = if i % 2 == 0 { "r1" } else { "r2" };
        missed.push(
            hub.publish(topic, "e", &json!(i))
                .await
                .unwrap()
                .id()
                .unwrap()
                .to_string(),
        );
    }
    let mut again = SseClient::connect_with(
        &server.url("/events?topic=r1,r2"),
        &[("last-event-id", &last)],
    )
    .await;
    for id in &missed {
        assert_eq!(&again.next().await.id, id);
    }
    let live = hub
        .publish("r2", "e", &json!("live"))
        .await
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(again.next().await.id, live.to_string());
    // also through the query parameter, for clients that cannot set headers
    let mut by_query =
        SseClient::connect(&server.url(&format!("/events?topic=r1,r2&lastEventId={}", missed[3])))
            .await;
    assert_eq!(by_query.next().await.id, missed[4]);
    assert_eq!(by_query.next().await.id, live.to_string());
}

#[tokio::test]
async fn an_id_history_cannot_vouch_for_gets_the_reset_event_first() {
    let hub = Hub::builder()
        .replay(2, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let first = hub
        .publish("t", "e", &json!(1))
        .await
        .unwrap()
        .id()
        .unwrap();
    for i in 2..=4 {
        hub.publish("t", "e", &json!(i)).await.unwrap();
    }
    let mut client = SseClient::connect_with(
        &server.url("/events?topic=t"),
        &[("last-event-id", &first.to_string())],
    )
    .await;
    let reset = client.next().await;
    assert_eq!(reset.event, livepush::sse::RESET.as_str());
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "history_unavailable");
    // then what is still retained: the last two
    let three = client.next().await;
    assert_eq!(three.data, "3");
    assert_eq!(client.next().await.data, "4");
    // The reset carries the id just below what follows it: a client that reconnects with it
    // (having seen nothing more) is owed exactly the retained events, without a second reset.
    let three_id: u64 = three.id.parse().unwrap();
    assert_eq!(reset.id, (three_id - 1).to_string(), "the reset's id");
    let mut again = SseClient::connect_with(
        &server.url("/events?topic=t"),
        &[("last-event-id", &reset.id)],
    )
    .await;
    assert_eq!(again.next().await.data, "3", "no second reset");
    assert_eq!(again.next().await.data, "4");
}

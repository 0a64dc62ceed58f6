//! State topics (retained values) over real HTTP, on the in-memory broker, on a real Redis and
//! against the NATS engine: a new subscriber, and a resuming one whose history cannot cover
//! its gap (after `livepush.reset`), gets the current values first, each with its id, before
//! live events; one that resumes with complete history gets no copy; a client never sees an
//! older value after a newer one (a property test over random interleavings of publish,
//! subscribe and reconnect), and one connecting during a burst ends on the last value.

use std::time::Duration;

use eventsource_stream::Event;
use livepush::error::PublishError;
use livepush::sse::RESET;
use livepush::{Hub, HubBuilder, Retain};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::subscribe::start;
use crate::support::{wait_for_status, NatsServer, RedisServer, SseClient, TestServer, WAIT};

/// The `n` of a state event's `{"n": n}`.
fn n_of(event: &Event) -> i64 {
    let data: Value = serde_json::from_str(&event.data).expect("JSON data");
    data["n"].as_i64().expect("an `n`")
}

/// A hub served on a loopback port, once it is ready (a Redis hub: connected).
async fn served(hub: &Hub) -> TestServer {
    let server = start(hub).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    server
}

#[tokio::test]
async fn a_new_subscriber_gets_the_current_value_first_with_its_id_then_live_events() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    hub.publish_retained("tile", "load", &json!({"n": 1}), Retain::latest())
        .await
        .unwrap();
    let current = hub
        .publish_retained("tile", "load", &json!({"n": 2}), Retain::latest())
        .await
        .unwrap()
        .id()
        .unwrap();
    // not state: not kept, not sent to a later subscriber
    hub.publish("tile", "note", &json!("passing"))
        .await
        .unwrap();
    let mut client = SseClient::connect(&server.url("/events?topic=tile,other")).await;
    let first = client.next().await;
    assert_eq!(
        (first.event.as_str(), first.data.as_str(), first.id.as_str()),
        ("load", r#"{"n":2}"#, current.to_string().as_str())
    );
    let live = hub.publish("other", "e", &json!(3)).await.unwrap();
    assert_eq!(client.next().await.id, live.id().unwrap().to_string());
    // a topic without state: nothing first
    let mut plain = SseClient::connect(&server.url("/events?topic=other")).await;
    plain
        .assert_quiet(Duration::from_millis(100), "no state on `other`")
        .await;
}

#[tokio::test]
async fn keys_keep_one_value_each_and_a_ttl_forgets_its_value() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    let publish = |key: &'static str, n: i64, retain: Retain| {
        let hub = hub.clone();
        async move {
            hub.publish_retained("jobs", "progress", &json!({"job": key, "n": n}), retain)
                .await
                .unwrap()
                .id()
                .unwrap()
        }
    };
    publish("a", 1, Retain::key("a")).await;
    let b = publish("b", 1, Retain::key("b")).await;
    let a = publish("a", 2, Retain::key("a")).await;
    publish("c", 1, Retain::key("c").ttl(Duration::from_millis(20))).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut client = SseClient::connect(&server.url("/events?topic=jobs")).await;
    assert_eq!(client.next().await.id, b.to_string());
    let second = client.next().await;
    assert_eq!(second.id, a.to_string());
    assert_eq!(n_of(&second), 2);
    client
        .assert_quiet(Duration::from_millis(100), "the expired value is gone")
        .await;
    // a retain out of bounds is refused before anything is published
    let refused = hub
        .publish_retained("jobs", "progress", &json!({}), Retain::key("a\nb"))
        .await;
    assert!(
        matches!(refused, Err(PublishError::Retain(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_resuming_subscriber_told_to_reset_gets_the_current_value_in_id_order() {
    let hub = Hub::builder()
        .replay(2, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    let before = hub.publish("s", "note", &json!(0)).await.unwrap();
    let state = hub
        .publish_retained("s", "v", &json!({"n": 1}), Retain::latest())
        .await
        .unwrap()
        .id()
        .unwrap();
    let mut notes = Vec::new();
    for i in 1..=3 {
        notes.push(
            hub.publish("s", "note", &json!(i))
                .await
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    // the ring keeps the last two notes: it cannot vouch for `before`
    let mut client = SseClient::connect_with(
        &server.url("/events?topic=s"),
        &[("last-event-id", &before.id().unwrap().to_string())],
    )
    .await;
    let reset = client.next().await;
    assert_eq!(reset.event, RESET.as_str());
    let value = client.next().await;
    assert_eq!((value.event.as_str(), value.id), ("v", state.to_string()));
    assert!(reset.id.parse::<u64>().unwrap() < state.get());
    assert_eq!(client.next().await.id, notes[1].to_string());
    assert_eq!(client.next().await.id, notes[2].to_string());
}

#[tokio::test]
async fn a_subscriber_that_resumes_with_complete_history_gets_no_copy_of_the_value() {
    let hub = Hub::builder()
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&hub).await;
    hub.publish_retained("s", "v", &json!({"n": 1}), Retain::latest())
        .await
        .unwrap();
    let mut first = SseClient::connect(&server.url("/events?topic=s")).await;
    let seen = first.next().await.id;
    drop(first);
    let note = hub.publish("s", "note", &json!(2)).await.unwrap();
    let mut again =
        SseClient::connect_with(&server.url("/events?topic=s"), &[("last-event-id", &seen)]).await;
    assert_eq!(again.next().await.id, note.id().unwrap().to_string());
    again
        .assert_quiet(Duration::from_millis(100), "nothing more")
        .await;
}

/// Two instances built by `builder`: one publishes values (two of them keyed, one with a short
/// TTL), the other serves them to a new subscriber, then a live one.
async fn another_instance_serves_the_current_values(builder: impl Fn() -> HubBuilder) {
    let publisher = builder().build().unwrap();
    let subscriber = builder().build().unwrap();
    let _publisher_server = served(&publisher).await;
    let server = served(&subscriber).await;
    let publish = |n: i64, retain: Retain| {
        let hub = publisher.clone();
        async move {
            hub.publish_retained("room:1", "room_topic", &json!({"n": n}), retain)
                .await
                .unwrap()
                .id()
                .unwrap()
        }
    };
    publish(1, Retain::latest()).await;
    let latest = publish(2, Retain::latest()).await;
    let keyed = publish(3, Retain::key("alice")).await;
    publish(4, Retain::key("gone").ttl(Duration::from_millis(50))).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let current = subscriber
        .retained(&livepush::Topic::new("room:1").unwrap())
        .await
        .unwrap();
    let ids: Vec<_> = current.iter().map(|e| e.id()).collect();
    assert_eq!(
        ids,
        [latest, keyed],
        "the same answer on the other instance"
    );
    let mut client = SseClient::connect(&server.url("/events?topic=room:1")).await;
    assert_eq!(client.next().await.id, latest.to_string());
    assert_eq!(client.next().await.id, keyed.to_string());
    let live = publish(5, Retain::latest()).await;
    let next = client.next().await;
    assert_eq!(next.id, live.to_string());
    assert_eq!(n_of(&next), 5);
}

#[tokio::test]
async fn through_redis_another_instance_serves_the_current_values_and_ttls_expire() {
    let redis = RedisServer::start();
    another_instance_serves_the_current_values(|| {
        Hub::builder()
            .redis(redis.url())
            .replay(100, Duration::from_secs(60))
    })
    .await;
}

#[tokio::test]
async fn through_redis_a_new_subscriber_whose_current_value_cannot_be_read_is_told_to_reset() {
    let redis = RedisServer::start();
    let hub = Hub::builder()
        .redis(redis.url())
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let server = served(&hub).await;
    hub.publish_retained("tile", "load", &json!({"n": 1}), Retain::latest())
        .await
        .unwrap();
    let key = "livepush:state:tile";
    assert_eq!(
        redis.admin_command(&["TYPE", key]).await,
        redis::Value::SimpleString("hash".into()),
        "the state is not where this test breaks it"
    );
    // the read fails (WRONGTYPE) while the value is moved away and a string is in its place
    redis.admin_command(&["RENAME", key, "kept"]).await;
    redis.admin_command(&["SET", key, "broken"]).await;
    let mut blind = SseClient::connect(&server.url("/events?topic=tile")).await;
    let first = blind.next().await;
    assert_eq!(first.event, RESET.as_str(), "{first:?}");
    let data: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data["reason"], "state_unavailable", "{}", first.data);
    assert_eq!(
        first.id, "",
        "a reset of a new stream moves no Last-Event-ID"
    );
    // and the stream goes on with live events
    let live = hub.publish("tile", "note", &json!(2)).await.unwrap();
    assert_eq!(blind.next().await.id, live.id().unwrap().to_string());

    // readable again: the value first, no reset
    redis.admin_command(&["DEL", key]).await;
    redis.admin_command(&["RENAME", "kept", key]).await;
    let mut seeing = SseClient::connect(&server.url("/events?topic=tile")).await;
    let first = seeing.next().await;
    assert_eq!((first.event.as_str(), n_of(&first)), ("load", 1));
}

#[tokio::test]
async fn through_nats_another_instance_serves_the_current_values_and_ttls_expire() {
    let nats = NatsServer::start();
    // a NATS stream's max_age is at least its duplicate window (600 s)
    another_instance_serves_the_current_values(|| {
        Hub::builder()
            .nats(nats.url())
            .replay(100, Duration::from_secs(600))
    })
    .await;
}

/// Publishes `{"n": 1..=count}` as state on `burst` through `publisher` while clients of
/// `server` connect, then checks that each one saw rising values and ends on `count`.
async fn burst(publisher: Hub, server: &TestServer, count: i64) {
    let publishing = tokio::spawn(async move {
        for n in 1..=count {
            publisher
                .publish_retained("burst", "v", &json!({"n": n}), Retain::latest())
                .await
                .unwrap();
            if n % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut clients = Vec::new();
    while !publishing.is_finished() && clients.len() < 16 {
        clients.push(SseClient::connect(&server.url("/events?topic=burst")).await);
    }
    publishing.await.unwrap();
    clients.push(SseClient::connect(&server.url("/events?topic=burst")).await);
    for (i, client) in clients.iter_mut().enumerate() {
        let mut last = 0;
        let ended = tokio::time::timeout(WAIT, async {
            while last < count {
                let n = n_of(&client.next().await);
                assert!(n > last, "client {i} saw {n} after {last}");
                last = n;
            }
        })
        .await;
        assert!(ended.is_ok(), "client {i} stopped at {last} of {count}");
    }
}

#[tokio::test]
async fn a_subscriber_connecting_during_a_burst_of_state_publishes_ends_on_the_last_value() {
    let hub = Hub::builder().build().unwrap();
    let server = start(&hub).await;
    burst(hub.clone(), &server, 500).await;
}

#[tokio::test]
async fn through_redis_a_subscriber_connecting_during_a_burst_ends_on_the_last_value() {
    let redis = RedisServer::start();
    let publisher = Hub::builder().redis(redis.url()).build().unwrap();
    let subscriber = Hub::builder().redis(redis.url()).build().unwrap();
    let _publisher_server = served(&publisher).await;
    let server = served(&subscriber).await;
    burst(publisher, &server, 300).await;
}

#[tokio::test]
async fn through_nats_a_subscriber_connecting_during_a_burst_ends_on_the_last_value() {
    let nats = NatsServer::start();
    let publisher = Hub::builder().nats(nats.url()).build().unwrap();
    let subscriber = Hub::builder().nats(nats.url()).build().unwrap();
    let _publisher_server = served(&publisher).await;
    let server = served(&subscriber).await;
    burst(publisher, &server, 300).await;
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// A new state value (`n` rises by one).
    State,
    /// An event of another topic of the same streams (ids move on, history fills up).
    Other,
    /// A note on the state topic that is not state (the topic's history fills up).
    Note,
    /// A new client.
    Subscribe,
    /// Client `i` (modulo the clients) drops its stream and reconnects with the last id it
    /// read, as `EventSource` does.
    Reconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::State),
        1 => Just(Op::Other),
        1 => Just(Op::Note),
        2 => Just(Op::Subscribe),
        2 => (0usize..8).prop_map(Op::Reconnect),
    ]
}

/// A client of the property test and what it has read.
struct Client {
    sse: SseClient,
    last_id: Option<String>,
    /// The newest value read (0: none).
    last_n: i64,
    /// A reset was read since the last value: the value may come again.
    reset: bool,
}

impl Client {
    async fn connect(server: &TestServer, last_id: Option<String>) -> SseClient {
        let url = server.url("/events?topic=s,o");
        match &last_id {
            Some(id) => SseClient::connect_with(&url, &[("last-event-id", id)]).await,
            None => SseClient::connect(&url).await,
        }
    }

    /// Reads one event, checking the rule: a value never older than one already read, and
    /// newer unless a reset came in between.
    fn read(&mut self, event: Event) {
        if !event.id.is_empty() {
            self.last_id = Some(event.id.clone());
        }
        if event.event == RESET.as_str() {
            self.reset = true;
        } else if event.event == "v" {
            let n = n_of(&event);
            let rule = if self.reset {
                n >= self.last_n
            } else {
                n > self.last_n
            };
            assert!(
                rule,
                "value {n} after {} (reset since: {})",
                self.last_n, self.reset
            );
            self.last_n = n;
            self.reset = false;
        }
    }

    /// Reads what has arrived (until the stream is quiet for a moment).
    async fn read_arrived(&mut self) {
        while let Some(event) = self.sse.next_within(Duration::from_millis(15)).await {
            self.read(event);
        }
    }
}

/// Runs `ops` against `publisher` (events) and `server` (streams) and checks every client.
async fn interleave(publisher: &Hub, server: &TestServer, ops: &[Op]) {
    let mut clients: Vec<Client> = Vec::new();
    let mut n = 0;
    for op in ops {
        match op {
            Op::State => {
                n += 1;
                publisher
                    .publish_retained("s", "v", &json!({"n": n}), Retain::latest())
                    .await
                    .unwrap();
            }
            Op::Other => {
                publisher.publish("o", "o", &json!(0)).await.unwrap();
            }
            Op::Note => {
                publisher.publish("s", "note", &json!(0)).await.unwrap();
            }
            Op::Subscribe => clients.push(Client {
                sse: Client::connect(server, None).await,
                last_id: None,
                last_n: 0,
                reset: false,
            }),
            Op::Reconnect(i) if !clients.is_empty() => {
                let i = i % clients.len();
                let client = &mut clients[i];
                client.read_arrived().await;
                client.sse = Client::connect(server, client.last_id.clone()).await;
            }
            Op::Reconnect(_) => {}
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let ended = tokio::time::timeout(WAIT, async {
            while client.last_n < n {
                let event = client.sse.next().await;
                client.read(event);
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "client {i} ended on {} instead of the last value {n}",
            client.last_n
        );
    }
}

/// The property test on hubs made by `hubs` (the publisher and the one serving streams, maybe
/// the same), `cases` random interleavings of up to 24 steps.
fn property(cases: u32, hubs: impl Fn(u32) -> (Hub, Hub)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&proptest::collection::vec(op(), 1..24), |ops| {
            case.set(case.get() + 1);
            runtime.block_on(async {
                let (publisher, subscriber) = hubs(case.get());
                let server = served(&subscriber).await;
                let _publisher_server = served(&publisher).await;
                interleave(&publisher, &server, &ops).await;
            });
            Ok(())
        })
        .unwrap();
}

/// With a history of 3 events per topic, reconnects take both paths: complete history, and a
/// reset followed by the current value.
fn small_history(builder: HubBuilder) -> HubBuilder {
    builder.replay(3, Duration::from_secs(60))
}

#[test]
fn in_memory_a_client_never_sees_an_older_value_after_a_newer_one_and_ends_on_the_last() {
    property(32, |_| {
        let hub = small_history(Hub::builder()).build().unwrap();
        (hub.clone(), hub)
    });
}

#[test]
fn through_redis_a_client_never_sees_an_older_value_after_a_newer_one_and_ends_on_the_last() {
    let redis = RedisServer::start();
    property(12, |case| {
        // one key space per case, on one server
        let builder = || {
            small_history(Hub::builder())
                .redis(redis.url())
                .redis_prefix(format!("state-{case}:"))
        };
        (builder().build().unwrap(), builder().build().unwrap())
    });
}

#[test]
fn through_nats_a_client_never_sees_an_older_value_after_a_newer_one_and_ends_on_the_last() {
    let nats = NatsServer::start();
    property(12, |case| {
        // one stream and one state bucket per case, on one server
        let url = format!("{}?prefix=state{case}", nats.url());
        // 3 events per topic as `small_history`; max_age at least the duplicate window (600 s)
        let builder = || {
            Hub::builder()
                .nats(url.clone())
                .replay(3, Duration::from_secs(600))
        };
        (builder().build().unwrap(), builder().build().unwrap())
    });
}

/// A retained event whose value the publisher has not yet written to the state bucket (it is
/// between the publish acknowledgement and the bucket write, or died there): a new subscriber
/// still starts on it, because the topic's last stored message is read with the bucket.
#[tokio::test]
async fn through_nats_a_value_not_yet_in_the_bucket_is_still_sent_first() {
    let nats = NatsServer::start();
    let hub = Hub::builder().nats(nats.url()).build().unwrap();
    let server = served(&hub).await;
    let kept = hub
        .publish_retained("tile", "v", &json!({"n": 1}), Retain::latest())
        .await
        .unwrap()
        .id()
        .unwrap();
    // what the engine publishes for a retained value, without the bucket write that follows
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Livepush-Retain", "k");
    headers.insert("Livepush-Retain-Until", "0");
    let ack = js
        .publish_with_headers("livepush.t.tile", headers, "v\n\n{\"n\":2}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.sequence > kept.get());
    let mut client = SseClient::connect(&server.url("/events?topic=tile")).await;
    let first = client.next().await;
    assert_eq!(first.id, ack.sequence.to_string());
    assert_eq!(n_of(&first), 2);
    client
        .assert_quiet(Duration::from_millis(100), "only the newest value")
        .await;
}

//! The NATS JetStream broker with real `nats-server -js` processes: a purged stream, a server
//! restarted (idle and while publishing, with and without its store), the retry buffer while
//! the server is down, a stream configured otherwise, a slow consumer, a 3-server JetStream
//! cluster losing its stream leader while publishing. (Fan-out, exact replay across topics,
//! ordering, resets and per-key caps are the broker conformance suite's, `conformance.rs`.)
//!
//! Subscribers through faults are checked with the no-silent-gap rule (`support/gaps.rs`).

use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use livepush::sse::RESET;
use livepush::{EventId, Hub, HubBuilder, RouterExt};
use serde_json::{json, Value};

use crate::support::gaps::{accepted, published, read_without_silent_gap, Duplicates, Sent};
use crate::support::handlers::{create, events};
use crate::support::{
    capture_logs, wait_for_status, NatsCluster, NatsServer, SseClient, TestServer,
};

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/comments", post(create))
        .livepush(hub)
}

fn builder(nats: &NatsServer) -> HubBuilder {
    Hub::builder()
        .nats(nats.url())
        .replay(1000, Duration::from_secs(600))
}

/// A hub served on a loopback port, once it is ready.
async fn instance(hub: Hub) -> (Hub, TestServer) {
    let server = TestServer::start(app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    (hub, server)
}

fn id_of(event: &eventsource_stream::Event) -> u64 {
    event.id.parse().expect("decimal event id")
}

/// JetStream refuses a duplicate window longer than the stream's age limit: a replay TTL under
/// the outbox's 10-minute dedupe window must still give a stream (and a ready hub) that
/// delivers.
#[tokio::test]
async fn a_replay_ttl_shorter_than_the_dedupe_window_still_gives_a_ready_hub() {
    let nats = NatsServer::start();
    let hub = Hub::builder()
        .nats(nats.url())
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let (hub, server) = instance(hub).await;
    let mut client = SseClient::connect(&server.url("/events?topic=short")).await;
    let id = published_now(&hub, "short", "created", &json!({"n": 1})).await;
    let event = client.next().await;
    assert_eq!((event.event.as_str(), id_of(&event)), ("created", id.get()));
}

#[tokio::test]
async fn a_purged_stream_tells_a_resuming_client_to_reset() {
    let nats = NatsServer::start();
    let (a, server) = instance(builder(&nats).build().unwrap()).await;
    let first = published_now(&a, "p", "e", &json!({"n": 1})).await;
    published_now(&a, "p", "e", &json!({"n": 2})).await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream("LIVEPUSH")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    let after = published_now(&a, "p", "e", &json!({"n": 3})).await;

    let mut resumed = SseClient::connect_with(
        &server.url("/events?topic=p"),
        &[("last-event-id", &first.to_string())],
    )
    .await;
    let reset = resumed.next().await;
    assert_eq!(
        reset.event,
        RESET.as_str(),
        "event 2 is gone: a reset, not a silent gap"
    );
    let next = resumed.next().await;
    assert_eq!(
        id_of(&next),
        after.get(),
        "then what the stream still holds"
    );
}

#[tokio::test]
async fn delivery_goes_on_after_the_server_restarts_with_its_store_while_idle() {
    let mut nats = NatsServer::start();
    let (a, server_a) = instance(builder(&nats).build().unwrap()).await;
    let (b, server_b) = instance(builder(&nats).build().unwrap()).await;
    let mut client = SseClient::connect(&server_a.url("/events?topic=r")).await;
    let before = published_now(&b, "r", "e", &json!({"n": 1})).await;
    assert_eq!(id_of(&client.next().await), before.get());

    nats.kill();
    nats.restart(false);
    wait_for_status(&server_a.url("/health/ready"), 200).await;
    wait_for_status(&server_b.url("/health/ready"), 200).await;

    let after = published_now(&b, "r", "e", &json!({"n": 2})).await;
    assert!(after > before, "the file store kept the sequence");
    let next = client.next().await;
    assert_eq!(
        id_of(&next),
        after.get(),
        "delivered, without a stall or a reset"
    );
    drop(a);
}

#[tokio::test]
async fn publications_made_while_the_server_is_down_are_published_when_it_is_back() {
    let mut nats = NatsServer::start();
    let hub = Hub::builder()
        .publish_timeout(Duration::from_secs(3600))
        .nats(nats.url())
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let (a, server) = instance(hub).await;
    let mut client = SseClient::connect(&server.url("/events?topic=q")).await;

    nats.kill();
    wait_for_status(&server.url("/health/ready"), 503).await;
    let buffered = a.publish("q", "e", &json!({"n": 1})).await;
    assert!(
        matches!(buffered, Ok(livepush::Published::Buffered)),
        "{buffered:?}"
    );
    nats.restart(false);

    let event = client.next().await;
    assert_eq!(event.data, r#"{"n":1}"#, "the buffered publication arrived");
}

#[tokio::test]
async fn a_stream_configured_otherwise_is_refused_not_changed() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "LIVEPUSH".to_owned(),
        subjects: vec!["livepush.t.>".to_owned()],
        max_messages_per_subject: 5,
        ..Default::default()
    })
    .await
    .unwrap();

    let hub = builder(&nats).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let ready = crate::support::http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    let mut stream = js.get_stream("LIVEPUSH").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(
        config.max_messages_per_subject, 5,
        "the operator's stream is unchanged"
    );
    crate::support::eventually("readiness names the mismatch", || async {
        let ready = crate::support::http()
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap();
        ready.text().await.unwrap().contains("LIVEPUSH_REPLAY")
    })
    .await;
    let _ = text;
}

/// What the live side's gap detection relies on: the stream republishes every stored event
/// with its sequence and the previous sequence *of its subject* (not of the stream).
#[tokio::test]
async fn the_republished_events_carry_their_sequence_and_their_subjects_previous_one() {
    use futures_util::StreamExt;
    let nats = NatsServer::start();
    let (a, _server) = instance(builder(&nats).build().unwrap()).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut live = client.subscribe("livepush.live.>").await.unwrap();
    // async-nats's flush only writes: a request answered on the same connection is what proves
    // the server took the SUB before it (the broker confirms its subscriptions the same way)
    let js = async_nats::jetstream::new(client.clone());
    js.get_stream("LIVEPUSH").await.unwrap();
    let x1 = published_now(&a, "x", "e", &json!({})).await.get();
    let y1 = published_now(&a, "y", "e", &json!({})).await.get();
    let x2 = published_now(&a, "x.z", "e", &json!({})).await.get();
    let x3 = published_now(&a, "x", "e", &json!({})).await.get();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let message = tokio::time::timeout(crate::support::WAIT, live.next())
            .await
            .unwrap_or_else(|_| panic!("republished events: got only {seen:?}"))
            .unwrap();
        let headers = message.headers.unwrap();
        let header = |name: async_nats::header::HeaderName| {
            headers.get(name.clone()).map_or_else(
                || panic!("{name} in {headers:?}"),
                |v| v.as_str().parse::<u64>().unwrap(),
            )
        };
        seen.push((
            message.subject.to_string(),
            header(async_nats::header::NATS_SEQUENCE),
            header(async_nats::header::NATS_LAST_SEQUENCE),
        ));
    }
    assert_eq!(
        seen,
        [
            ("livepush.live.x".to_owned(), x1, 0),
            ("livepush.live.y".to_owned(), y1, 0),
            ("livepush.live.x%2Ez".to_owned(), x2, 0),
            ("livepush.live.x".to_owned(), x3, x1),
        ]
    );
}

#[tokio::test]
async fn a_server_restarted_without_its_store_resets_every_stream_before_the_next_event() {
    let mut nats = NatsServer::start();
    let (a, server) = instance(builder(&nats).build().unwrap()).await;
    let mut client = SseClient::connect(&server.url("/events?topic=m")).await;
    for n in 0..3 {
        published_now(&a, "m", "e", &json!({"n": n})).await;
        client.next().await;
    }

    nats.kill();
    nats.restart(true);
    wait_for_status(&server.url("/health/ready"), 200).await;
    let reset = client.next().await;
    assert_eq!(
        reset.event,
        RESET.as_str(),
        "the sequence started over: a reset"
    );
    let after = published_now(&a, "m", "e", &json!({"n": 3})).await;
    let next = client.next().await;
    assert_eq!(next.data, r#"{"n":3}"#, "then delivery goes on");
    assert_eq!(id_of(&next), after.get());
    assert!(id_of(&reset) < after.get());
}

#[tokio::test]
async fn one_nats_subscription_per_topic_per_process_whatever_the_number_of_clients() {
    let nats = NatsServer::start();
    let (_a, server) = instance(builder(&nats).build().unwrap()).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(SseClient::connect(&server.url("/events?topic=s1,s2")).await);
    }
    let subs = || async {
        let varz: serde_json::Value =
            crate::support::get_json(&format!("http://127.0.0.1:{}/subsz", nats.monitor_port()))
                .await;
        varz["num_subscriptions"].as_u64().unwrap()
    };
    let with_clients = subs().await;
    drop(clients);
    crate::support::eventually("the two live subscriptions are dropped", || async {
        subs().await + 2 == with_clients
    })
    .await;
}

/// What `publish_once` relies on: within the stream's duplicate window a repeated
/// `Nats-Msg-Id` is not stored again, and its ack carries the sequence of the first one.
#[tokio::test]
async fn a_repeated_message_id_is_stored_once_and_acked_with_the_first_sequence() {
    let nats = NatsServer::start();
    let (_a, _server) = instance(builder(&nats).build().unwrap()).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let publish = |key: &'static str| {
        let js = js.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, key);
            js.publish_with_headers("livepush.t.o", headers, "created\n\n{}".into())
                .await
                .unwrap()
                .await
                .unwrap()
        }
    };
    let first = publish("outbox:1:1").await;
    let other = publish("outbox:1:2").await;
    let again = publish("outbox:1:1").await;
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    assert!(!other.duplicate);
    let mut stream = js.get_stream("LIVEPUSH").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn an_instance_cut_off_from_nats_delivers_what_it_missed_in_order_when_it_is_back() {
    let nats = NatsServer::start();
    let proxy = crate::support::TcpProxy::start(nats.port);
    let url = format!("nats://127.0.0.1:{}", proxy.port);
    let cut_off = Hub::builder()
        .nats(url)
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let (_a, server_a) = instance(cut_off).await;
    let (b, _server_b) = instance(builder(&nats).build().unwrap()).await;
    let mut client = SseClient::connect(&server_a.url("/events?topic=c")).await;
    let first = published_now(&b, "c", "e", &json!({"n": 0})).await;
    assert_eq!(id_of(&client.next().await), first.get());

    proxy.cut();
    wait_for_status(&server_a.url("/health/ready"), 503).await;
    let mut missed = Vec::new();
    for n in 1..=5 {
        missed.push(published_now(&b, "c", "e", &json!({"n": n})).await.get());
        published_now(&b, "other", "e", &json!({})).await;
    }
    proxy.heal();
    wait_for_status(&server_a.url("/health/ready"), 200).await;
    let later = published_now(&b, "c", "e", &json!({"n": 6})).await;
    missed.push(later.get());

    let mut got = Vec::new();
    for _ in 0..missed.len() {
        let event = client.next().await;
        assert_ne!(
            event.event,
            RESET.as_str(),
            "the stream holds them all: no reset"
        );
        got.push(id_of(&event));
    }
    assert_eq!(
        got, missed,
        "every missed event, in order, then the live one"
    );
}

#[tokio::test]
async fn a_stream_opened_before_nats_was_ever_reached_is_reset_when_it_is() {
    let mut nats = NatsServer::start();
    nats.kill();
    let hub = builder(&nats).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    // the hub opens the stream without a confirmed subscription (fail-open)
    let mut client = SseClient::connect(&server.url("/events?topic=early")).await;
    // the current values could not be read either: the client is told at once
    let unread = client.next().await;
    assert_eq!(unread.event, RESET.as_str(), "{unread:?}");
    assert!(unread.data.contains("state_unavailable"), "{}", unread.data);
    nats.restart(false);
    wait_for_status(&server.url("/health/ready"), 200).await;
    let reset = client.next().await;
    assert_eq!(
        reset.event,
        RESET.as_str(),
        "what came before the subscription is unknown"
    );
    let id = published_now(&hub, "early", "e", &json!({})).await;
    assert_eq!(id_of(&client.next().await), id.get(), "then live delivery");
}

/// Publishes on `hub`, which must take it now (not buffer it), and answers its id.
async fn published_now(hub: &Hub, topic: &str, event: &str, data: &Value) -> EventId {
    hub.publish(topic, event, data)
        .await
        .unwrap()
        .id()
        .expect("published now")
}

/// Publishes `count` events on `topic` through `hub`, `pause` apart, each taken or buffered.
fn publisher(
    hub: Hub,
    topic: &'static str,
    count: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<Vec<Sent>> {
    tokio::spawn(async move {
        let mut sent = Vec::with_capacity(count);
        for n in 0..count {
            sent.push(accepted(&hub, topic, &json!({ "n": n })).await);
            tokio::time::sleep(pause).await;
        }
        sent
    })
}

/// A hub whose publications wait in the retry buffer for as long as a test runs.
fn patient(url: String) -> Hub {
    Hub::builder()
        .publish_timeout(Duration::from_secs(3600))
        .nats(url)
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_server_restarted_with_its_store_while_publishing_delivers_every_event() {
    let mut nats = NatsServer::start();
    let (a, _server_a) = instance(patient(nats.url())).await;
    let (_b, server_b) = instance(builder(&nats).build().unwrap()).await;
    let mut client = SseClient::connect_recorded(&server_b.url("/events?topic=w"), &[]).await;
    let publishing = publisher(a, "w", 150, Duration::from_millis(10));

    tokio::time::sleep(Duration::from_millis(400)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart(false);
    let expected = publishing.await.unwrap();
    // a publish cut off before its ack is published again from the retry buffer: at least once
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Allowed)
        .await
        .assert_complete();
}

#[tokio::test]
async fn a_server_restarted_without_its_store_while_publishing_never_leaves_a_silent_gap() {
    let mut nats = NatsServer::start();
    let (a, _server_a) = instance(patient(nats.url())).await;
    let (_b, server_b) = instance(builder(&nats).build().unwrap()).await;
    let mut client = SseClient::connect_recorded(&server_b.url("/events?topic=w"), &[]).await;
    let publishing = publisher(a, "w", 150, Duration::from_millis(10));

    tokio::time::sleep(Duration::from_millis(400)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart(true);
    let expected = publishing.await.unwrap();
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Allowed)
        .await
        .assert_nothing_missing(&["broker_gap"]);
}

/// async-nats drops live messages of a subscription whose buffer is full (`pending=1`) and
/// reports a slow consumer: the topic is caught up from the stream, nothing is lost silently.
#[tokio::test]
async fn a_slow_consumer_on_the_nats_connection_is_caught_up_not_dropped_silently() {
    let (logs, _guard) = capture_logs("livepush=warn");
    let nats = NatsServer::start();
    let (a, _server_a) = instance(builder(&nats).build().unwrap()).await;
    let slow = Hub::builder()
        .nats(format!("{}?pending=1", nats.url()))
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let (_b, server_b) = instance(slow).await;
    let mut client = SseClient::connect_recorded(&server_b.url("/events?topic=burst"), &[]).await;

    const BURST: usize = 100;
    // async-nats reports the drop (its event may itself be dropped when its queue is full; the
    // next live event's subject sequence then shows the gap)
    let dropped = |text: &str| text.contains("slow consumer") || text.contains("were missed");
    let mut expected: Vec<Sent> = Vec::new();
    for round in 0..10 {
        let burst = (0..BURST).map(|n| {
            let a = a.clone();
            async move {
                let data = json!({ "round": round, "n": n });
                published(&a, "burst", &data, "a burst").await
            }
        });
        expected.extend(futures_util::future::join_all(burst).await);
        if dropped(&logs.text()) {
            break;
        }
    }
    assert!(
        dropped(&logs.text()),
        "1,000 events in bursts of {BURST} never overflowed a buffer of one message: this test \
         proves nothing\n{}",
        logs.text()
    );
    // concurrent publishers: the stream's order is the ids'
    expected.sort_by_key(|sent| sent.id);
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Refused)
        .await
        .assert_complete();
}

/// A stream with 3 replicas on a 3-server cluster: its leader is killed while an instance
/// publishes; a subscriber on another instance gets every event or a reset before the next,
/// and delivery resumes under the new leader.
#[tokio::test]
async fn a_jetstream_cluster_losing_its_stream_leader_while_publishing_leaves_no_silent_gap() {
    let mut cluster = NatsCluster::start().await;
    let url = cluster.url("replicas=3");
    let (a, _server_a) = instance(patient(url.clone())).await;
    let (_b, server_b) = instance(
        Hub::builder()
            .nats(url)
            .replay(1000, Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let mut client = SseClient::connect_recorded(&server_b.url("/events?topic=w"), &[]).await;
    let publishing = publisher(a.clone(), "w", 150, Duration::from_millis(10));

    tokio::time::sleep(Duration::from_millis(400)).await;
    let servers: Vec<async_nats::ServerAddr> = cluster
        .servers
        .iter()
        .map(|s| s.url().parse().unwrap())
        .collect();
    let admin = async_nats::connect(servers).await.unwrap();
    let js = async_nats::jetstream::new(admin);
    let mut stream = js.get_stream("LIVEPUSH").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    cluster.server_named(&leader).kill();
    let mut expected = publishing.await.unwrap();
    expected.push(accepted(&a, "w", &json!({ "n": "after" })).await);
    read_without_silent_gap(&mut client, "subscriber", &expected, Duplicates::Allowed)
        .await
        .assert_nothing_missing(&["broker_gap"]);
    let info = stream.info().await.unwrap();
    let new_leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default();
    assert!(
        !new_leader.is_empty() && new_leader != leader,
        "a new leader ({new_leader:?}) took over from {leader}"
    );
}

/// A connection slot of an instance that stopped refreshing it (crashed) is free one lease
/// later, while the slot of a live connection is refreshed and kept.
#[tokio::test]
async fn slots_of_a_crashed_instance_expire_while_live_ones_are_kept() {
    use livepush::broker::nats::NatsBroker;
    let nats = NatsServer::start();
    let lease = Duration::from_millis(900);
    let broker = NatsBroker::new(&nats.url(), 1000, Duration::from_secs(600))
        .unwrap()
        .slot_lease(lease);
    let hub = Hub::builder()
        .broker(broker)
        .max_connections_per_key(2)
        .build()
        .unwrap();
    let server = TestServer::start(crate::conformance::app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    let url = server.url("/me/events");
    let user = [("x-user", "crash")];
    let _live = SseClient::connect_with(&url, &user).await;

    // a crashed instance left one slot behind: a member it will never refresh nor remove
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = js.get_key_value("LIVEPUSH_slots").await.unwrap();
    let entry = kv
        .entry("kcrash")
        .await
        .unwrap()
        .expect("the live slot's entry");
    let mut members: serde_json::Map<String, Value> = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(members.len(), 1, "the live connection's slot: {members:?}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let crashed_until = now_ms + lease.as_millis() as u64;
    members.insert("crashed-instance:1".to_owned(), json!(crashed_until));
    kv.update(
        "kcrash",
        serde_json::to_vec(&members).unwrap().into(),
        entry.revision,
    )
    .await
    .unwrap();
    assert_eq!(SseClient::request(&url, &user).await.status(), 429);

    // past the crashed member's lease (and the live one's first lease): the crashed slot is
    // free, the live one was refreshed
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let _next = SseClient::connect_with(&url, &user).await;
    assert_eq!(
        SseClient::request(&url, &user).await.status(),
        429,
        "the live slot was refreshed"
    );
    let members: serde_json::Map<String, Value> =
        serde_json::from_slice(&kv.get("kcrash").await.unwrap().unwrap()).unwrap();
    assert!(
        !members.contains_key("crashed-instance:1") && members.len() == 2,
        "{members:?}"
    );
}

/// A stream with memory storage (`?storage=memory`) does not survive a restart of its server
/// even when the server keeps its store directory: the stream is created anew, every stream
/// gets a reset before the next event, and delivery goes on.
#[tokio::test]
async fn a_memory_stream_lost_in_a_restart_resets_every_stream_before_the_next_event() {
    let mut nats = NatsServer::start();
    let url = format!("{}?storage=memory", nats.url());
    let hub = Hub::builder()
        .nats(url)
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    let (a, server) = instance(hub).await;
    let mut client = SseClient::connect(&server.url("/events?topic=mem")).await;
    for n in 0..3 {
        published_now(&a, "mem", "e", &json!({ "n": n })).await;
        client.next().await;
    }

    nats.kill();
    nats.restart(false);
    wait_for_status(&server.url("/health/ready"), 200).await;
    let reset = client.next().await;
    assert_eq!(
        reset.event,
        RESET.as_str(),
        "the memory stream started over: a reset"
    );
    let after = published_now(&a, "mem", "e", &json!({ "n": 3 })).await;
    let next = client.next().await;
    assert_eq!(next.data, r#"{"n":3}"#, "then delivery goes on");
    assert_eq!(id_of(&next), after.get());
}

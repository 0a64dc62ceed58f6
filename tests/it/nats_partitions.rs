//! The NATS broker with `?partitions=4`, on a real `nats-server -js`: four streams
//! (`LIVEPUSH_p0`…`LIVEPUSH_p3`), each its own sequence, and connections whose `id:` is a
//! position in each partition of their topics (as on Redis Cluster).
//!
//! The broker conformance scenarios whose connections lie in one partition (fan-out, gap → reset,
//! per-key caps) run as they are; those spanning partitions are written here with the events
//! named by their data, since a spanning connection's ids are positions, not numbers: exact
//! replay across 24 topics through the other instance, a purge of one partition's stream,
//! which resets the resuming connections of its topics only, and one partition's stream lost in a
//! server restart, which resets the live connections of its topics only. Plus: each partition's stream is checked on
//! its own, and the default (one partition) keeps today's stream and plain ids.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use livepush::sse::RESET;
use livepush::{Hub, HubBuilder};
use serde_json::{json, Value};

use crate::conformance::{self, instances, Deployment, Settings};
use crate::support::{wait_for_status, NatsServer, SseClient, TestServer};

/// One NATS server, hubs with `?partitions=4`.
struct Partitioned(NatsServer);

impl Deployment for Partitioned {
    fn builder(&self) -> HubBuilder {
        Hub::builder().nats(format!("{}?partitions=4", self.0.url()))
    }
}

#[tokio::test]
async fn fan_out() {
    conformance::fan_out(&Partitioned(NatsServer::start())).await;
}

#[tokio::test]
async fn a_gap_becomes_a_reset() {
    conformance::a_gap_becomes_a_reset(&Partitioned(NatsServer::start())).await;
}

#[tokio::test]
async fn the_per_key_cap_is_shared_and_given_back() {
    conformance::the_per_key_cap_is_shared_and_given_back(&Partitioned(NatsServer::start())).await;
}

/// What a client saw: an event (its topic and `n`, from its data) or a reset.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event { topic: String, n: u64 },
    Reset,
}

fn seen(event: &eventsource_stream::Event) -> Seen {
    if event.event == RESET.as_str() {
        return Seen::Reset;
    }
    let data: Value = serde_json::from_str(&event.data).unwrap();
    Seen::Event {
        topic: data["topic"].as_str().unwrap().to_owned(),
        n: data["n"].as_u64().unwrap(),
    }
}

/// Everything `client` sends until it has been quiet for 500 ms.
async fn drain(client: &mut SseClient) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(event) = client.next_within(Duration::from_millis(500)).await {
        out.push(seen(&event));
    }
    out
}

async fn publish(hub: &Hub, topic: &str, n: u64) {
    let published = hub
        .publish(topic, "e", &json!({"topic": topic, "n": n}))
        .await
        .unwrap();
    assert!(published.id().is_some(), "published now, not buffered");
}

/// Per partition stream `LIVEPUSH_p<p>`: the topics of `topics` it stores.
async fn placement(nats: &NatsServer, topics: &[String]) -> BTreeMap<u32, Vec<String>> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for p in 0..4 {
        let stream = js.get_stream(format!("LIVEPUSH_p{p}")).await.unwrap();
        for topic in topics {
            let subject = format!("livepush.p{p}.t.{}", topic.replace('.', "%2E"));
            if stream.direct_get_last_for_subject(subject).await.is_ok() {
                out.entry(p).or_default().push(topic.clone());
            }
        }
    }
    out
}

/// A client of 24 topics spread over the 4 partitions reconnects through the other instance (by
/// header) and through the same one (by query) with the position it last saw: it gets exactly
/// the events of its topics it missed, each topic in order, and nothing more.
#[tokio::test]
async fn exact_replay_across_24_topics_spanning_partitions_through_another_instance() {
    let deployment = Partitioned(NatsServer::start());
    let mut instances = instances(&deployment, 2, Settings::default()).await;
    let (_b, server_b) = instances.pop().unwrap();
    let (a, server_a) = instances.pop().unwrap();
    let topics: Vec<String> = (0..24).map(|n| format!("t.{n}")).collect();
    let query = format!("/events?topic={}", topics.join(","));
    let mut client = SseClient::connect(&server_a.url(&query)).await;
    publish(&a, "t.0", 0).await;
    let last = client.next().await;
    assert_eq!(
        seen(&last),
        Seen::Event {
            topic: "t.0".into(),
            n: 0
        }
    );
    assert!(
        last.id.parse::<u64>().is_err(),
        "a connection spanning partitions has a position, not a plain id: {}",
        last.id
    );
    drop(client);

    let mut missed: HashMap<String, Vec<u64>> = HashMap::new();
    for n in 1..=48u64 {
        let topic = &topics[n as usize % topics.len()];
        publish(&a, topic, n).await;
        missed.entry(topic.clone()).or_default().push(n);
        publish(&a, "elsewhere", 1000 + n).await;
    }
    let placed = placement(&deployment.0, &topics).await;
    assert_eq!(
        placed.len(),
        4,
        "the 24 topics span every partition: {placed:?}"
    );

    for (server, how) in [(&server_b, "header"), (&server_a, "query")] {
        let mut again = match how {
            "header" => {
                SseClient::connect_with(&server.url(&query), &[("last-event-id", &last.id)]).await
            }
            _ => {
                let id = last.id.replace('+', "%2B");
                SseClient::connect(&server.url(&format!("{query}&lastEventId={id}"))).await
            }
        };
        let got = drain(&mut again).await;
        assert!(
            !got.contains(&Seen::Reset),
            "history reaches back ({how}): {got:?}"
        );
        let mut per_topic: HashMap<String, Vec<u64>> = HashMap::new();
        for s in got {
            if let Seen::Event { topic, n } = s {
                per_topic.entry(topic).or_default().push(n);
            }
        }
        assert_eq!(
            per_topic, missed,
            "exactly the missed events, each topic in order ({how})"
        );
    }
}

/// The stream of one partition is purged behind the hubs' backs: a client resuming topics of
/// that partition is told to reset (then gets what the stream still holds); one resuming topics
/// of another partition gets its missed events exactly, without a reset; one spanning both gets
/// one reset, the other partition's missed events and what the purged one still holds.
#[tokio::test]
async fn a_purge_of_one_partitions_stream_resets_its_topics_only() {
    let deployment = Partitioned(NatsServer::start());
    let mut instances = instances(&deployment, 1, Settings::default()).await;
    let (hub, server) = instances.pop().unwrap();
    let candidates: Vec<String> = (0..16).map(|n| format!("c{n}")).collect();
    for topic in &candidates {
        publish(&hub, topic, 0).await;
    }
    let placed = placement(&deployment.0, &candidates).await;
    let mut parts = placed.iter();
    let (&purged, in_purged) = parts.next().expect("a partition");
    let (_, in_other) = parts.next().expect("a second partition");
    let (x, y) = (in_purged[0].clone(), in_other[0].clone());

    let url = |topics: &str| server.url(&format!("/events?topic={topics}"));
    let both = format!("{x},{y}");
    let mut clients = Vec::new();
    for topics in [x.as_str(), y.as_str(), both.as_str()] {
        clients.push((
            SseClient::connect(&url(topics)).await,
            topics.split(',').count(),
        ));
    }
    publish(&hub, &x, 1).await;
    publish(&hub, &y, 1).await;
    let mut positions = Vec::new();
    for (mut client, events) in clients {
        let mut id = String::new();
        for _ in 0..events {
            id = client.next().await.id;
        }
        positions.push(id);
    }
    // missed by every client: x 2, 3 (3 after the purge), y 2
    publish(&hub, &x, 2).await;
    publish(&hub, &y, 2).await;
    let js = async_nats::jetstream::new(async_nats::connect(deployment.0.url()).await.unwrap());
    let mut stream = js.get_stream(format!("LIVEPUSH_p{purged}")).await.unwrap();
    stream.purge().await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    publish(&hub, &x, 3).await;

    let resume = |topics: &str, id: &str| {
        let url = url(topics);
        let id = id.to_owned();
        async move { SseClient::connect_with(&url, &[("last-event-id", &id)]).await }
    };
    let ev = |topic: &str, n| Seen::Event {
        topic: topic.to_owned(),
        n,
    };
    let mut only_x = resume(&x, &positions[0]).await;
    assert_eq!(
        drain(&mut only_x).await,
        [Seen::Reset, ev(&x, 3)],
        "{x}: purged"
    );
    let mut only_y = resume(&y, &positions[1]).await;
    assert_eq!(
        drain(&mut only_y).await,
        [ev(&y, 2)],
        "{y}: another partition, not reset"
    );
    let mut spanning = resume(&both, &positions[2]).await;
    let got = drain(&mut spanning).await;
    assert_eq!(got.first(), Some(&Seen::Reset), "{got:?}");
    let mut rest = got[1..].to_vec();
    rest.sort_by_key(|s| format!("{s:?}"));
    let mut want = vec![ev(&x, 3), ev(&y, 2)];
    want.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(rest, want, "one reset, then both partitions' events");
}

/// One partition's stream is lost while its server is down (its directory removed from the
/// store): when the server is back the stream is created anew, and only the connections of its
/// topics get a `livepush.reset` before their next event; another partition's go on without one.
#[tokio::test]
async fn a_partitions_stream_created_anew_resets_its_watched_topics_only() {
    let mut deployment = Partitioned(NatsServer::start());
    let mut instances = instances(&deployment, 1, Settings::default()).await;
    let (hub, server) = instances.pop().unwrap();
    let candidates: Vec<String> = (0..16).map(|n| format!("c{n}")).collect();
    for topic in &candidates {
        publish(&hub, topic, 0).await;
    }
    let placed = placement(&deployment.0, &candidates).await;
    let mut parts = placed.iter();
    let (&lost, in_lost) = parts.next().expect("a partition");
    let (_, in_other) = parts.next().expect("a second partition");
    let (x, y) = (in_lost[0].clone(), in_other[0].clone());
    let mut on_x = SseClient::connect(&server.url(&format!("/events?topic={x}"))).await;
    let mut on_y = SseClient::connect(&server.url(&format!("/events?topic={y}"))).await;
    publish(&hub, &x, 1).await;
    publish(&hub, &y, 1).await;
    assert_eq!(
        seen(&on_x.next().await),
        Seen::Event {
            topic: x.clone(),
            n: 1
        }
    );
    assert_eq!(
        seen(&on_y.next().await),
        Seen::Event {
            topic: y.clone(),
            n: 1
        }
    );

    let nats = &mut deployment.0;
    nats.kill();
    let dir = nats
        .store()
        .join(format!("jetstream/$G/streams/LIVEPUSH_p{lost}"));
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    nats.restart(false);
    wait_for_status(&server.url("/health/ready"), 200).await;
    publish(&hub, &x, 2).await;
    publish(&hub, &y, 2).await;
    assert_eq!(
        seen(&on_x.next().await),
        Seen::Reset,
        "{x}: its stream started over"
    );
    assert_eq!(
        seen(&on_x.next().await),
        Seen::Event {
            topic: x.clone(),
            n: 2
        }
    );
    assert_eq!(
        seen(&on_y.next().await),
        Seen::Event {
            topic: y.clone(),
            n: 2
        },
        "{y}: another partition, no reset"
    );
}

/// Each partition's stream is checked on its own: one configured otherwise keeps the hub not
/// ready, named in `/health/ready`, and is left as it is.
#[tokio::test]
async fn each_partitions_stream_is_checked() {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "LIVEPUSH_p2".to_owned(),
        subjects: vec!["livepush.p2.t.>".to_owned()],
        max_messages_per_subject: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let deployment = Partitioned(nats);
    let hub = deployment.builder().build().unwrap();
    let server = TestServer::start(conformance::app(&hub)).await;
    crate::support::eventually("readiness names the stream and the mismatch", || async {
        let ready = crate::support::http()
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap();
        let status = ready.status();
        let text = ready.text().await.unwrap();
        status == 503 && text.contains("LIVEPUSH_p2") && text.contains("LIVEPUSH_REPLAY")
    })
    .await;
    let mut stream = js.get_stream("LIVEPUSH_p2").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(config.max_messages_per_subject, 5, "unchanged");
}

/// Without `?partitions`, one stream named as before (`LIVEPUSH`, subjects `livepush.t.>`), and
/// a connection of several topics keeps plain ids: existing deployments see no change.
#[tokio::test]
async fn one_partition_is_todays_layout() {
    let nats = NatsServer::start();
    let hub = Hub::builder()
        .nats(format!("{}?partitions=1", nats.url()))
        .build()
        .unwrap();
    let server = TestServer::start(conformance::app(&hub)).await;
    wait_for_status(&server.url("/health/ready"), 200).await;
    let mut client = SseClient::connect(&server.url("/events?topic=t.1,t.2,t.3")).await;
    for topic in ["t.1", "t.2", "t.3"] {
        publish(&hub, topic, 1).await;
        assert!(client.next().await.id.parse::<u64>().is_ok(), "a plain id");
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut stream = js.get_stream("LIVEPUSH").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, ["livepush.t.>"]);
    assert_eq!(info.state.messages, 3);
}

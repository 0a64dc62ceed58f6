//! The Redis Cluster broker against a real cluster: 3 masters + 3 replicas started once for
//! this binary, two app instances per scenario (each scenario with its own key prefix).
//!
//! The scenarios run in one test, in order, because two of them change the topology (a slot
//! moves, a master dies) and every scenario must know which master serves which topic.
//!
//! With the suite's `otel` feature (`--all-features`) the process's subscriber also feeds the
//! in-memory OpenTelemetry exporter of `support::traces`, and a scenario follows one trace
//! across the cluster.

#[path = "../it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod cluster;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use livepush::__private::SubscribeContext;
use livepush::sse::RESET;
use livepush::{Hub, RouterExt, Subscription, Topics};
use serde_json::{json, Value};
use support::handlers::events;
use support::presence::{keys, presence_event};
use support::sse::Next;
use support::{wait_for_status, SseClient, TestServer};

use cluster::Cluster;

async fn my_events(ctx: SubscribeContext, headers: HeaderMap) -> Response {
    let user = headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    ctx.with(Subscription::new(Topics::one(format!("user:{user}"))).cap_key(user))
        .await
}

struct Instance {
    hub: Hub,
    server: TestServer,
}

impl Instance {
    async fn start(cluster: &Cluster, prefix: &str) -> Instance {
        let hub = Hub::builder()
            .redis_cluster(cluster.seeds())
            .redis_prefix(prefix)
            .replay(10_000, Duration::from_secs(600))
            .max_connections_per_key(1)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/events", get(events))
            .route("/me/events", get(my_events))
            .livepush(&hub)
            .merge(hub.admin_routes());
        let server = TestServer::start(app).await;
        wait_for_status(&server.url("/health/ready"), 200).await;
        Instance { hub, server }
    }

    fn events_url(&self, topics: &[String]) -> String {
        self.server
            .url(&format!("/events?topic={}", topics.join(",")))
    }
}

/// What a client saw: events (topic, n, id line) and resets, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event { topic: String, n: u64, id: String },
    Reset { id: String },
}

async fn next_seen(client: &mut SseClient, limit: Duration) -> Option<Seen> {
    Some(seen_of(client.next_within(limit).await?))
}

fn seen_of(event: eventsource_stream::Event) -> Seen {
    if event.event == RESET.as_str() {
        return Seen::Reset { id: event.id };
    }
    let data: Value = serde_json::from_str(&event.data).unwrap();
    Seen::Event {
        topic: data["topic"].as_str().unwrap().to_owned(),
        n: data["n"].as_u64().unwrap(),
        id: event.id,
    }
}

fn topics(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Which master serves each of `candidates` (the partitions do not depend on the prefix):
/// subscribes them on `instance` and reads `PUBSUB SHARDCHANNELS` on every master.
async fn placement(
    cluster: &Cluster,
    instance: &Instance,
    prefix: &str,
    candidates: &[String],
) -> BTreeMap<u16, Vec<String>> {
    let mut client = SseClient::connect(&instance.events_url(candidates)).await;
    let _ = client.next_within(Duration::from_millis(50)).await;
    let mut out: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for master in cluster.masters().await {
        for channel in cluster.shard_channels(master.port).await {
            if let Some(rest) = channel.strip_prefix(prefix) {
                let topic = rest.split_once("}topic:").unwrap().1.to_owned();
                out.entry(master.port).or_default().push(topic);
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    drop(client);
    out
}

/// The channel name of `topic` as subscribed somewhere in the cluster.
async fn channel_of(cluster: &Cluster, prefix: &str, topic: &str) -> String {
    for master in cluster.masters().await {
        for channel in cluster.shard_channels(master.port).await {
            if channel.starts_with(prefix) && channel.ends_with(&format!("}}topic:{topic}")) {
                return channel;
            }
        }
    }
    panic!("no shard channel for {topic}")
}

/// What a [`publisher`] sent: each publication the hub accepted (published, or buffered to be
/// published), and each it refused with an error, which the publisher was told of.
#[derive(Debug, Default)]
struct Published {
    accepted: Vec<(String, u64)>,
    refused: Vec<(String, u64, String)>,
}

impl Published {
    /// The `n` of the last accepted publication.
    fn last(&self) -> u64 {
        self.accepted.last().expect("something was accepted").1
    }

    /// Fails if a refused publication reached `seen`: a publisher told "no" must be able to
    /// rely on it (it may retry without a duplicate).
    fn assert_refused_not_delivered(&self, seen: &[Seen]) {
        for (topic, n, error) in &self.refused {
            assert!(
                !seen
                    .iter()
                    .any(|s| matches!(s, Seen::Event { n: got, .. } if got == n)),
                "publish {n} to {topic} was refused ({error}) and was delivered all the same"
            );
        }
    }
}

/// Publishes `{topic, n}` for n = 0, 1, … round-robin over `topics` until `stop`, every
/// `every`; answers what the hub accepted and what it refused.
fn publisher(
    hub: Hub,
    topics: Vec<String>,
    every: Duration,
    stop: Arc<AtomicBool>,
    limit: u64,
) -> tokio::task::JoinHandle<Published> {
    tokio::spawn(async move {
        let mut published = Published::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && n < limit {
            let topic = topics[(n as usize) % topics.len()].clone();
            match hub
                .publish(&topic, "tick", &json!({ "topic": topic, "n": n }))
                .await
            {
                Ok(_) => published.accepted.push((topic, n)),
                Err(error) => published.refused.push((topic, n, error.to_string())),
            }
            n += 1;
            tokio::time::sleep(every).await;
        }
        published
    })
}

/// Every accepted publication was received, or a reset came before the next event received
/// after it; the last one was received (delivery resumed); no refused one was received.
/// Duplicates of the same n (a publish retried by the client library after a lost reply) are
/// allowed here, order is not broken.
fn assert_no_silent_gap(published: &Published, seen: &[Seen]) {
    published.assert_refused_not_delivered(seen);
    let accepted = &published.accepted;
    let order: HashMap<u64, usize> = accepted
        .iter()
        .enumerate()
        .map(|(i, (_, n))| (*n, i))
        .collect();
    let mut next = 0usize;
    let mut reset = false;
    for s in seen {
        match s {
            Seen::Reset { .. } => reset = true,
            Seen::Event { n, .. } => {
                let at = *order
                    .get(n)
                    .unwrap_or_else(|| panic!("received {n}, never published"));
                if at + 1 == next {
                    continue; // the same publication again (at least once)
                }
                assert!(at >= next, "{n} arrived out of order: {seen:?}");
                assert!(
                    at == next || reset,
                    "silent gap: accepted {:?} never arrived and no reset came before {n}",
                    &accepted[next..at]
                );
                next = at + 1;
                reset = false;
            }
        }
    }
    assert_eq!(
        next,
        accepted.len(),
        "delivery did not resume up to the last publication; saw {seen:?}"
    );
}

/// Reads `client` until it saw accepted publication `last` (or `limit` passes).
async fn read_until(client: &mut SseClient, seen: &mut Vec<Seen>, last: u64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if seen
            .iter()
            .any(|s| matches!(s, Seen::Event { n, .. } if *n == last))
        {
            return;
        }
        if let Some(s) = next_seen(client, Duration::from_millis(200)).await {
            seen.push(s);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let logs = support::observe::capture_logs_globally("livepush=info");
    // A scenario that fails (a stall, a gap) shows what the brokers logged up to then: the
    // captured logs are otherwise only read by the assertions below.
    let dump = logs.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("---- livepush logs up to the panic ----\n{}", dump.text());
        default_hook(info);
    }));
    let mut cluster = Cluster::start().await;
    let started = std::time::Instant::now();
    fan_out_caps_all_shards_and_connection_bound(&cluster).await;
    eprintln!(
        "fan-out, caps, all shards, connections: ok ({:?})",
        started.elapsed()
    );
    replay_across_shards_through_a_reconnect(&cluster).await;
    eprintln!("replay across shards: ok ({:?})", started.elapsed());
    single_partition_connections_keep_plain_ids_and_foreign_ids_reset_once(&cluster).await;
    eprintln!("plain ids, foreign ids: ok ({:?})", started.elapsed());
    a_cursor_covers_every_partition(&cluster).await;
    eprintln!("cursor: ok ({:?})", started.elapsed());
    presence_across_instances_and_a_kill(&cluster).await;
    eprintln!("presence: ok ({:?})", started.elapsed());
    occupancy_once_per_period_with_a_kill(&cluster).await;
    eprintln!("occupancy hooks: ok ({:?})", started.elapsed());
    presence_churn_is_coalesced(&cluster).await;
    eprintln!("presence churn: ok ({:?})", started.elapsed());
    state_topics_across_partitions(&cluster).await;
    eprintln!("state topics: ok ({:?})", started.elapsed());
    #[cfg(feature = "otel")]
    {
        a_trace_crosses_the_cluster(&cluster).await;
        eprintln!("trace: ok ({:?})", started.elapsed());
    }
    let before = logs.text().len();
    a_watched_slot_moves(&cluster).await;
    // the broker noticed (not only redis-rs): the moved channel was re-subscribed and caught up
    assert_logged_since(
        &logs,
        before,
        &[
            "Redis Cluster ended a shard subscription",
            "partition re-subscribed and caught up",
        ],
    );
    eprintln!("slot move: ok ({:?})", started.elapsed());
    let before = logs.text().len();
    a_master_dies(&mut cluster).await;
    assert_logged_since(
        &logs,
        before,
        &[
            "node connection dropped",
            "partition re-subscribed and caught up",
        ],
    );
    eprintln!("master killed: ok ({:?})", started.elapsed());
    let before = logs.text().len();
    a_master_hangs(&cluster).await;
    assert_logged_since(
        &logs,
        before,
        &[
            "a Redis Cluster node stopped answering",
            "partition re-subscribed and caught up",
        ],
    );
    eprintln!("master stopped: ok ({:?})", started.elapsed());
}

/// Asserts that every line of `expected` was logged after the first `before` bytes of `logs`.
fn assert_logged_since(logs: &support::observe::Captured, before: usize, expected: &[&str]) {
    let during = &logs.text()[before..];
    assert!(expected.iter().all(|e| during.contains(e)), "{during}");
}

async fn fan_out_caps_all_shards_and_connection_bound(cluster: &Cluster) {
    let prefix = "fan:";
    // before any instance: nobody but the test talks to the nodes
    let mut baseline = HashMap::new();
    for node in &cluster.nodes {
        baseline.insert(node.port, cluster.clients(node.port).await.len());
    }
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let placed = placement(cluster, &b, prefix, &names).await;
    assert_eq!(
        placed.len(),
        3,
        "12 topics land on all three masters: {placed:?}"
    );

    // one subscription with topics on all three shards, on each instance
    let mut on_b = SseClient::connect_recorded(&b.events_url(&names), &[]).await;
    let mut on_a = SseClient::connect(&a.events_url(&names)).await;
    for (i, topic) in names.iter().enumerate() {
        a.hub
            .publish(topic, "tick", &json!({ "topic": topic, "n": i }))
            .await
            .unwrap();
    }
    for client in [&mut on_b, &mut on_a] {
        let mut got = Vec::new();
        while got.len() < names.len() {
            match next_seen(client, Duration::from_secs(10)).await {
                Some(Seen::Event { topic, n, id }) => {
                    assert_eq!(topic, names[n as usize]);
                    // topics in several partitions: the id line is the connection's position
                    assert!(id.contains('.') && id.contains('-'), "position id {id}");
                    got.push(n);
                }
                other => panic!("expected an event, got {other:?}"),
            }
        }
        got.sort();
        assert_eq!(got, (0..12).collect::<Vec<_>>());
    }
    // the frame body is shared; only the id line differs per connection
    let raw = on_b.raw_text();
    assert!(
        raw.contains("event: tick\ndata: {\"n\":0,\"topic\":\"t0\"}\nid: g."),
        "{raw}"
    );

    // per-key caps across instances
    let me = a.server.url("/me/events");
    let first = SseClient::connect_with(&me, &[("x-user", "u1")]).await;
    let refused = SseClient::request(&b.server.url("/me/events"), &[("x-user", "u1")]).await;
    assert_eq!(
        refused.status(),
        429,
        "the cap key is shared through the cluster"
    );
    drop(first);
    support::eventually("the slot is given back", || async {
        SseClient::request(&b.server.url("/me/events"), &[("x-user", "u1")])
            .await
            .status()
            == 200
    })
    .await;

    // many more clients, same connections: at most one command, one pub/sub and one presence
    // lease connection (its own thread's) per node per instance, whatever the number of
    // clients and topics
    let mut more = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 { &a } else { &b }.events_url(&names);
        more.push(SseClient::connect(&url).await);
    }
    for node in &cluster.nodes {
        let clients = cluster.clients(node.port).await;
        let ours = clients.len() - baseline[&node.port];
        let subscribers = clients.iter().filter(|l| !l.contains(" ssub=0 ")).count();
        eprintln!(
            "node {} ({}): {ours} connections of the two instances, {subscribers} with shard subscriptions",
            node.port,
            if node.is_master().await { "master" } else { "replica" }
        );
        assert!(ours <= 6, "node {}: {clients:#?}", node.port);
        assert!(subscribers <= 2, "node {}: {clients:#?}", node.port);
        if node.is_master().await {
            assert_eq!(
                subscribers, 2,
                "one pub/sub connection per instance: {clients:#?}"
            );
        }
    }
}

async fn replay_across_shards_through_a_reconnect(cluster: &Cluster) {
    let prefix = "replay:";
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let placed = placement(cluster, &a, prefix, &names).await;
    assert_eq!(placed.len(), 3, "{placed:?}");
    // two topics on each master
    let chosen: Vec<String> = placed
        .values()
        .flat_map(|t| t.iter().take(2).cloned())
        .collect();
    let mut first = SseClient::connect(&a.events_url(&chosen)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let total = 300;
    let publishing = publisher(
        b.hub.clone(),
        chosen.clone(),
        Duration::from_millis(4),
        stop.clone(),
        total,
    );
    let mut seen = Vec::new();
    while seen.len() < 100 {
        seen.push(
            next_seen(&mut first, Duration::from_secs(10))
                .await
                .expect("live event"),
        );
    }
    let last_id = match seen.last().unwrap() {
        Seen::Event { id, .. } => id.clone(),
        other => panic!("{other:?}"),
    };
    drop(first);
    // the publisher keeps going while the client reconnects, to the other instance
    let mut second =
        SseClient::connect_with(&b.events_url(&chosen), &[("last-event-id", &last_id)]).await;
    let published = publishing.await.unwrap();
    assert!(
        published.refused.is_empty(),
        "nothing refused: {published:?}"
    );
    assert_eq!(published.accepted.len() as u64, total);
    let last = published.last();
    read_until(&mut second, &mut seen, last, Duration::from_secs(15)).await;
    let mut per_topic: HashMap<String, Vec<u64>> = HashMap::new();
    let mut all = HashSet::new();
    for s in &seen {
        match s {
            Seen::Event { topic, n, .. } => {
                assert!(all.insert(*n), "{n} twice");
                per_topic.entry(topic.clone()).or_default().push(*n);
            }
            Seen::Reset { .. } => panic!("no reset expected: history covers the reconnect"),
        }
    }
    assert_eq!(
        all.len() as u64,
        total,
        "the union of both connections is everything"
    );
    for (topic, ns) in per_topic {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{topic} out of order: {ns:?}"
        );
    }
}

async fn single_partition_connections_keep_plain_ids_and_foreign_ids_reset_once(cluster: &Cluster) {
    let prefix = "plain:";
    let a = Instance::start(cluster, prefix).await;
    let one = topics(&["solo"]);
    let mut client = SseClient::connect(&a.events_url(&one)).await;
    a.hub
        .publish("solo", "tick", &json!({ "topic": "solo", "n": 0 }))
        .await
        .unwrap();
    let id = match next_seen(&mut client, Duration::from_secs(10)).await {
        Some(Seen::Event { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    assert!(
        id.parse::<u64>().is_ok(),
        "one partition: the plain id of today, got {id}"
    );
    a.hub
        .publish("solo", "tick", &json!({ "topic": "solo", "n": 1 }))
        .await
        .unwrap();
    // exact replay with the plain id
    let mut again = SseClient::connect_with(&a.events_url(&one), &[("last-event-id", &id)]).await;
    match next_seen(&mut again, Duration::from_secs(10)).await {
        Some(Seen::Event { n: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    // an id of the single Redis this deployment moved from (far below the partition's epoch),
    // and a position of another deployment (another partition count): one reset, whose id is
    // a position of this deployment, then what is retained after it; a client that goes on
    // from there is not reset again
    for foreign in ["17", "8.1-zzz.3-abc"] {
        let mut moved =
            SseClient::connect_with(&a.events_url(&one), &[("last-event-id", foreign)]).await;
        let mut last_id = match next_seen(&mut moved, Duration::from_secs(10)).await {
            Some(Seen::Reset { id }) => id,
            other => panic!("{foreign}: expected a reset, got {other:?}"),
        };
        let mut replayed = Vec::new();
        while let Some(seen) = next_seen(&mut moved, Duration::from_millis(300)).await {
            match seen {
                Seen::Event { n, id, .. } => {
                    replayed.push(n);
                    last_id = id;
                }
                other => panic!("{foreign}: a second reset {other:?}"),
            }
        }
        assert_eq!(
            replayed,
            [0, 1],
            "{foreign}: the retained events follow the reset"
        );
        let mut resumed =
            SseClient::connect_with(&a.events_url(&one), &[("last-event-id", &last_id)]).await;
        resumed
            .assert_quiet(Duration::from_millis(300), "going on from there: no reset")
            .await;
    }
    // a malformed id is still refused
    let bad = SseClient::request(&a.events_url(&one), &[("last-event-id", "x y")]).await;
    assert_eq!(bad.status(), 400);
}

async fn a_watched_slot_moves(cluster: &Cluster) {
    let prefix = "move:";
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let watched = topics(&["moving"]);
    let mut client = SseClient::connect(&a.events_url(&watched)).await;
    let channel = channel_of(cluster, prefix, "moving").await;
    let slot = cluster.keyslot(&channel).await;
    let from = cluster.owner_of(slot).await;
    let to = cluster
        .masters()
        .await
        .into_iter()
        .map(|m| m.port)
        .find(|&p| p != from)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(
        b.hub.clone(),
        watched.clone(),
        Duration::from_millis(10),
        stop.clone(),
        u64::MAX,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.move_slot(slot, to).await;
    assert_eq!(cluster.owner_of(slot).await, to);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let published = publishing.await.unwrap();
    let mut got = Vec::new();
    read_until(
        &mut client,
        &mut got,
        published.last(),
        Duration::from_secs(15),
    )
    .await;
    assert_no_silent_gap(&published, &got);
    // the subscription followed the slot: the channel is now subscribed on its new owner
    assert!(
        cluster.shard_channels(to).await.contains(&channel),
        "{channel} subscribed on the new owner"
    );
    let resets = got
        .iter()
        .filter(|s| matches!(s, Seen::Reset { .. }))
        .count();
    eprintln!(
        "slot {slot} moved {from} → {to}: {} events, {resets} resets, {} publishes refused",
        got.len() - resets,
        published.refused.len()
    );
}

async fn a_master_dies(cluster: &mut Cluster) {
    let prefix = "kill:";
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let watched = topics(&["doomed"]);
    let client = SseClient::connect(&a.events_url(&watched)).await;
    let cut_offs = slow_consumer_disconnects(&a.hub);
    let channel = channel_of(cluster, prefix, "doomed").await;
    let slot = cluster.keyslot(&channel).await;
    let victim = cluster.owner_of(slot).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(
        b.hub.clone(),
        watched.clone(),
        Duration::from_millis(10),
        stop.clone(),
        u64::MAX,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = std::time::Instant::now();
    cluster.kill_master(victim).await;
    let promoted = cluster.owner_of(slot).await;
    assert_ne!(promoted, victim);
    eprintln!(
        "master {victim} killed; replica {promoted} serves slot {slot} after {:?}",
        killed_at.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let published = publishing.await.unwrap();
    let mut got = Vec::new();
    let reconnects =
        read_as_event_source(&a, &watched, client, cut_offs, &mut got, published.last()).await;
    assert_no_silent_gap(&published, &got);
    let resets = got
        .iter()
        .filter(|s| matches!(s, Seen::Reset { .. }))
        .count();
    eprintln!(
        "after the failover: {} of {} accepted events received, {resets} resets, {} publishes refused, {reconnects} reconnects after a slow-consumer cut-off",
        got.len() - resets,
        published.accepted.len(),
        published.refused.len()
    );
}

/// Reads like a browser's `EventSource` until accepted publication `last` arrived (or 20 s
/// pass): when the server ends the stream it reconnects with the last id it saw and goes on.
/// The server does end it after a failover whenever the catch-up of the partition (what the
/// other instance's retry buffer published while the partition was in doubt) is more than the
/// connection's queue holds: the default slow-consumer policy with replay on cuts the stream
/// off, and the client resumes from history. An end that is not such a cut-off (the instance's
/// slow-consumer count did not rise) fails the test. `cut_offs`: that count when `client`
/// connected. Answers the number of reconnects.
async fn read_as_event_source(
    instance: &Instance,
    watched: &[String],
    mut client: SseClient,
    mut cut_offs: u64,
    seen: &mut Vec<Seen>,
    last: u64,
) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut reconnects = 0;
    while tokio::time::Instant::now() < deadline {
        if seen
            .iter()
            .any(|s| matches!(s, Seen::Event { n, .. } if *n == last))
        {
            break;
        }
        match client.next_or_end(Duration::from_millis(200)).await {
            Next::Event(event) => seen.push(seen_of(event)),
            Next::Quiet => {}
            Next::Ended(error) => {
                let now = slow_consumer_disconnects(&instance.hub);
                assert!(
                    now > cut_offs,
                    "the stream ended ({error:?}) without a slow-consumer cut-off"
                );
                cut_offs = now;
                let id = match seen.last().expect("a cut-off comes after some event") {
                    Seen::Event { id, .. } | Seen::Reset { id } => id.clone(),
                };
                let url = instance.events_url(watched);
                client = SseClient::connect_with(&url, &[("last-event-id", &id)]).await;
                reconnects += 1;
            }
        }
    }
    reconnects
}

/// `livepush_slow_consumer_disconnects_total` of `hub`.
fn slow_consumer_disconnects(hub: &Hub) -> u64 {
    hub.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("livepush_slow_consumer_disconnects_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the slow-consumer counter")
}

/// `Hub::stream_position` (and so the `Cursor` of a list endpoint) on a cluster: the position
/// vector of every partition, with which a subscription on topics of any partitions gets
/// exactly what was published after it; `Hub::position` refuses, naming it.
async fn a_cursor_covers_every_partition(cluster: &Cluster) {
    use axum::response::IntoResponse;
    use livepush::cursor::{Cursor, CURSOR_HEADER};
    let prefix = "cursor:";
    let a = Instance::start(cluster, prefix).await;
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let placed = placement(cluster, &a, prefix, &names).await;
    assert_eq!(placed.len(), 3, "{placed:?}");
    let chosen: Vec<String> = placed.values().map(|t| t[0].clone()).collect();
    for (n, topic) in chosen.iter().enumerate() {
        a.hub
            .publish(topic, "tick", &json!({ "topic": topic, "n": n }))
            .await
            .unwrap();
    }
    let refused = a
        .hub
        .position()
        .await
        .expect_err("no single id on a cluster");
    assert!(refused.to_string().contains("stream_position"), "{refused}");
    let cursor = Cursor::read(&a.hub).await;
    assert_eq!(cursor.id(), None);
    let position = cursor.position().expect("a cluster position").to_string();
    assert!(
        position.starts_with("g.0-") && position.split('.').count() == 17,
        "16 partitions: {position}"
    );
    let response = cursor.with("list").into_response();
    assert_eq!(response.headers()[CURSOR_HEADER], position.as_str());
    let after: Vec<u64> = (10..16).collect();
    for &n in &after {
        let topic = &chosen[n as usize % 3];
        a.hub
            .publish(topic, "tick", &json!({ "topic": topic, "n": n }))
            .await
            .unwrap();
    }
    // all three partitions on one connection, and one of them alone: exactly what came after
    for watched in [chosen.clone(), vec![chosen[1].clone()]] {
        let mut client =
            SseClient::connect_with(&a.events_url(&watched), &[("last-event-id", &position)]).await;
        let expected: Vec<u64> = after
            .iter()
            .copied()
            .filter(|n| watched.contains(&chosen[*n as usize % 3]))
            .collect();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match next_seen(&mut client, Duration::from_secs(10)).await {
                Some(Seen::Event { n, .. }) => got.push(n),
                other => panic!("{watched:?}: expected an event after the cursor, got {other:?}"),
            }
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted, expected,
            "{watched:?}: exactly the events after the cursor"
        );
        client
            .assert_quiet(Duration::from_millis(300), "nothing else, no reset")
            .await;
    }
}

/// A master that hangs without closing its connections (SIGSTOP): the other partitions keep
/// flowing meanwhile (their publishes do not wait behind the hung shard's in the retry
/// buffer, their subscriptions are not held up), the hung one's subscribers are caught up (or
/// reset) once it answers again (SIGCONT), and every topic's events arrive in order.
async fn a_master_hangs(cluster: &Cluster) {
    let prefix = "hang:";
    // the stopped master stays the owner of its slots (no failover) and the others keep
    // serving theirs meanwhile
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        for (key, value) in [
            ("cluster-require-full-coverage", "no"),
            ("cluster-replica-no-failover", "yes"),
        ] {
            let _: () = node.cmd(&["CONFIG", "SET", key, value]).await.unwrap();
        }
    }
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let names: Vec<String> = (0..12).map(|i| format!("h{i}")).collect();
    let placed = placement(cluster, &a, prefix, &names).await;
    let mut masters = placed.iter();
    let (&hung, stuck) = masters.next().unwrap();
    let (_, free) = masters.next().unwrap();
    let (stuck, free) = (stuck[0].clone(), free[0].clone());
    let watched = vec![stuck.clone(), free.clone()];
    let mut client = SseClient::connect(&a.events_url(&watched)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(
        b.hub.clone(),
        watched.clone(),
        Duration::from_millis(10),
        stop.clone(),
        u64::MAX,
    );
    let mut seen = Vec::new();
    read_until(&mut client, &mut seen, 20, Duration::from_secs(10)).await;
    cluster.node(hung).signal("STOP");
    let stopped_at = seen.len();
    // while the master is stopped, events of the free topic go on arriving
    let mut free_after_stop = 0;
    while free_after_stop < 40 {
        let next = next_seen(&mut client, Duration::from_secs(15))
            .await
            .expect("the free topic flows while the other master is stopped");
        if matches!(&next, Seen::Event { topic, .. } if *topic == free) {
            free_after_stop += 1;
        }
        seen.push(next);
    }
    cluster.node(hung).signal("CONT");
    let stuck_while_stopped = seen[stopped_at..]
        .iter()
        .filter(|s| matches!(s, Seen::Event { topic, .. } if *topic == stuck))
        .count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let published = publishing.await.unwrap();
    read_until(
        &mut client,
        &mut seen,
        published.last(),
        Duration::from_secs(20),
    )
    .await;
    // per topic: in order, nothing missing without a reset before it (a reset of the
    // connection counts for both topics)
    for topic in &watched {
        let mine = Published {
            accepted: published
                .accepted
                .iter()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect(),
            refused: published
                .refused
                .iter()
                .filter(|(t, ..)| t == topic)
                .cloned()
                .collect(),
        };
        let got: Vec<Seen> = seen
            .iter()
            .filter(|s| match s {
                Seen::Event { topic: t, .. } => t == topic,
                Seen::Reset { .. } => true,
            })
            .cloned()
            .collect();
        assert_no_silent_gap(&mine, &got);
    }
    let resets = seen
        .iter()
        .filter(|s| matches!(s, Seen::Reset { .. }))
        .count();
    eprintln!(
        "master {hung} stopped: {free_after_stop} events of {free} meanwhile, {stuck_while_stopped} of {stuck}; {} events, {resets} resets in all, {} publishes refused",
        seen.len() - resets,
        published.refused.len()
    );
}

/// Presence on the cluster (issue 25): three `chat` processes; joins reach every instance, two
/// tabs on two instances are one member, the same answer everywhere, and a SIGKILLed instance's
/// members leave everywhere within 5 s while a member it shared with another stays.
async fn presence_across_instances_and_a_kill(cluster: &Cluster) {
    let url = format!("redis+cluster://{}", cluster.seeds().join(","));
    let env = [
        ("REDIS_URL", url.as_str()),
        ("LIVEPUSH_REDIS_PREFIX", "presence:"),
        ("LIVEPUSH_PRESENCE_GRACE_MS", "300"),
    ];
    let a = support::Example::start("chat", &env);
    let b = support::Example::start("chat", &env);
    let c = support::Example::start("chat", &env);
    for x in [&a, &b, &c] {
        x.wait_ready().await;
    }
    let mut watcher = SseClient::connect(&a.url("/rooms/cl/events?user=watcher")).await;
    let (name, snapshot) = presence_event(&mut watcher).await;
    assert_eq!(name, "livepush.presence");
    assert_eq!(keys(&snapshot), ["watcher"]);

    let _bob = SseClient::connect(&b.url("/rooms/cl/events?user=bob")).await;
    assert_eq!(
        presence_event(&mut watcher).await,
        (
            "livepush.join".into(),
            json!({"topic": "room:cl", "key": "bob", "info": {"name": "bob"}})
        )
    );
    let _carol_b = SseClient::connect(&b.url("/rooms/cl/events?user=carol")).await;
    let (name, data) = presence_event(&mut watcher).await;
    assert_eq!(
        (name.as_str(), data["key"].as_str()),
        ("livepush.join", Some("carol"))
    );
    let _carol_c = SseClient::connect(&c.url("/rooms/cl/events?user=carol")).await;
    for x in [&a, &b, &c] {
        let presence = support::get_json(&x.url("/rooms/cl/presence")).await;
        assert_eq!(keys(&presence), ["bob", "carol", "watcher"]);
        assert_eq!(
            (presence["count"].as_u64(), presence["connections"].as_u64()),
            (Some(3), Some(4))
        );
    }

    let killed = std::time::Instant::now();
    drop(b); // SIGKILL
    assert_eq!(
        presence_event(&mut watcher).await,
        (
            "livepush.leave".into(),
            json!({"topic": "room:cl", "key": "bob", "info": {"name": "bob"}})
        )
    );
    let dropped = killed.elapsed();
    eprintln!(
        "presence on the cluster: a SIGKILLed instance's member left {dropped:?} after the kill"
    );
    assert!(dropped <= Duration::from_secs(5), "took {dropped:?}");
    for x in [&a, &c] {
        let presence = support::get_json(&x.url("/rooms/cl/presence")).await;
        assert_eq!(keys(&presence), ["carol", "watcher"]);
        assert_eq!(presence["connections"].as_u64(), Some(2));
    }
}

/// Occupancy hooks on the cluster: once per period across three `chat` processes, a kill of
/// the last holder included (the scenario of `tests/it/presence.rs` on one Redis).
async fn occupancy_once_per_period_with_a_kill(cluster: &Cluster) {
    let url = format!("redis+cluster://{}", cluster.seeds().join(","));
    support::presence::occupancy_once_per_period_with_a_kill(|| {
        support::Example::start(
            "chat",
            &[
                ("REDIS_URL", url.as_str()),
                ("LIVEPUSH_REDIS_PREFIX", "occupancy:"),
                ("LIVEPUSH_PRESENCE_GRACE_MS", "300"),
            ],
        )
    })
    .await;
}

/// A churn on one topic across three hubs on the cluster: at most one presence event per tick
/// at the watcher, no member left (the scenario of `tests/it/presence.rs` on one Redis).
async fn presence_churn_is_coalesced(cluster: &Cluster) {
    let hubs = support::presence::three_hubs(|| {
        Hub::builder()
            .redis_cluster(cluster.seeds())
            .redis_prefix("churn:")
            .presence_grace(Duration::ZERO)
    })
    .await;
    support::presence::churn_is_coalesced(hubs).await;
}

/// State topics on a cluster: values retained through one instance, on topics spread over
/// several partitions, reach a new stream of the other instance first (the newest of each topic,
/// once), before live events; a stream that resumes with complete history gets no copy.
async fn state_topics_across_partitions(cluster: &Cluster) {
    let prefix = "state:";
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let names: Vec<String> = (0..8).map(|i| format!("tile{i}")).collect();
    for n in 1..=2u64 {
        for topic in &names {
            let data = json!({"topic": topic, "n": n});
            a.hub
                .publish_retained(topic, "v", &data, livepush::Retain::latest())
                .await
                .unwrap();
        }
    }
    let mut client = SseClient::connect(&b.events_url(&names)).await;
    let mut firsts = Vec::new();
    for _ in &names {
        match next_seen(&mut client, support::WAIT).await {
            Some(Seen::Event { topic, n, .. }) => firsts.push((topic, n)),
            other => panic!("expected a current value, got {other:?}"),
        }
    }
    firsts.sort();
    let expected: Vec<(String, u64)> = names.iter().map(|t| (t.clone(), 2)).collect();
    assert_eq!(firsts, expected, "the newest value of each topic, once");
    let live = json!({"topic": names[3], "n": 3});
    a.hub
        .publish_retained(&names[3], "v", &live, livepush::Retain::latest())
        .await
        .unwrap();
    let last_id = match next_seen(&mut client, support::WAIT).await {
        Some(Seen::Event { topic, n: 3, id }) if topic == names[3] => id,
        other => panic!("expected the live value, got {other:?}"),
    };
    drop(client);
    let mut again =
        SseClient::connect_with(&b.events_url(&names), &[("last-event-id", &last_id)]).await;
    let note = json!({"topic": names[5], "n": 9});
    a.hub.publish(&names[5], "v", &note).await.unwrap();
    match next_seen(&mut again, support::WAIT).await {
        Some(Seen::Event { topic, n: 9, .. }) if topic == names[5] => {}
        other => panic!("a resume with complete history got {other:?} before the live event"),
    }
}

/// Trace propagation on a cluster (feature `otel`; the process's subscriber has the in-memory
/// exporter's layer, `support::traces`): a publish in a sampled request span on one instance is
/// the parent of, and is linked from, one delivery span of each instance, which counts its
/// streams.
#[cfg(feature = "otel")]
async fn a_trace_crosses_the_cluster(cluster: &Cluster) {
    use tracing::Instrument;

    let prefix = "otel:";
    let a = Instance::start(cluster, prefix).await;
    let b = Instance::start(cluster, prefix).await;
    let topic = "traced".to_owned();
    let topics = [topic.clone()];
    let mut clients = vec![SseClient::connect(&a.events_url(&topics)).await];
    for _ in 0..2 {
        clients.push(SseClient::connect(&b.events_url(&topics)).await);
    }
    let request = tracing::info_span!("http.request", otel.kind = "server");
    a.hub
        .publish(&topic, "v", &json!({"topic": topic, "n": 1}))
        .instrument(request)
        .await
        .unwrap();
    for client in &mut clients {
        match next_seen(client, support::WAIT).await {
            Some(Seen::Event { topic: t, n: 1, .. }) if t == topic => {}
            other => panic!("expected the traced event, got {other:?}"),
        }
    }
    let text =
        support::traces::one_publish_linked_from_two_deliveries("redis-cluster", &topic, [1, 2])
            .await;
    let (publish, _) = support::traces::spans_of(&topic);
    let parent = support::traces::span_by_id(publish[0].parent_span_id);
    assert_eq!(
        parent.map(|s| s.name),
        Some("http.request".into()),
        "the publish span is the request's child:\n{text}"
    );
    eprintln!("{text}");
}

//! Presence (issue 25): members per topic, `livepush.join` / `livepush.leave` with a grace
//! period, coalesced diffs, occupancy hooks; in memory, across hubs on one real Redis, and across
//! `chat` processes killed with SIGKILL.
//!
//! Figures: the tests that measure print them (`cargo test --test it presence:: -- --nocapture`);
//! docs/presence.md records them with this command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use livepush::__private::SubscribeContext;
use livepush::broker::Occupancy;
use livepush::{Hub, HubBuilder, RouterExt, Subscription, Topic, Topics};
use serde_json::{json, Value};

use crate::conformance::{Deployment, Nats, OneRedis};
use crate::support::{
    eventually, get_json, Example, NatsServer, RedisServer, SseClient, TestServer,
};

/// `GET /rooms/{room}/events[?user=NAME][&quiet]`: the room's stream with presence events (none
/// with `quiet`), as member `NAME` when given (a watcher that is no member otherwise).
async fn room_events(
    ctx: SubscribeContext,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut sub = Subscription::new(Topics::one(format!("room:{room}")));
    if !query.contains_key("quiet") {
        sub = sub.presence_events();
    }
    if let Some(user) = query.get("user") {
        sub = sub.member(user.clone(), json!({ "name": user }));
    }
    ctx.with(sub).await
}

async fn serve(hub: &Hub) -> TestServer {
    let app = Router::new()
        .route("/rooms/{room}/events", get(room_events))
        .livepush(hub);
    TestServer::start(app).await
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

/// The next presence event of `client` (name, data), skipping anything else.
async fn presence_event(client: &mut SseClient) -> (String, Value) {
    loop {
        let event = client.next().await;
        if event.event.starts_with("livepush.") {
            return (event.event, serde_json::from_str(&event.data).unwrap());
        }
    }
}

/// The next presence event within `limit`, if any.
async fn presence_event_within(client: &mut SseClient, limit: Duration) -> Option<(String, Value)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = client.next_within(left).await?;
        if event.event.starts_with("livepush.") {
            return Some((event.event, serde_json::from_str(&event.data).unwrap()));
        }
    }
}

/// The keys of the members of a snapshot or presence answer.
fn keys(presence: &Value) -> Vec<String> {
    presence["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_owned())
        .collect()
}

/// The keys that joined (`true`) or left (`false`) in a join, leave or diff event.
fn changes(event: &(String, Value)) -> Vec<(String, bool)> {
    let (name, data) = event;
    let key = |v: &Value| v["key"].as_str().unwrap().to_owned();
    match name.as_str() {
        "livepush.join" => vec![(key(data), true)],
        "livepush.leave" => vec![(key(data), false)],
        "livepush.presence_diff" => data["joins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| (key(j), true))
            .chain(
                data["leaves"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| (key(l), false)),
            )
            .collect(),
        other => panic!("not a presence change: {other} {data}"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn in_memory_tabs_count_once_and_leaves_wait_out_the_grace_period() {
    let hub = Hub::builder()
        .presence_grace(Duration::from_millis(300))
        .build()
        .unwrap();
    let server = serve(&hub).await;
    let room = topic("room:a");

    let mut ann = SseClient::connect(&server.url("/rooms/a/events?user=ann")).await;
    let (name, snapshot) = presence_event(&mut ann).await;
    assert_eq!(name, "livepush.presence");
    assert_eq!(
        snapshot,
        json!({"topic": "room:a", "count": 1, "connections": 1,
               "members": [{"key": "ann", "connections": 1, "info": {"name": "ann"}}]})
    );

    let mut bob1 = SseClient::connect(&server.url("/rooms/a/events?user=bob")).await;
    let (_, snapshot) = presence_event(&mut bob1).await;
    assert_eq!(keys(&snapshot), ["ann", "bob"]);
    assert_eq!(
        presence_event(&mut ann).await,
        (
            "livepush.join".to_owned(),
            json!({"topic": "room:a", "key": "bob", "info": {"name": "bob"}})
        )
    );

    // a second tab: one member, two connections, no second join
    let bob2 = SseClient::connect(&server.url("/rooms/a/events?user=bob")).await;
    let presence = hub.presence(&room).await.unwrap();
    assert_eq!((presence.count, presence.connections), (2, 3));
    assert_eq!(presence.members[1].connections, 2);
    assert!(presence_event_within(&mut ann, Duration::from_millis(400))
        .await
        .is_none());

    // one tab closes: bob is still here
    drop(bob1);
    assert!(presence_event_within(&mut ann, Duration::from_millis(800))
        .await
        .is_none());
    // the last one closes: one leave, after the grace period
    let closed = Instant::now();
    drop(bob2);
    let leave = presence_event(&mut ann).await;
    assert!(
        closed.elapsed() >= Duration::from_millis(300),
        "left before the grace period"
    );
    assert_eq!(
        leave,
        (
            "livepush.leave".to_owned(),
            json!({"topic": "room:a", "key": "bob", "info": {"name": "bob"}})
        )
    );
    let count = hub.presence_count(&room).await.unwrap();
    assert_eq!((count.count, count.connections), (1, 1));
}

#[tokio::test]
async fn in_memory_a_reconnect_within_the_grace_period_is_no_leave_and_no_join() {
    let hub = Hub::builder()
        .presence_grace(Duration::from_millis(1500))
        .build()
        .unwrap();
    let server = serve(&hub).await;
    let mut ann = SseClient::connect(&server.url("/rooms/r/events?user=ann")).await;
    presence_event(&mut ann).await;
    let bob = SseClient::connect(&server.url("/rooms/r/events?user=bob")).await;
    assert_eq!(
        changes(&presence_event(&mut ann).await),
        [("bob".into(), true)]
    );

    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bob = SseClient::connect(&server.url("/rooms/r/events?user=bob")).await;
    let (_, snapshot) = presence_event(&mut bob).await;
    assert_eq!(keys(&snapshot), ["ann", "bob"]);
    assert!(
        presence_event_within(&mut ann, Duration::from_millis(2500))
            .await
            .is_none(),
        "a reconnect within the grace period showed as a leave or a join"
    );
    let presence = hub.presence(&topic("room:r")).await.unwrap();
    assert_eq!((presence.count, presence.connections), (2, 2));
}

type Edges = Arc<Mutex<Vec<(String, Occupancy)>>>;

fn recording(builder: HubBuilder, edges: &Edges) -> HubBuilder {
    let edges = edges.clone();
    builder.on_occupancy(move |topic, occupancy| {
        edges.lock().unwrap().push((topic.to_string(), occupancy));
    })
}

#[tokio::test]
async fn in_memory_occupancy_is_one_edge_each_way_per_period() {
    let edges = Edges::default();
    let hub = recording(Hub::builder(), &edges).build().unwrap();
    let server = serve(&hub).await;
    for _ in 0..3 {
        let a = SseClient::connect(&server.url("/rooms/o/events")).await;
        let b = SseClient::connect(&server.url("/rooms/o/events?user=b")).await;
        drop(a);
        drop(b);
        eventually("the room is vacated", || async {
            edges.lock().unwrap().last().map(|e| e.1) == Some(Occupancy::Vacated)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: Vec<Occupancy> = edges.lock().unwrap().iter().map(|e| e.1).collect();
    use Occupancy::*;
    assert_eq!(
        seen,
        [Occupied, Vacated, Occupied, Vacated, Occupied, Vacated]
    );
}

/// Three hubs on one broker deployment, each served on its own port.
async fn three_on(deployment: &dyn Deployment, grace: Duration) -> Vec<(Hub, TestServer)> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let hub = deployment.builder().presence_grace(grace).build().unwrap();
        crate::support::wait_until_ready(&hub).await;
        let server = serve(&hub).await;
        out.push((hub, server));
    }
    out
}

#[tokio::test]
async fn on_redis_joins_and_leaves_reach_every_instance_and_tabs_count_once() {
    joins_and_leaves_reach_every_instance_and_tabs_count_once(&OneRedis(RedisServer::start())).await
}

#[tokio::test]
async fn on_nats_joins_and_leaves_reach_every_instance_and_tabs_count_once() {
    joins_and_leaves_reach_every_instance_and_tabs_count_once(&Nats(NatsServer::start())).await
}

async fn joins_and_leaves_reach_every_instance_and_tabs_count_once(deployment: &dyn Deployment) {
    let grace = Duration::from_millis(300);
    let hubs = three_on(deployment, grace).await;
    let mut watchers = Vec::new();
    for (_, server) in &hubs {
        let mut w = SseClient::connect(&server.url("/rooms/lat/events")).await;
        assert_eq!(presence_event(&mut w).await.0, "livepush.presence");
        watchers.push(w);
    }
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let key = format!("u{i}");
        let at = &hubs[i % 3].1;
        let started = Instant::now();
        let member = SseClient::connect(&at.url(&format!("/rooms/lat/events?user={key}"))).await;
        for w in &mut watchers {
            assert_eq!(changes(&presence_event(w).await), [(key.clone(), true)]);
            joins.push(started.elapsed());
        }
        let closed = Instant::now();
        drop(member);
        for w in &mut watchers {
            assert_eq!(changes(&presence_event(w).await), [(key.clone(), false)]);
            leaves.push(closed.elapsed().saturating_sub(grace));
        }
    }
    joins.sort();
    leaves.sort();
    println!(
        "presence across 3 instances on one broker: join p50 {:?} p99 {:?} max {:?}; leave after the grace period p50 {:?} p99 {:?} max {:?} ({} samples each)",
        percentile(&joins, 0.5),
        percentile(&joins, 0.99),
        joins.last().unwrap(),
        percentile(&leaves, 0.5),
        percentile(&leaves, 0.99),
        leaves.last().unwrap(),
        joins.len()
    );
    // the issue's bound, with room for a loaded machine: a second, not the figure
    assert!(percentile(&joins, 0.5) < Duration::from_secs(1));
    assert!(percentile(&leaves, 0.5) < Duration::from_secs(1));

    // two tabs on two instances: one member, two connections, the same answer everywhere
    let _tab1 = SseClient::connect(&hubs[0].1.url("/rooms/lat/events?user=bob")).await;
    let _tab2 = SseClient::connect(&hubs[1].1.url("/rooms/lat/events?user=bob")).await;
    let room = topic("room:lat");
    for (hub, _) in &hubs {
        let presence = hub.presence(&room).await.unwrap();
        assert_eq!(keys(&serde_json::to_value(&presence).unwrap()), ["bob"]);
        assert_eq!((presence.count, presence.connections), (1, 2));
        let count = hub.presence_count(&room).await.unwrap();
        assert_eq!((count.count, count.connections), (1, 2));
    }
    for w in &mut watchers {
        assert_eq!(changes(&presence_event(w).await), [("bob".into(), true)]);
        assert!(presence_event_within(w, Duration::from_millis(300))
            .await
            .is_none());
    }
}

#[tokio::test]
async fn on_redis_a_reconnect_to_another_instance_within_the_grace_period_is_quiet() {
    a_reconnect_to_another_instance_within_the_grace_period_is_quiet(
        &OneRedis(RedisServer::start()),
    )
    .await
}

#[tokio::test]
async fn on_nats_a_reconnect_to_another_instance_within_the_grace_period_is_quiet() {
    a_reconnect_to_another_instance_within_the_grace_period_is_quiet(&Nats(NatsServer::start()))
        .await
}

async fn a_reconnect_to_another_instance_within_the_grace_period_is_quiet(
    deployment: &dyn Deployment,
) {
    let hubs = three_on(deployment, Duration::from_millis(1500)).await;
    let mut watcher = SseClient::connect(&hubs[2].1.url("/rooms/g/events")).await;
    presence_event(&mut watcher).await;
    let bob = SseClient::connect(&hubs[0].1.url("/rooms/g/events?user=bob")).await;
    assert_eq!(
        changes(&presence_event(&mut watcher).await),
        [("bob".into(), true)]
    );
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _bob = SseClient::connect(&hubs[1].1.url("/rooms/g/events?user=bob")).await;
    assert!(
        presence_event_within(&mut watcher, Duration::from_millis(2500))
            .await
            .is_none(),
        "a reconnect within the grace period, on another instance, showed as a leave or a join"
    );
    let presence = hubs[2].0.presence(&topic("room:g")).await.unwrap();
    assert_eq!((presence.count, presence.connections), (1, 1));
}

#[tokio::test]
async fn on_redis_churn_is_coalesced_to_about_ten_events_a_second() {
    churn_is_coalesced_to_about_ten_events_a_second(&OneRedis(RedisServer::start())).await
}

#[tokio::test]
async fn on_nats_churn_is_coalesced_to_about_ten_events_a_second() {
    churn_is_coalesced_to_about_ten_events_a_second(&Nats(NatsServer::start())).await
}

async fn churn_is_coalesced_to_about_ten_events_a_second(deployment: &dyn Deployment) {
    let hubs = three_on(deployment, Duration::ZERO).await;
    let mut watcher = SseClient::connect(&hubs[0].1.url("/rooms/churn/events")).await;
    presence_event(&mut watcher).await;
    let churn_url = hubs[1].1.url("/rooms/churn/events?user=");
    let deadline = Instant::now() + Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    // eight clients subscribe and unsubscribe in a loop for three seconds (at most 3,000 each)
    for t in 0..8 {
        let url = churn_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < deadline && n < 3000 {
                let client = SseClient::connect(&format!("{url}c{t}-{n}")).await;
                drop(client);
                n += 1;
            }
            n
        }));
    }
    let mut events = 0u32;
    let mut members_seen = 0usize;
    while Instant::now() < deadline {
        if let Some(event) = presence_event_within(&mut watcher, Duration::from_millis(200)).await {
            events += 1;
            members_seen += changes(&event).len();
        }
    }
    let mut churned = 0;
    for task in tasks {
        churned += task.await.unwrap();
    }
    // what is still on its way after the churn stopped
    while let Some(event) = presence_event_within(&mut watcher, Duration::from_millis(800)).await {
        events += 1;
        members_seen += changes(&event).len();
    }
    let elapsed = started.elapsed();
    let rate = churned as f64 / 3.0;
    let per_second = events as f64 / elapsed.as_secs_f64();
    println!(
        "presence churn: {churned} subscribe+unsubscribe in 3 s ({rate:.0}/s) on one topic gave the watcher {events} events ({per_second:.1}/s) naming {members_seen} joins and leaves"
    );
    assert!(churned > 30, "the churn did not run");
    assert!(events > 0, "the watcher saw none of the churn");
    // one event per 100 ms tick at most, plus the tick in progress at either end
    let bound = (elapsed.as_millis() / 100) as u32 + 2;
    assert!(
        events <= bound,
        "{events} events in {elapsed:?}: more than one per tick ({bound})"
    );
    let presence = hubs[2].0.presence(&topic("room:churn")).await.unwrap();
    assert_eq!(
        presence.count, 0,
        "members left behind by the churn: {presence:?}"
    );
}

#[tokio::test]
async fn on_redis_occupancy_is_once_per_period_across_instances() {
    occupancy_is_once_per_period_across_instances(&OneRedis(RedisServer::start())).await
}

#[tokio::test]
async fn on_nats_occupancy_is_once_per_period_across_instances() {
    occupancy_is_once_per_period_across_instances(&Nats(NatsServer::start())).await
}

async fn occupancy_is_once_per_period_across_instances(deployment: &dyn Deployment) {
    let edges = Edges::default();
    let mut hubs = Vec::new();
    for _ in 0..3 {
        let hub = recording(deployment.builder(), &edges).build().unwrap();
        crate::support::wait_until_ready(&hub).await;
        let server = serve(&hub).await;
        hubs.push((hub, server));
    }
    // each period: streams opened on several instances, closed in another order
    for period in 0..6usize {
        let mut open = Vec::new();
        for i in 0..(2 + period % 3) {
            let at = &hubs[(period + i) % 3].1;
            open.push(SseClient::connect(&at.url("/rooms/occ/events")).await);
        }
        while let Some(client) = open.pop() {
            drop(client);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let want = 2 * (period + 1);
        eventually("the period's vacated", || async {
            edges.lock().unwrap().len() >= want
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<Occupancy> = edges.lock().unwrap().iter().map(|e| e.1).collect();
    let expected: Vec<Occupancy> = (0..6)
        .flat_map(|_| [Occupancy::Occupied, Occupancy::Vacated])
        .collect();
    assert_eq!(seen, expected);
}

// ---- chat processes, killed with SIGKILL ----

/// Which broker a `chat` process uses: its environment variable and URL.
type BrokerEnv<'a> = (&'a str, &'a str);

/// `chat` on the broker of `env` with a short grace period.
fn chat(env: BrokerEnv) -> Example {
    Example::start("chat", &[env, ("LIVEPUSH_PRESENCE_GRACE_MS", "300")])
}

async fn presence_of(example: &Example, room: &str) -> Value {
    get_json(&example.url(&format!("/rooms/{room}/presence"))).await
}

/// The instances listed in Redis, and the per-instance member hashes of the whole deployment.
async fn instance_keys(redis: &RedisServer) -> (Vec<String>, Vec<String>) {
    let mut conn = redis.connection().await;
    let instances: Vec<String> = redis::cmd("SMEMBERS")
        .arg("livepush:pr:instances")
        .query_async(&mut conn)
        .await
        .unwrap();
    let shares: Vec<String> = redis::cmd("KEYS")
        .arg("livepush:pr:*:x:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    (instances, shares)
}

#[tokio::test]
async fn chat_a_killed_instance_leaves_everywhere_within_5_s_and_restarts_leave_no_zombies() {
    let redis = RedisServer::start();
    a_killed_instance_leaves_everywhere_within_5_s(("REDIS_URL", &redis.url()), 50).await;
    eventually("only the two live instances are listed", || async {
        let (instances, shares) = instance_keys(&redis).await;
        instances.len() == 2 && shares.len() == 1
    })
    .await;
}

#[tokio::test]
async fn chat_on_nats_a_killed_instance_leaves_everywhere_within_5_s_and_restarts_leave_no_zombies()
{
    let nats = NatsServer::start();
    a_killed_instance_leaves_everywhere_within_5_s(("NATS_URL", &nats.url()), 50).await;
    eventually("only the two live instances are listed", || async {
        nats.presence_instances().await.len() == 2
    })
    .await;
}

/// Three `chat` processes on the broker of `env`; one with two members is SIGKILLed: they leave
/// every other instance within 5 s; then `cycles` instances are started and killed with a member
/// open, and none of them is left behind (two instances live at the end).
async fn a_killed_instance_leaves_everywhere_within_5_s(env: BrokerEnv<'_>, cycles: usize) {
    let a = chat(env);
    let b = chat(env);
    let c = chat(env);
    for x in [&a, &b, &c] {
        x.wait_ready().await;
    }
    let mut watcher = SseClient::connect(&a.url("/rooms/k/events?user=watcher")).await;
    presence_event(&mut watcher).await;
    let _bob = SseClient::connect(&b.url("/rooms/k/events?user=bob")).await;
    let _carol = SseClient::connect(&b.url("/rooms/k/events?user=carol")).await;
    let mut joined = Vec::new();
    while joined.len() < 2 {
        joined.extend(changes(&presence_event(&mut watcher).await));
    }
    assert_eq!(
        keys(&presence_of(&c, "k").await),
        ["bob", "carol", "watcher"]
    );

    let killed = Instant::now();
    drop(b); // SIGKILL
    let mut left = Vec::new();
    while left.len() < 2 {
        left.extend(changes(&presence_event(&mut watcher).await));
    }
    let dropped = killed.elapsed();
    left.sort();
    assert_eq!(left, [("bob".into(), false), ("carol".into(), false)]);
    for x in [&a, &c] {
        assert_eq!(keys(&presence_of(x, "k").await), ["watcher"]);
    }
    println!("presence: a SIGKILLed instance's members left every other instance {dropped:?} after the kill");
    assert!(dropped <= Duration::from_secs(5), "took {dropped:?}");

    // kill and restart, again and again: never a member or an instance left behind
    let started = Instant::now();
    for i in 0..cycles {
        let d = chat(env);
        d.wait_ready().await;
        let _z = SseClient::connect(&d.url(&format!("/rooms/k/events?user=z{i}"))).await;
        drop(d); // SIGKILL, with the member's stream open
    }
    println!(
        "presence: {cycles} kill/restart cycles in {:?}",
        started.elapsed()
    );
    eventually("every killed instance's members are gone", || async {
        keys(&presence_of(&c, "k").await) == ["watcher"]
    })
    .await;
    let presence = presence_of(&a, "k").await;
    assert_eq!(presence["count"], 1);
    assert_eq!(presence["connections"], 1);
}

/// The occupancy lines `chat` logged for `topic`: (occupied, vacated).
fn occupancy_lines(examples: &[&Example], topic: &str) -> (usize, usize) {
    let (mut occupied, mut vacated) = (0, 0);
    for example in examples {
        for line in example.output().lines() {
            if line.contains(&format!("topic={topic}")) {
                occupied += line.contains("room occupied") as usize;
                vacated += line.contains("room vacated") as usize;
            }
        }
    }
    (occupied, vacated)
}

#[tokio::test]
async fn chat_occupancy_hooks_fire_once_per_period_even_when_the_last_holder_is_killed() {
    let redis = RedisServer::start();
    occupancy_once_per_period_with_a_kill(("REDIS_URL", &redis.url())).await;
}

#[tokio::test]
async fn chat_on_nats_occupancy_hooks_fire_once_per_period_even_when_the_last_holder_is_killed() {
    let nats = NatsServer::start();
    occupancy_once_per_period_with_a_kill(("NATS_URL", &nats.url())).await;
}

/// Three `chat` processes on the broker of `env`: a room's periods give one occupied and one
/// vacated in all, also when the instance holding its last subscriber is SIGKILLed.
async fn occupancy_once_per_period_with_a_kill(env: BrokerEnv<'_>) {
    let a = chat(env);
    let mut b = Some(chat(env));
    let c = chat(env);
    for x in [&a, b.as_ref().unwrap(), &c] {
        x.wait_ready().await;
    }
    let all = |b: &Option<Example>| -> (usize, usize) {
        let mut list = vec![&a, &c];
        if let Some(b) = b {
            list.push(b);
        }
        occupancy_lines(&list, "room:occ")
    };
    let s1 = SseClient::connect(&a.url("/rooms/occ/events?user=s1")).await;
    eventually("occupied once", || async { all(&b) == (1, 0) }).await;
    let s2 = SseClient::connect(&b.as_ref().unwrap().url("/rooms/occ/events?user=s2")).await;
    let s3 = SseClient::connect(&c.url("/rooms/occ/events?user=s3")).await;
    drop(s1);
    drop(s3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        all(&b),
        (1, 0),
        "an edge while instance b still holds the room"
    );

    // b holds the last subscriber; kill it: another instance reports the vacated, once
    let killed_output = {
        let b = b.take().unwrap();
        let output = b.output();
        drop(b);
        output
    };
    let killed = Instant::now();
    eventually("vacated once, by a live instance", || async {
        all(&b) == (1, 1)
    })
    .await;
    println!(
        "occupancy: vacated reported {:?} after the last holder was killed",
        killed.elapsed()
    );
    assert!(!killed_output.contains("room vacated"));
    drop(s2);

    let s4 = SseClient::connect(&c.url("/rooms/occ/events?user=s4")).await;
    eventually("occupied again", || async { all(&b) == (2, 1) }).await;
    drop(s4);
    eventually("vacated again", || async { all(&b) == (2, 2) }).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(all(&b), (2, 2));
}

/// Total command calls in `INFO commandstats`, without the measuring ones (`info`, `config`).
async fn command_calls(redis: &RedisServer) -> (u64, Vec<(String, u64)>) {
    let info = match redis.admin_command(&["INFO", "commandstats"]).await {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO answered {other:?}"),
    };
    let mut by = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let (name, stats) = rest.split_once(':').unwrap();
        if name == "info" || name.starts_with("config") {
            continue;
        }
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .unwrap()
            .parse()
            .unwrap();
        by.push((name.to_owned(), calls));
    }
    (by.iter().map(|(_, n)| n).sum(), by)
}

/// Three hubs on `deployment` with `members` idle members of one room spread over them, and one
/// presence-event stream per hub watching the room; answers what must stay open.
async fn idle_room(
    deployment: &dyn Deployment,
    members: usize,
) -> (Vec<(Hub, TestServer)>, Vec<livepush::testing::EventStream>) {
    let hubs = three_on(deployment, Duration::from_millis(300)).await;
    let clients: Vec<livepush::testing::Client> = hubs
        .iter()
        .map(|(hub, _)| {
            let app = Router::new()
                .route("/rooms/{room}/events", get(room_events))
                .livepush(hub);
            livepush::testing::Client::new(app)
        })
        .collect();
    let mut streams = Vec::with_capacity(members);
    for i in 0..members {
        let stream = clients[i % 3]
            .subscribe(&format!("/rooms/big/events?user=m{i}&quiet"))
            .await;
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    // then one stream with presence events per instance, watching the room (opened after the
    // members so that the setup is not a join storm read ten times a second by three hubs)
    let mut watchers = Vec::new();
    for client in &clients {
        watchers.push(client.subscribe("/rooms/big/events").await);
    }
    streams.extend(watchers);
    let room = topic("room:big");
    let count = hubs[0].0.presence_count(&room).await.unwrap();
    assert_eq!(
        (count.count, count.connections),
        (members as u64, members as u64)
    );
    (hubs, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_idle_presence_costs_the_same_at_10000_members() {
    let redis = OneRedis(RedisServer::start());
    let members = 10_000;
    let (_hubs, streams) = idle_room(&redis, members).await;
    // idle: measure what presence costs Redis over ten seconds
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = command_calls(&redis.0).await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let (after, by) = command_calls(&redis.0).await;
    let per_second = (after - before) as f64 / window.as_secs_f64();
    println!(
        "presence idle cost: {per_second:.1} Redis commands/s with {members} members on one topic, 3 instances, one presence-event stream each (totals since start: {by:?})"
    );
    // per instance: a lease renewal, the instance list and a lease check per other instance
    // every 500 ms, and one MGET of versions every 100 ms: about 18 a second, whatever the
    // number of members (a hub reads a topic's versions once per tick however many of its
    // streams watch it, so members that all watch, as in `chat`, cost the same)
    assert!(per_second < 100.0, "{per_second} commands/s");
    drop(streams);
}

/// Messages clients sent the NATS server (`/varz` `in_msgs`): each request, publish or KV write
/// is one.
async fn nats_in_msgs(nats: &NatsServer) -> u64 {
    let varz = get_json(&format!("http://127.0.0.1:{}/varz", nats.monitor_port())).await;
    varz["in_msgs"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_idle_presence_costs_the_same_at_10000_members() {
    let nats = Nats(NatsServer::start());
    let members = 10_000;
    let started = Instant::now();
    let (_hubs, streams) = idle_room(&nats, members).await;
    println!(
        "presence on NATS: {members} members joined in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = nats_in_msgs(&nats.0).await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let after = nats_in_msgs(&nats.0).await;
    let per_second = (after - before) as f64 / window.as_secs_f64();
    println!(
        "presence idle cost: {per_second:.1} NATS messages/s from the instances with {members} members on one topic, 3 instances, one presence-event stream each"
    );
    // per instance: every maintenance a lease write and read, the instance list and one lease
    // read per other instance (5 with 3 instances, 10 a second); every 100 ms tick one summary
    // read per watched topic (10 a second): about 20 a second, whatever the number of members
    assert!(per_second < 100.0, "{per_second} messages/s");
    drop(streams);
}

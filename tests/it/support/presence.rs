//! Presence scenarios (issue 25) that run the same on every broker with a presence store: one
//! Redis server, Sentinel and NATS (`tests/it/presence.rs`) and Redis Cluster
//! (`tests/redis_cluster`).
//! Each takes how to make its hubs or start its `chat` processes, and asserts and prints what
//! the issue asks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use livepush::__private::SubscribeContext;
use livepush::{Hub, HubBuilder, RouterExt, Subscription, Topic, Topics};
use serde_json::{json, Value};

use super::{eventually, get_json, raw_get, Example, SseClient, TestServer};

/// `GET /rooms/{room}/events[?user=NAME][&quiet]`: the room's stream with presence events (none
/// with `quiet`), as member `NAME` when given (a watcher that is no member otherwise).
pub async fn room_events(
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

/// `hub` serving [`room_events`] on a loopback port.
pub async fn serve(hub: &Hub) -> TestServer {
    let app = Router::new()
        .route("/rooms/{room}/events", get(room_events))
        .livepush(hub);
    TestServer::start(app).await
}

/// Three hubs made by `builder`, each ready and served on its own port.
pub async fn three_hubs(builder: impl Fn() -> HubBuilder) -> Vec<(Hub, TestServer)> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let hub = builder().build().unwrap();
        super::wait_until_ready(&hub).await;
        let server = serve(&hub).await;
        out.push((hub, server));
    }
    out
}

/// The next presence event of `client` (name, data), skipping anything else.
pub async fn presence_event(client: &mut SseClient) -> (String, Value) {
    loop {
        let event = client.next().await;
        if event.event.starts_with("livepush.") {
            return (event.event, serde_json::from_str(&event.data).unwrap());
        }
    }
}

/// The next presence event within `limit`, if any.
pub async fn presence_event_within(
    client: &mut SseClient,
    limit: Duration,
) -> Option<(String, Value)> {
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
pub fn keys(presence: &Value) -> Vec<String> {
    presence["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_owned())
        .collect()
}

/// The keys that joined (`true`) or left (`false`) in a join, leave or diff event.
pub fn changes(event: &(String, Value)) -> Vec<(String, bool)> {
    let (name, data) = event;
    let key = |v: &Value| v["key"].as_str().unwrap().to_owned();
    let list = |field: &str, joined: bool| -> Vec<(String, bool)> {
        data[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (key(m), joined))
            .collect()
    };
    match name.as_str() {
        "livepush.join" => vec![(key(data), true)],
        "livepush.leave" => vec![(key(data), false)],
        "livepush.presence_diff" => [list("joins", true), list("leaves", false)].concat(),
        other => panic!("not a presence change: {other} {data}"),
    }
}

/// `GET /rooms/{room}/presence` of a `chat` process.
pub async fn presence_of(example: &Example, room: &str) -> Value {
    get_json(&example.url(&format!("/rooms/{room}/presence"))).await
}

/// One subscribe and unsubscribe, as cheap as a client can make it: the request on a fresh
/// connection, the response head (the member's join is recorded before it), and a close.
async fn subscribe_and_leave(server: &TestServer, target: &str) {
    let response = raw_get(server.addr, target.as_bytes(), &[]).await;
    assert_eq!(response.status, 200, "{}", response.head);
}

/// How many raw clients churn, spread over the instances.
const CHURNERS: usize = 48;

/// For three seconds, [`CHURNERS`] raw clients subscribe to one topic as new members and
/// unsubscribe, spread over the three `hubs` (grace period zero), while a stream on the first
/// watches the topic's presence: it gets at most one event per 100 ms tick, and no member is
/// left at the end. Returns how many subscribe+unsubscribe it made.
pub async fn churn_is_coalesced(hubs: Vec<(Hub, TestServer)>) -> u32 {
    let hubs = Arc::new(hubs);
    let mut watcher = SseClient::connect(&hubs[0].1.url("/rooms/churn/events")).await;
    presence_event(&mut watcher).await;
    let window = Duration::from_secs(3);
    let cpu_before = super::observe::process_cpu();
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for t in 0..CHURNERS {
        let hubs = hubs.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < deadline {
                let target = format!("/rooms/churn/events?quiet&user=c{t}-{n}");
                subscribe_and_leave(&hubs[t % 3].1, &target).await;
                n += 1;
            }
            n
        }));
    }
    let (mut events, mut members_seen) = (0u32, 0usize);
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
    let busy = super::observe::process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    // what is still on its way after the churn stopped
    while let Some(event) = presence_event_within(&mut watcher, Duration::from_millis(800)).await {
        events += 1;
        members_seen += changes(&event).len();
    }
    let elapsed = started.elapsed();
    let rate = churned as f64 / window.as_secs_f64();
    let per_second = events as f64 / elapsed.as_secs_f64();
    println!(
        "presence churn: {churned} subscribe+unsubscribe in {window:?} ({rate:.0}/s, {CHURNERS} raw clients over 3 instances) on one topic gave the watcher {events} events ({per_second:.1}/s) naming {members_seen} joins and leaves"
    );
    if let Some(busy) = busy {
        println!(
            "presence churn: this process (the clients and the three hubs) used {busy:?} of CPU, {:?} per subscribe+unsubscribe",
            busy / churned.max(1)
        );
    }
    assert!(churned > 30, "the churn did not run");
    assert!(events > 0, "the watcher saw none of the churn");
    // one event per 100 ms tick at most, plus the tick in progress at either end
    let bound = (elapsed.as_millis() / 100) as u32 + 2;
    assert!(
        events <= bound,
        "{events} events in {elapsed:?}: more than one per tick ({bound})"
    );
    let room = Topic::new("room:churn").unwrap();
    let presence = hubs[2].0.presence(&room).await.unwrap();
    assert_eq!(
        presence.count, 0,
        "members left behind by the churn: {presence:?}"
    );
    churned
}

/// Three `chat` processes made by `start`: members join on one instance and are seen on the
/// others, one leaves gracefully, and a SIGKILLed instance's members leave every other instance
/// within 5 s, with leave events. Returns what is left: two instances and the watcher, member
/// `watcher` of room `k`.
pub async fn a_killed_instance_leaves_everywhere(start: impl Fn() -> Example) -> Survivors {
    let (a, b, c) = (start(), start(), start());
    for x in [&a, &b, &c] {
        x.wait_ready().await;
    }
    let mut watcher = SseClient::connect(&a.url("/rooms/k/events?user=watcher")).await;
    presence_event(&mut watcher).await;
    let _bob = SseClient::connect(&b.url("/rooms/k/events?user=bob")).await;
    let _carol = SseClient::connect(&b.url("/rooms/k/events?user=carol")).await;
    let dave = SseClient::connect(&c.url("/rooms/k/events?user=dave")).await;
    let mut joined = Vec::new();
    while joined.len() < 3 {
        joined.extend(changes(&presence_event(&mut watcher).await));
    }
    joined.sort();
    assert_eq!(
        joined,
        [
            ("bob".into(), true),
            ("carol".into(), true),
            ("dave".into(), true)
        ]
    );
    assert_eq!(
        keys(&presence_of(&c, "k").await),
        ["bob", "carol", "dave", "watcher"]
    );
    drop(dave);
    assert_eq!(
        changes(&presence_event(&mut watcher).await),
        [("dave".into(), false)]
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
    Survivors { a, c, watcher }
}

/// What [`a_killed_instance_leaves_everywhere`] leaves running.
pub struct Survivors {
    pub a: Example,
    pub c: Example,
    /// Member `watcher` of room `k`, on `a`.
    pub watcher: SseClient,
}

/// The occupancy lines `chat` logged for `topic`: (occupied, vacated).
pub fn occupancy_lines(examples: &[&Example], topic: &str) -> (usize, usize) {
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

/// The bound on an occupancy edge, a kill included.
pub const OCCUPANCY_WITHIN: Duration = Duration::from_secs(1);

/// Three `chat` processes made by `start`, one room, three occupancy periods: exactly one
/// occupied and one vacated hook per period across all instances; in the second the instance
/// holding the last subscriber is SIGKILLed, and a live instance reports the vacated within
/// [`OCCUPANCY_WITHIN`]. Returns that delay.
pub async fn occupancy_once_per_period_with_a_kill(start: impl Fn() -> Example) -> Duration {
    let a = start();
    let mut b = Some(start());
    let c = start();
    for x in [&a, b.as_ref().unwrap(), &c] {
        x.wait_ready().await;
    }
    // the lines of the running instances, plus those of the killed one up to its kill
    let all = |b: &Option<Example>, dead: (usize, usize)| -> (usize, usize) {
        let mut list = vec![&a, &c];
        list.extend(b.as_ref());
        let (occupied, vacated) = occupancy_lines(&list, "room:occ");
        (occupied + dead.0, vacated + dead.1)
    };
    let mut dead = (0, 0);
    // a period over every instance, closed gracefully
    let mut opened = Vec::new();
    for (i, x) in [&a, b.as_ref().unwrap(), &c, &a].into_iter().enumerate() {
        let url = x.url(&format!("/rooms/occ/events?user=p{i}"));
        opened.push(SseClient::connect(&url).await);
    }
    eventually("occupied once", || async { all(&b, dead) == (1, 0) }).await;
    drop(opened);
    eventually("vacated once", || async { all(&b, dead) == (1, 1) }).await;

    // a period whose last holder is killed
    let s1 = SseClient::connect(&a.url("/rooms/occ/events?user=s1")).await;
    eventually("occupied again", || async { all(&b, dead) == (2, 1) }).await;
    let s2 = SseClient::connect(&b.as_ref().unwrap().url("/rooms/occ/events?user=s2")).await;
    let s3 = SseClient::connect(&c.url("/rooms/occ/events?user=s3")).await;
    drop(s1);
    drop(s3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        all(&b, dead),
        (2, 1),
        "an edge while instance b still holds the room"
    );
    let b_lines = occupancy_lines(&[b.as_ref().unwrap()], "room:occ");
    drop(b.take()); // SIGKILL
    dead = b_lines;
    let killed = Instant::now();
    eventually("vacated once, by a live instance", || async {
        all(&b, dead) == (2, 2)
    })
    .await;
    let vacated = killed.elapsed();
    println!("occupancy: vacated reported {vacated:?} after the last holder was killed");
    assert!(
        vacated <= OCCUPANCY_WITHIN,
        "vacated {vacated:?} after the kill"
    );
    drop(s2);

    // and a period after it, on a live instance
    let s4 = SseClient::connect(&c.url("/rooms/occ/events?user=s4")).await;
    eventually("occupied a third time", || async {
        all(&b, dead) == (3, 2)
    })
    .await;
    drop(s4);
    eventually("vacated a third time", || async { all(&b, dead) == (3, 3) }).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(all(&b, dead), (3, 3), "a duplicate edge");
    vacated
}

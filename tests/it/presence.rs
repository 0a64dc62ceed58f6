//! Presence (issue 25): members per topic, `livepush.join` / `livepush.leave` with a grace
//! period, coalesced diffs, occupancy hooks; in memory, across hubs on one real Redis, and across
//! `chat` processes killed with SIGKILL; on NATS JetStream the same scenarios (`on_nats_*`,
//! `chat_on_nats_*`).
//!
//! Figures: the tests that measure print them (`cargo test --test it presence:: -- --nocapture`);
//! docs/presence.md records them with this command.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livepush::broker::Occupancy;
use livepush::{Hub, HubBuilder, RouterExt, Topic};
use serde_json::json;

use crate::support::presence::{
    a_killed_instance_leaves_everywhere, changes, churn_is_coalesced, keys,
    occupancy_once_per_period_with_a_kill, presence_event, presence_event_within, presence_of,
    room_events, serve, three_hubs, Survivors,
};
use crate::support::{
    eventually, get_json, Example, NatsServer, RedisServer, Sentinel, SseClient, TestServer,
};

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
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

/// Three hubs on one Redis, each served on its own port.
async fn three_on(redis: &RedisServer, grace: Duration) -> Vec<(Hub, TestServer)> {
    three_hubs(|| Hub::builder().redis(redis.url()).presence_grace(grace)).await
}

/// Three hubs on one NATS server, each served on its own port.
async fn three_on_nats(nats: &NatsServer, grace: Duration) -> Vec<(Hub, TestServer)> {
    three_hubs(|| Hub::builder().nats(nats.url()).presence_grace(grace)).await
}

#[tokio::test]
async fn on_redis_joins_and_leaves_reach_every_instance_and_tabs_count_once() {
    let redis = RedisServer::start();
    let grace = Duration::from_millis(300);
    joins_and_leaves_reach_every_instance(three_on(&redis, grace).await, grace, "Redis").await;
}

#[tokio::test]
async fn on_nats_joins_and_leaves_reach_every_instance_and_tabs_count_once() {
    let nats = NatsServer::start();
    let grace = Duration::from_millis(300);
    joins_and_leaves_reach_every_instance(three_on_nats(&nats, grace).await, grace, "NATS").await;
}

/// Members join and leave on each of three `hubs` (grace period `grace`, on `broker`): every
/// instance's watcher sees each once, within a second at p50; two tabs on two instances are one
/// member with two connections everywhere.
async fn joins_and_leaves_reach_every_instance(
    hubs: Vec<(Hub, TestServer)>,
    grace: Duration,
    broker: &str,
) {
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
        "presence across 3 instances on one {broker}: join p50 {:?} p99 {:?} max {:?}; leave after the grace period p50 {:?} p99 {:?} max {:?} ({} samples each)",
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
    let redis = RedisServer::start();
    a_reconnect_to_another_instance_is_quiet(three_on(&redis, Duration::from_millis(1500)).await)
        .await;
}

#[tokio::test]
async fn on_nats_a_reconnect_to_another_instance_within_the_grace_period_is_quiet() {
    let nats = NatsServer::start();
    let grace = Duration::from_millis(1500);
    a_reconnect_to_another_instance_is_quiet(three_on_nats(&nats, grace).await).await;
}

/// On three `hubs` with a 1.5 s grace period, a member that reconnects to another instance
/// within it shows as no leave and no join.
async fn a_reconnect_to_another_instance_is_quiet(hubs: Vec<(Hub, TestServer)>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_churn_is_coalesced_to_about_ten_events_a_second() {
    let redis = RedisServer::start();
    let hubs = three_on(&redis, Duration::ZERO).await;
    let before = redis_cpu(&redis).await;
    let churned = churn_is_coalesced(hubs).await;
    let busy = redis_cpu(&redis).await - before;
    println!(
        "presence churn: redis-server used {busy:.2} s of CPU, {:.0} µs per subscribe+unsubscribe",
        busy * 1e6 / churned as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_churn_is_coalesced_to_about_ten_events_a_second() {
    let nats = NatsServer::start();
    churn_is_coalesced(three_on_nats(&nats, Duration::ZERO).await).await;
}

/// The CPU seconds `redis-server` has used (`INFO cpu`: user + system, main thread and others).
async fn redis_cpu(redis: &RedisServer) -> f64 {
    info(redis, "cpu")
        .await
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn on_redis_occupancy_is_once_per_period_across_instances() {
    let redis = RedisServer::start();
    occupancy_is_once_per_period_across(|| Hub::builder().redis(redis.url())).await;
}

#[tokio::test]
async fn on_nats_occupancy_is_once_per_period_across_instances() {
    let nats = NatsServer::start();
    occupancy_is_once_per_period_across(|| Hub::builder().nats(nats.url())).await;
}

/// Three hubs made by `builder`, recording their occupancy hooks: streams opened on several
/// instances and closed in another order make one occupied and one vacated per period in all.
async fn occupancy_is_once_per_period_across(builder: impl Fn() -> HubBuilder) {
    let edges = Edges::default();
    let hubs = three_hubs(|| recording(builder(), &edges)).await;
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

/// `chat` on `redis` with a short grace period.
fn chat(redis: &RedisServer) -> Example {
    chat_on(("REDIS_URL", &redis.url()))
}

/// `chat` on `nats` with a short grace period.
fn chat_on_nats(nats: &NatsServer) -> Example {
    chat_on(("NATS_URL", &nats.url()))
}

/// `chat` with the broker variable `broker` and a short grace period.
fn chat_on(broker: (&str, &str)) -> Example {
    Example::start("chat", &[broker, ("LIVEPUSH_PRESENCE_GRACE_MS", "300")])
}

/// The instances listed in Redis, and the per-instance member hashes of the whole deployment.
async fn instance_keys(redis: &RedisServer) -> (Vec<String>, Vec<String>) {
    let mut conn = redis.connection().await;
    let instances: Vec<String> = redis::cmd("ZRANGE")
        .arg("livepush:pr:instances")
        .arg(0)
        .arg(-1)
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
    restarts_leave_no_zombies(|| chat(&redis)).await;
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
    restarts_leave_no_zombies(|| chat_on_nats(&nats)).await;
    eventually("only the two live instances are listed", || async {
        nats.presence_instances().await.len() == 2
    })
    .await;
}

/// [`a_killed_instance_leaves_everywhere`] on `chat` processes made by `start`, then 50
/// instances started and SIGKILLed with a member open: none is left behind.
async fn restarts_leave_no_zombies(start: impl Fn() -> Example) {
    let Survivors {
        a,
        c,
        watcher: _watcher,
    } = a_killed_instance_leaves_everywhere(&start).await;

    // kill and restart, again and again: never a member or an instance left behind
    let cycles = 50;
    let started = Instant::now();
    for i in 0..cycles {
        let d = start();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_kills_in_the_middle_of_joins_and_leaves_leave_exact_counts() {
    let redis = RedisServer::start();
    let survivors = || Hub::builder().redis(redis.url());
    kills_mid_churn_leave_exact_counts(survivors, || chat(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_on_nats_kills_in_the_middle_of_joins_and_leaves_leave_exact_counts() {
    let nats = NatsServer::start();
    let survivors = || Hub::builder().nats(nats.url());
    let run = kills_mid_churn_leave_exact_counts(survivors, || chat_on_nats(&nats));
    if let Err(e) = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
        eprintln!(
            "the presence bucket at the failure:\n{}",
            nats.presence_dump().await
        );
        std::panic::resume_unwind(e);
    }
}

/// `Ok` when every hub lists exactly `members` in `room`, one stream each, and its totals
/// (`presence_count`) agree; else what it answered.
async fn exact_counts(
    hubs: &[(Hub, TestServer)],
    room: &Topic,
    members: &[&str],
) -> Result<(), String> {
    for (hub, _) in hubs {
        let presence = hub.presence(room).await.unwrap();
        let count = hub.presence_count(room).await.unwrap();
        let listed = keys(&serde_json::to_value(&presence).unwrap());
        let n = members.len() as u64;
        if listed != members
            || presence.connections != n
            || (count.count, count.connections) != (n, n)
        {
            return Err(format!("{presence:?}, totals {count:?}"));
        }
    }
    Ok(())
}

/// Opens `target` on `port` as a raw client, waits for the response head (the member's join is
/// recorded before it) and answers the open connection; `None` once the server is gone.
async fn open_stream(port: u16, target: &str) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 512];
    (stream.read(&mut head).await.ok()? > 0).then_some(stream)
}

/// Two hubs made by `survivors` hold members of room `x` (one of them, `shared`, also on the
/// instances that die); then, cycle after cycle, a `chat` process made by `start` gets joins
/// and leaves from 12 raw clients as fast as they go and is SIGKILLed in the middle of them (a
/// kill lands between the two writes of a join or leave when a store has two). At the end the
/// totals (`presence_count`, the store's own counters) match the members list on both hubs,
/// and only the live members are left.
async fn kills_mid_churn_leave_exact_counts(
    survivors: impl Fn() -> HubBuilder,
    start: impl Fn() -> Example,
) {
    let mut hubs = three_hubs(survivors).await;
    hubs.truncate(2);
    let _held = [
        SseClient::connect(&hubs[0].1.url("/rooms/x/events?user=ann&quiet")).await,
        SseClient::connect(&hubs[1].1.url("/rooms/x/events?user=shared&quiet")).await,
    ];
    let cycles = 15;
    let mut opened = 0;
    for cycle in 0..cycles {
        let d = start();
        d.wait_ready().await;
        // a different moment each cycle, so that kills land at different points of an operation
        let kill_at = Instant::now() + Duration::from_millis(200 + 53 * (cycle % 7));
        let mut tasks = Vec::new();
        for t in 0..12 {
            let port = d.port;
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                // each client keeps one stream open while it opens the next: joins of new
                // members (a name seen again within the grace period would be no join), and
                // joins and leaves of the shared one
                let mut open = Vec::new();
                loop {
                    let user = match n % 5 {
                        4 => "shared".to_owned(),
                        _ => format!("u{t}-{n}"),
                    };
                    let target = format!("/rooms/x/events?quiet&user={user}");
                    let Some(stream) = open_stream(port, &target).await else {
                        return n;
                    };
                    // the previous stream closes once this one is open
                    open.push(stream);
                    if open.len() > 1 {
                        open.remove(0);
                    }
                    n += 1;
                }
            }));
        }
        tokio::time::sleep_until(kill_at.into()).await;
        drop(d); // SIGKILL, with joins and leaves in flight
        for task in tasks {
            opened += task.await.unwrap();
        }
    }
    println!("presence: {cycles} instances killed in the middle of {opened} streams opened");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(off) = exact_counts(&hubs, &topic("room:x"), &["ann", "shared"]).await {
        assert!(Instant::now() < deadline, "counts not exact: {off}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn on_redis_instances_that_lost_their_lease_move_their_members_without_a_leave_or_a_double_count(
) {
    let redis = RedisServer::start();
    let hubs = three_on(&redis, Duration::from_millis(300)).await;
    let mut watcher = SseClient::connect(&hubs[2].1.url("/rooms/lost/events")).await;
    presence_event(&mut watcher).await;
    let _ann = SseClient::connect(&hubs[0].1.url("/rooms/lost/events?user=ann&quiet")).await;
    let _bob = SseClient::connect(&hubs[1].1.url("/rooms/lost/events?user=bob&quiet")).await;
    let _bob2 = SseClient::connect(&hubs[0].1.url("/rooms/lost/events?user=bob&quiet")).await;
    let mut joined = Vec::new();
    while joined.len() < 2 {
        joined.extend(changes(&presence_event(&mut watcher).await));
    }
    let (before, _) = instance_keys(&redis).await;
    // every lease gone at once, as after a pause longer than the lease: each instance finds
    // its own gone and moves what it holds to a new identity
    redis.admin_command(&["DEL", "livepush:pr:instances"]).await;
    eventually("three new identities, the old shares gone", || async {
        let (instances, shares) = instance_keys(&redis).await;
        instances.len() == 3 && instances.iter().all(|i| !before.contains(i)) && shares.len() == 2
    })
    .await;
    assert!(
        presence_event_within(&mut watcher, Duration::from_millis(1000))
            .await
            .is_none(),
        "a member that stayed showed as a leave or a join"
    );
    for (hub, _) in &hubs {
        let count = hub.presence_count(&topic("room:lost")).await.unwrap();
        assert_eq!((count.count, count.connections), (2, 3));
    }
}

#[tokio::test]
async fn chat_occupancy_hooks_fire_once_per_period_even_when_the_last_holder_is_killed() {
    let redis = RedisServer::start();
    occupancy_once_per_period_with_a_kill(|| chat(&redis)).await;
}

#[tokio::test]
async fn chat_on_nats_occupancy_hooks_fire_once_per_period_even_when_the_last_holder_is_killed() {
    let nats = NatsServer::start();
    occupancy_once_per_period_with_a_kill(|| chat_on_nats(&nats)).await;
}

#[tokio::test]
async fn on_sentinel_members_join_and_leave_across_instances_and_a_killed_one_leaves() {
    let sentinel = Sentinel::start().await;
    let url = sentinel.url();
    let start = || {
        Example::start(
            "chat",
            &[
                ("REDIS_URL", url.as_str()),
                ("LIVEPUSH_PRESENCE_GRACE_MS", "300"),
            ],
        )
    };
    let Survivors {
        a,
        c,
        watcher: _watcher,
    } = a_killed_instance_leaves_everywhere(start).await;
    for x in [&a, &c] {
        let presence = presence_of(x, "k").await;
        assert_eq!(
            (presence["count"].as_u64(), presence["connections"].as_u64()),
            (Some(1), Some(1))
        );
    }
}

/// `INFO section` of `redis`.
async fn info(redis: &RedisServer, section: &str) -> String {
    match redis.admin_command(&["INFO", section]).await {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO answered {other:?}"),
    }
}

/// Total command calls in `INFO commandstats`, without the measuring ones (`info`, `config`).
async fn command_calls(redis: &RedisServer) -> (u64, Vec<(String, u64)>) {
    let info = info(redis, "commandstats").await;
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

/// Redis command calls per second over `window` (each command inside a script counts as one).
async fn calls_per_second(redis: &RedisServer, window: Duration) -> (f64, Vec<(String, u64)>) {
    let (before, _) = command_calls(redis).await;
    tokio::time::sleep(window).await;
    let (after, by) = command_calls(redis).await;
    ((after - before) as f64 / window.as_secs_f64(), by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_idle_presence_costs_the_same_at_10000_members() {
    let redis = RedisServer::start();
    let hubs = three_on(&redis, Duration::from_millis(300)).await;
    let members = 10_000;
    let rate = async |window| calls_per_second(&redis, window).await;
    let ((empty, _), (per_second, by)) = idle_cost(&hubs, members, rate).await;
    println!(
        "presence idle cost: {per_second:.1} Redis command calls/s with {members} members on one topic, {empty:.1} with none, 3 instances, one presence-event stream each (totals since start: {by:?})"
    );
    // per instance, whatever the number of members: one lease script every 150 ms (4 calls:
    // TIME, ZRANGEBYSCORE, ZADD and the EVALSHA) and one MGET of versions every 100 ms, about
    // 37 a second (a hub reads a topic's versions once per tick however many of its streams
    // watch it, so members that all watch, as in `chat`, cost the same)
    assert!(
        per_second <= empty * 1.1 + 3.0,
        "{per_second} commands/s with {members} members, {empty} with none"
    );
    assert!(per_second < 3.0 * 45.0, "{per_second} commands/s");
}

/// Messages clients sent the NATS server (`/varz` `in_msgs`): each request, publish or KV write
/// is one.
async fn nats_in_msgs(nats: &NatsServer) -> u64 {
    let varz = get_json(&format!("http://127.0.0.1:{}/varz", nats.monitor_port())).await;
    varz["in_msgs"].as_u64().unwrap()
}

/// NATS messages per second over `window`.
async fn nats_messages_per_second(nats: &NatsServer, window: Duration) -> (f64, ()) {
    let before = nats_in_msgs(nats).await;
    tokio::time::sleep(window).await;
    let after = nats_in_msgs(nats).await;
    ((after - before) as f64 / window.as_secs_f64(), ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_idle_presence_costs_the_same_at_10000_members() {
    let nats = NatsServer::start();
    let hubs = three_on_nats(&nats, Duration::from_millis(300)).await;
    let members = 10_000;
    let rate = async |window| nats_messages_per_second(&nats, window).await;
    let started = Instant::now();
    let ((empty, _), (per_second, _)) = idle_cost(&hubs, members, rate).await;
    println!(
        "presence idle cost: {per_second:.1} NATS messages/s from the instances with {members} members on one topic, {empty:.1} with none, 3 instances, one presence-event stream each ({:?} in all)",
        started.elapsed()
    );
    // per instance, whatever the number of members: every 150 ms a lease write and read, the
    // instance list and the next instance's lease (about 27 a second); every 100 ms tick one
    // summary read per watched topic (10 a second)
    assert!(
        per_second <= empty * 1.1 + 3.0,
        "{per_second} messages/s with {members} members, {empty} with none"
    );
    assert!(per_second < 3.0 * 45.0, "{per_second} messages/s");
}

/// What idle presence costs on `hubs`, as `rate` measures it over a window: with one watcher per
/// instance on an empty room, then with `members` quiet members spread over the instances and
/// a watcher per instance of their room. Answers both measures.
async fn idle_cost<T>(
    hubs: &[(Hub, TestServer)],
    members: usize,
    rate: impl AsyncFn(Duration) -> (f64, T),
) -> ((f64, T), (f64, T)) {
    let clients: Vec<livepush::testing::Client> = hubs
        .iter()
        .map(|(hub, _)| {
            let app = axum::Router::new()
                .route("/rooms/{room}/events", axum::routing::get(room_events))
                .livepush(hub);
            livepush::testing::Client::new(app)
        })
        .collect();
    // the same three instances and watchers, nobody in the room yet: the cost of no member
    let mut watchers = Vec::new();
    for client in &clients {
        watchers.push(client.subscribe("/rooms/empty/events").await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty = rate(Duration::from_secs(5)).await;
    watchers.clear();

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
    for client in &clients {
        watchers.push(client.subscribe("/rooms/big/events").await);
    }
    let room = topic("room:big");
    let count = hubs[0].0.presence_count(&room).await.unwrap();
    assert_eq!(
        (count.count, count.connections),
        (members as u64, members as u64)
    );
    // idle: measure what presence costs over ten seconds
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = rate(Duration::from_secs(10)).await;
    drop(streams);
    (empty, loaded)
}

/// A hub on Redis running on a runtime of its own with one thread (a `current_thread` runtime
/// on a thread of the test), which the test can block; its logs are captured.
struct OneWorkerHub {
    url: String,
    block: tokio::sync::mpsc::UnboundedSender<(Duration, tokio::sync::oneshot::Sender<()>)>,
    thread: std::thread::JoinHandle<String>,
}

impl OneWorkerHub {
    fn start(redis_url: String, grace: Duration) -> OneWorkerHub {
        let (block, mut blocks) =
            tokio::sync::mpsc::unbounded_channel::<(Duration, tokio::sync::oneshot::Sender<()>)>();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (logs, _guard) = crate::support::capture_logs("livepush=info");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let hub = Hub::builder()
                    .redis(redis_url)
                    .presence_grace(grace)
                    .build()
                    .unwrap();
                crate::support::wait_until_ready(&hub).await;
                let server = serve(&hub).await;
                url_tx.send(server.url("")).unwrap();
                while let Some((how_long, done)) = blocks.recv().await {
                    // deliberately blocking the runtime's only worker, as a CPU-bound storm
                    // or a blocking handler does
                    tokio::spawn(async move { std::thread::sleep(how_long) })
                        .await
                        .unwrap();
                    let _ = done.send(());
                }
            });
            logs.text()
        });
        let url = url_rx.recv().unwrap();
        OneWorkerHub { url, block, thread }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    /// Blocks the hub's only worker for `how_long`; returns once it is free again.
    async fn block(&self, how_long: Duration) {
        let (done, finished) = tokio::sync::oneshot::channel();
        self.block.send((how_long, done)).unwrap();
        finished.await.unwrap();
    }

    /// Drops the hub and answers its logs.
    fn stop(self) -> String {
        drop(self.block);
        self.thread.join().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_hub_whose_only_worker_is_blocked_for_2_s_keeps_its_lease_and_its_members() {
    let redis = RedisServer::start();
    let grace = Duration::from_millis(300);
    let b = Hub::builder()
        .redis(redis.url())
        .presence_grace(grace)
        .build()
        .unwrap();
    crate::support::wait_until_ready(&b).await;
    let b_server = serve(&b).await;
    let mut watcher = SseClient::connect(&b_server.url("/rooms/busy/events")).await;
    presence_event(&mut watcher).await;
    let _bob = SseClient::connect(&b_server.url("/rooms/busy/events?user=bob&quiet")).await;
    assert_eq!(
        changes(&presence_event(&mut watcher).await),
        [("bob".into(), true)]
    );
    let a = OneWorkerHub::start(redis.url(), grace);
    let _ann = SseClient::connect(&a.url("/rooms/busy/events?user=ann&quiet")).await;
    assert_eq!(
        changes(&presence_event(&mut watcher).await),
        [("ann".into(), true)]
    );
    let (mut before, _) = instance_keys(&redis).await;
    before.sort();
    assert_eq!(before.len(), 2, "both instances hold a lease");

    // far longer than the lease (750 ms): renewed from the store's own thread, it holds
    a.block(Duration::from_secs(2)).await;
    // a lapsed lease would have been reaped by B meanwhile (a leave), and A would record ann
    // again at its next maintenance (a join)
    assert_eq!(
        presence_event_within(&mut watcher, Duration::from_millis(1500)).await,
        None,
        "the second instance saw the member of the blocked one leave or join"
    );
    let (mut after, _) = instance_keys(&redis).await;
    after.sort();
    assert_eq!(
        after, before,
        "an instance took a new identity (lease lost)"
    );
    let count = b.presence_count(&topic("room:busy")).await.unwrap();
    assert_eq!((count.count, count.connections), (2, 2));
    let logs = a.stop();
    assert!(
        !logs.contains("presence lease lost"),
        "the blocked hub lost its lease:\n{logs}"
    );

    // the lease threads end with their hubs: no lease is renewed any more
    drop((watcher, _bob, _ann, b_server, b));
    eventually("every lease runs out once the hubs are dropped", || async {
        let mut conn = redis.connection().await;
        let (seconds, micros): (u64, u64) =
            redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let now_ms = seconds * 1000 + micros / 1000;
        let ahead: u64 = redis::cmd("ZCOUNT")
            .arg("livepush:pr:instances")
            .arg(now_ms)
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .unwrap();
        ahead == 0
    })
    .await;
}

//! The broker conformance suite: what every broker behind the seam promises, written once and run
//! against each deployment the integration binary can start: the in-memory broker (one process;
//! its "instances" are servers of one hub), one Redis, a Redis Sentinel topology, and a NATS
//! JetStream server. (The Redis Cluster runs its own scenarios in `tests/redis_cluster/`, which
//! shares one cluster across them.)
//!
//! Each scenario is a function of a [`Deployment`]; [`conformance!`] makes one `#[tokio::test]`
//! per scenario and deployment, so `cargo test --test it conformance::nats::` runs one broker and
//! `conformance::` `exact_replay` one scenario on all of them.
//!
//! - fan-out: an event published on one instance reaches the subscribers of every instance, with
//!   the id its publisher got;
//! - exact replay across topics, through another instance, by header and by query;
//! - ordering: ids increase across every topic of a subscription while publishers of several
//!   topics run at once, and a publisher running through a reconnect loses and duplicates nothing;
//! - gap → reset: history that no longer reaches back (or an id the broker never issued) gives a
//!   `livepush.reset` first, whose id resumes without a second one;
//! - per-key caps: shared by all instances, 429 with `Retry-After`, given back on disconnect.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use livepush::__private::SubscribeContext;
use livepush::sse::RESET;
use livepush::{EventId, Hub, HubBuilder, RouterExt, Subscription, Topics};
use serde_json::{json, Value};

use crate::support::handlers::{create, events};
use crate::support::{
    http, wait_for_status, NatsServer, RedisServer, Sentinel, SseClient, TestServer, WAIT,
};

/// What a scenario asks of the hubs it starts.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Events retained per topic.
    pub replay: usize,
    /// `max_connections_per_key`.
    pub per_key_cap: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            replay: 1000,
            per_key_cap: None,
        }
    }
}

/// A broker deployment under test: hubs it builds share it as instances of one app do.
pub trait Deployment {
    /// A builder of a hub on this deployment (a new instance).
    fn builder(&self) -> HubBuilder;

    /// Whether two instances are two hubs (a shared broker) or two servers of one hub (the
    /// in-memory broker, which carries events within one process only).
    fn shared_across_processes(&self) -> bool {
        true
    }
}

/// The in-memory broker.
pub struct Memory;

impl Deployment for Memory {
    fn builder(&self) -> HubBuilder {
        Hub::builder()
    }
    fn shared_across_processes(&self) -> bool {
        false
    }
}

/// One Redis.
pub struct OneRedis(pub RedisServer);

impl Deployment for OneRedis {
    fn builder(&self) -> HubBuilder {
        Hub::builder().redis(self.0.url())
    }
}

/// A Redis master, its replica and three sentinels.
pub struct RedisSentinel(pub Sentinel);

impl Deployment for RedisSentinel {
    fn builder(&self) -> HubBuilder {
        Hub::builder().redis(self.0.url())
    }
}

/// One NATS JetStream server.
pub struct Nats(pub NatsServer);

impl Deployment for Nats {
    fn builder(&self) -> HubBuilder {
        Hub::builder().nats(self.0.url())
    }
}

/// One user's stream, capped per user: `x-user: <id>`.
pub async fn my_events(ctx: SubscribeContext, headers: HeaderMap) -> Response {
    let user = headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    ctx.with(Subscription::new(Topics::one(format!("user:{user}"))).cap_key(user))
        .await
}

pub fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/me/events", get(my_events))
        .route("/comments", post(create))
        .livepush(hub)
}

/// `n` instances of an app on `deployment`, each served on a loopback port once ready.
pub async fn instances(
    deployment: &dyn Deployment,
    n: usize,
    settings: Settings,
) -> Vec<(Hub, TestServer)> {
    let build = || {
        let mut builder = deployment
            .builder()
            .replay(settings.replay, Duration::from_secs(600));
        if let Some(cap) = settings.per_key_cap {
            builder = builder.max_connections_per_key(cap);
        }
        builder.build().expect("a hub on the deployment")
    };
    let shared = (!deployment.shared_across_processes()).then(&build);
    let mut out = Vec::new();
    for _ in 0..n {
        let hub = shared.clone().unwrap_or_else(&build);
        let server = TestServer::start(app(&hub)).await;
        wait_for_status(&server.url("/health/ready"), 200).await;
        out.push((hub, server));
    }
    out
}

fn id_of(event: &eventsource_stream::Event) -> u64 {
    event.id.parse().expect("decimal event id")
}

/// Publishes on `hub`, which must take it now (not buffer it), and answers its id.
pub async fn published_now(hub: &Hub, topic: &str, event: &str, data: &Value) -> EventId {
    hub.publish(topic, event, data)
        .await
        .unwrap()
        .id()
        .expect("published now")
}

/// An event published on one instance (by a publishing route and by `Hub::publish`) reaches
/// the subscribers of every instance, with the id its publisher got.
pub async fn fan_out(deployment: &dyn Deployment) {
    let mut instances = instances(deployment, 2, Settings::default()).await;
    let (b, server_b) = instances.pop().unwrap();
    let (a, server_a) = instances.pop().unwrap();
    let mut on_a = SseClient::connect(&server_a.url("/events?topic=comments")).await;
    let mut on_b = SseClient::connect(&server_b.url("/events?topic=comments")).await;

    let response = http()
        .post(server_b.url("/comments"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = published_now(&a, "comments", "created", &json!({"text": "second"})).await;

    for client in [&mut on_a, &mut on_b] {
        let first = client.next().await;
        assert_eq!(first.event, "created");
        assert_eq!(first.data, r#"{"text":"hello"}"#);
        let second = client.next().await;
        assert_eq!(second.data, r#"{"text":"second"}"#);
        assert_eq!(
            id_of(&second),
            id.get(),
            "the id the publisher got is the id every subscriber sees"
        );
        assert!(id_of(&first) < id_of(&second));
    }
    drop(b);
}

/// A client of 24 topics that reconnects through the other instance (by header) and through
/// the same one (by query) gets exactly the events of its topics it missed, in order, and
/// nothing more: events of other topics took ids between them.
pub async fn exact_replay_across_topics(deployment: &dyn Deployment) {
    let mut instances = instances(deployment, 2, Settings::default()).await;
    let (_b, server_b) = instances.pop().unwrap();
    let (a, server_a) = instances.pop().unwrap();
    let topics: Vec<String> = (0..24).map(|n| format!("t.{n}")).collect();
    let query = format!("/events?topic={}", topics.join(","));
    let mut client = SseClient::connect(&server_a.url(&query)).await;
    published_now(&a, "t.0", "e", &json!({"n": 0})).await;
    let last = client.next().await;
    drop(client);

    let mut missed = Vec::new();
    for n in 1..=48 {
        let topic = &topics[n % topics.len()];
        missed.push(published_now(&a, topic, "e", &json!({"n": n})).await.get());
        published_now(&a, "elsewhere", "e", &json!({})).await;
    }

    for (server, how) in [(&server_b, "header"), (&server_a, "query")] {
        let mut again = match how {
            "header" => {
                SseClient::connect_with(&server.url(&query), &[("last-event-id", &last.id)]).await
            }
            _ => SseClient::connect(&server.url(&format!("{query}&lastEventId={}", last.id))).await,
        };
        let mut got = Vec::new();
        for _ in 0..missed.len() {
            let event = again.next().await;
            assert_ne!(
                event.event,
                RESET.as_str(),
                "history reaches back: no reset ({how})"
            );
            got.push(id_of(&event));
        }
        assert_eq!(got, missed, "exactly the missed events, in order ({how})");
        again
            .assert_quiet(Duration::from_millis(300), "nothing more")
            .await;
    }
}

/// Publishers of three topics run at once, on both instances; a subscriber of the three sees
/// every event once, with ids that only increase (one order across topics).
pub async fn ids_order_events_across_topics(deployment: &dyn Deployment) {
    let mut instances = instances(deployment, 2, Settings::default()).await;
    let (b, _server_b) = instances.pop().unwrap();
    let (a, server_a) = instances.pop().unwrap();
    let mut client = SseClient::connect(&server_a.url("/events?topic=o1,o2,o3")).await;
    const EACH: usize = 60;
    let publishers = ["o1", "o2", "o3"]
        .into_iter()
        .enumerate()
        .map(|(n, topic)| {
            let hub = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for k in 0..EACH {
                    ids.push(
                        published_now(&hub, topic, "e", &json!({"k": k}))
                            .await
                            .get(),
                    );
                }
                ids
            })
        });
    let mut published: Vec<u64> = Vec::new();
    for publisher in publishers.collect::<Vec<_>>() {
        published.extend(publisher.await.unwrap());
    }
    published.sort_unstable();
    let mut got = Vec::new();
    while got.len() < published.len() {
        let event = client.next().await;
        assert_ne!(event.event, RESET.as_str(), "nothing was lost");
        got.push(id_of(&event));
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "ids increase across topics: {got:?}"
    );
    assert_eq!(got, published, "every event once");
    client
        .assert_quiet(Duration::from_millis(300), "no duplicate")
        .await;
}

/// A client that moves to the other instance while a publisher keeps going gets the union of
/// everything published, in order, without a duplicate or a reset.
pub async fn a_publisher_running_through_a_reconnect_loses_and_duplicates_nothing(
    deployment: &dyn Deployment,
) {
    let mut instances = instances(deployment, 2, Settings::default()).await;
    let (_b, server_b) = instances.pop().unwrap();
    let (a, server_a) = instances.pop().unwrap();
    let mut first = SseClient::connect(&server_a.url("/events?topic=x,y")).await;

    const TOTAL: usize = 400;
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(TOTAL);
        for n in 0..TOTAL {
            let topic = if n % 3 == 0 { "y" } else { "x" };
            ids.push(
                published_now(&a, topic, "tick", &json!({"n": n}))
                    .await
                    .get(),
            );
            if n % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ids
    });

    let mut received = Vec::new();
    while received.len() < 50 {
        received.push(id_of(&first.next().await));
    }
    let last = received.last().unwrap().to_string();
    drop(first);
    let mut second = SseClient::connect_with(
        &server_b.url("/events?topic=x,y"),
        &[("last-event-id", &last)],
    )
    .await;
    let published = publisher.await.unwrap();
    while received.len() < TOTAL {
        let event = second.next().await;
        assert_ne!(event.event, RESET.as_str());
        received.push(id_of(&event));
    }
    second
        .assert_quiet(Duration::from_millis(300), "no duplicate at the end")
        .await;
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate"
    );
    assert_eq!(
        received, published,
        "the union of both connections is everything published"
    );
}

/// With 10 events retained per topic (at least), a client resuming from before what is retained gets a
/// reset (carrying the id it asked for) and then exactly what is retained; resuming from the
/// reset's id is not reset again; ids the broker never issued are reset; a client that missed
/// nothing is not.
pub async fn a_gap_becomes_a_reset(deployment: &dyn Deployment) {
    let settings = Settings {
        replay: 10,
        per_key_cap: None,
    };
    let mut instances = instances(deployment, 2, settings).await;
    let (_b, server_b) = instances.pop().unwrap();
    let (hub, server) = instances.pop().unwrap();
    let url = server.url("/events?topic=g");
    let _watcher = SseClient::connect(&url).await;
    let first = published_now(&hub, "g", "e", &json!({})).await;
    let mut last = first;
    // far more than retained: Redis trims its streams approximately (`MAXLEN ~`), by whole nodes
    for _ in 0..300 {
        last = published_now(&hub, "g", "e", &json!({})).await;
    }

    for url in [url.clone(), server_b.url("/events?topic=g")] {
        let mut client =
            SseClient::connect_with(&url, &[("last-event-id", &first.to_string())]).await;
        let reset = client.next().await;
        assert_eq!(reset.event, RESET.as_str(), "trimmed past the id");
        let data: Value = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(data["last_event_id"], json!(first.get()), "{data}");
        let mut ids = Vec::new();
        loop {
            let id = id_of(&client.next().await);
            ids.push(id);
            if id == last.get() {
                break;
            }
        }
        assert!(ids.len() >= 10, "at least what is retained: {ids:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // the reset's id is just below what followed it: resuming from it is not reset again
        assert_eq!(id_of(&reset), ids[0] - 1);
        let mut resumed = SseClient::connect_with(&url, &[("last-event-id", &reset.id)]).await;
        let next = resumed.next().await;
        assert_ne!(next.event, RESET.as_str(), "no second reset");
        assert_eq!(id_of(&next), ids[0]);
    }

    // an id this broker never issued (far ahead of its sequence)
    let future = (last.get() + 1_000_000_000).to_string();
    let mut client = SseClient::connect_with(&url, &[("last-event-id", &future)]).await;
    assert_eq!(client.next().await.event, RESET.as_str(), "{future}");
    // a client that missed nothing is not told to reset
    let mut client = SseClient::connect_with(&url, &[("last-event-id", &last.to_string())]).await;
    let next = published_now(&hub, "g", "e", &json!({})).await;
    assert_eq!(id_of(&client.next().await), next.get());
}

/// `max_connections_per_key(2)` holds across instances: the third stream of a key is refused
/// with 429, `Retry-After` and a JSON body; another key is not affected; a slot comes back when
/// a connection goes away.
pub async fn the_per_key_cap_is_shared_and_given_back(deployment: &dyn Deployment) {
    let settings = Settings {
        per_key_cap: Some(2),
        ..Settings::default()
    };
    let mut instances = instances(deployment, 2, settings).await;
    let (_b, server_b) = instances.pop().unwrap();
    let (_a, server_a) = instances.pop().unwrap();
    let user = [("x-user", "7")];

    let first = SseClient::connect_with(&server_a.url("/me/events"), &user).await;
    let _second = SseClient::connect_with(&server_b.url("/me/events"), &user).await;
    let refused = SseClient::request(&server_a.url("/me/events"), &user).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = refused.json().await.unwrap();
    assert!(body.is_object(), "{body}");
    let _other = SseClient::connect_with(&server_b.url("/me/events"), &[("x-user", "8")]).await;

    drop(first); // abrupt: the TCP connection just goes away
    let url = server_b.url("/me/events");
    let deadline = tokio::time::Instant::now() + WAIT;
    let _third = loop {
        let response = SseClient::request(&url, &user).await;
        if response.status() == 200 {
            break SseClient::from_response(response);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        SseClient::request(&url, &user).await.status(),
        429,
        "still capped at 2"
    );
}

/// One `#[tokio::test]` per scenario for the deployment `$start` (an async expression) starts.
macro_rules! conformance {
    ($name:ident, $start:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn fan_out() {
                let deployment = $start;
                super::fan_out(&deployment).await;
            }

            #[tokio::test]
            async fn exact_replay_across_topics() {
                let deployment = $start;
                super::exact_replay_across_topics(&deployment).await;
            }

            #[tokio::test]
            async fn ids_order_events_across_topics() {
                let deployment = $start;
                super::ids_order_events_across_topics(&deployment).await;
            }

            #[tokio::test]
            async fn a_publisher_running_through_a_reconnect_loses_and_duplicates_nothing() {
                let deployment = $start;
                super::a_publisher_running_through_a_reconnect_loses_and_duplicates_nothing(
                    &deployment,
                )
                .await;
            }

            #[tokio::test]
            async fn a_gap_becomes_a_reset() {
                let deployment = $start;
                super::a_gap_becomes_a_reset(&deployment).await;
            }

            #[tokio::test]
            async fn the_per_key_cap_is_shared_and_given_back() {
                let deployment = $start;
                super::the_per_key_cap_is_shared_and_given_back(&deployment).await;
            }
        }
    };
}

conformance!(memory, Memory);
conformance!(redis, OneRedis(RedisServer::start()));
conformance!(sentinel, RedisSentinel(Sentinel::start().await));
conformance!(nats, Nats(NatsServer::start()));

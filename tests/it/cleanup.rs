//! Every way a stream ends gives back its queue, its topic subscriptions and its cap slots:
//! client close, network reset, shutdown, refusals midway, caps; and 10,000 connect/disconnect
//! cycles leave nothing behind (in memory and in Redis).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, RouterExt, Subscription, Topics};
use serde::Deserialize;

use crate::support;
use crate::support::{
    eventually, metric, raw_get, GracefulServer, RedisServer, SseClient, TestServer,
};

#[subscribe_to_events]
async fn events() {}

#[derive(Deserialize)]
struct Key {
    key: String,
}

/// Counted against the per-key cap of `?key=`.
#[subscribe_to_events]
async fn capped(Query(key): Query<Key>) -> Subscription {
    Subscription::new(Topics::one(format!("capped:{}", key.key))).cap_key(key.key)
}

/// Refuses in the handler body, after its extractors ran.
#[subscribe_to_events]
async fn refused() -> Result<Topics, StatusCode> {
    Err(StatusCode::FORBIDDEN)
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/capped", get(capped))
        .route("/refused", get(refused))
        .livepush(hub)
}

/// Waits until the hub holds no connection, subscription, queued byte or topic, and the gauges
/// say the same.
pub(crate) async fn assert_nothing_left(hub: &Hub) {
    eventually("every connection released", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 0 && hub.subscriber_counts().is_empty() }
    })
    .await;
    let text = hub.metrics_text();
    for gauge in [
        "livepush_connections",
        "livepush_subscriptions",
        "livepush_topics",
        "livepush_queued_bytes",
    ] {
        assert_eq!(
            metric(&text, gauge),
            0.0,
            "{gauge} after every stream ended:\n{text}"
        );
    }
}

/// Opens a stream with the raw client and returns it once the answer's head arrived.
async fn open_raw(server_addr: std::net::SocketAddr, target: &str) -> support::RawResponse {
    let response = raw_get(server_addr, target.as_bytes(), &[]).await;
    assert_eq!(response.status, 200, "{}", response.head);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_releases_everything() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut stream = open_raw(server.addr, "/events?topic=a,b").await;
    stream.read_until(b"retry:").await;
    assert_eq!(hub.connection_count(), 1);
    assert_eq!(hub.subscriber_counts().len(), 2);
    hub.publish("a", "e", &1).await.unwrap();
    drop(stream);
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_reset_releases_everything() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let mut stream = open_raw(server.addr, "/events?topic=a").await;
    stream.read_until(b"retry:").await;
    // Events are queued for it while the server has not noticed the reset yet.
    for i in 0..10 {
        hub.publish("a", "e", &i).await.unwrap();
    }
    stream.reset();
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_releases_everything() {
    let hub = Hub::builder().build().unwrap();
    let mut server = GracefulServer::start(app(&hub), &hub).await;
    let mut client = SseClient::connect(&server.url("/events?topic=a")).await;
    assert_eq!(hub.connection_count(), 1);
    server.shutdown();
    assert!(client.ended_within(Duration::from_secs(5)).await);
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_midway_hold_nothing() {
    // The authorize hook allows the first topic and refuses the second: nothing of the first stays.
    let hub = Hub::builder()
        .authorize(|_, topic| async move { topic.as_str() != "secret" })
        .max_connections_per_key(1)
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let refused = SseClient::request(&server.url("/events?topic=open,secret,other"), &[]).await;
    assert_eq!(refused.status(), 403);
    let refused = SseClient::request(&server.url("/refused"), &[]).await;
    assert_eq!(refused.status(), 403);
    let bad = SseClient::request(&server.url("/events?topic=ok,bad%20topic"), &[]).await;
    assert_eq!(bad.status(), 400);
    assert_nothing_left(&hub).await;

    // The per-key cap: the second stream of a key is refused and holds nothing; when the first
    // ends, its slot is free again.
    let first = SseClient::connect(&server.url("/capped?key=k")).await;
    let second = SseClient::request(&server.url("/capped?key=k"), &[]).await;
    assert_eq!(second.status(), 429);
    assert_eq!(hub.connection_count(), 1);
    drop(first);
    assert_nothing_left(&hub).await;
    eventually("the key's slot is given back", || {
        let url = server.url("/capped?key=k");
        async move {
            let response = SseClient::request(&url, &[]).await;
            response.status() == 200
        }
    })
    .await;
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_connection_cap_refuses_without_leaking() {
    let hub = Hub::builder().max_connections(2).build().unwrap();
    let server = TestServer::start(app(&hub)).await;
    let a = SseClient::connect(&server.url("/events?topic=a")).await;
    let b = SseClient::connect(&server.url("/events?topic=b")).await;
    let refused = SseClient::request(&server.url("/events?topic=c"), &[]).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(hub.connection_count(), 2);
    assert_eq!(metric(&hub.metrics_text(), "livepush_connections"), 2.0);
    drop((a, b));
    assert_nothing_left(&hub).await;
    // the freed places can be taken again
    let _c = SseClient::connect(&server.url("/events?topic=c")).await;
    let _d = SseClient::connect(&server.url("/events?topic=d")).await;
}

/// How a cycle ends its connection.
#[derive(Clone, Copy)]
enum Ending {
    /// Reads the answer's head, then closes (FIN).
    CloseAfterHead,
    /// Reads the first frame, then resets the connection (RST).
    ResetAfterFirstFrame,
    /// Sends the request and closes at once, maybe before the server answered.
    CloseBeforeAnswer,
    /// A stream counted against a per-key cap, closed after the head.
    CappedCloseAfterHead,
}

const ENDINGS: [Ending; 4] = [
    Ending::CloseAfterHead,
    Ending::ResetAfterFirstFrame,
    Ending::CloseBeforeAnswer,
    Ending::CappedCloseAfterHead,
];

/// Runs `cycles` connect/disconnect cycles, `concurrency` at a time, while events are published on
/// the same topics; returns how many streams were answered 200.
async fn churn(hub: &Hub, addr: std::net::SocketAddr, cycles: usize, concurrency: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, opened) = (next.clone(), opened.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cycles {
                    return;
                }
                let topic = format!("t{}", i % 64);
                match ENDINGS[i % ENDINGS.len()] {
                    Ending::CloseAfterHead => {
                        let r = raw_get(addr, format!("/events?topic={topic},all").as_bytes(), &[])
                            .await;
                        assert_eq!(r.status, 200, "{}", r.head);
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    Ending::ResetAfterFirstFrame => {
                        let mut r =
                            raw_get(addr, format!("/events?topic={topic}").as_bytes(), &[]).await;
                        assert_eq!(r.status, 200, "{}", r.head);
                        r.read_until(b"retry:").await;
                        opened.fetch_add(1, Ordering::Relaxed);
                        r.reset();
                    }
                    Ending::CloseBeforeAnswer => {
                        use tokio::io::AsyncWriteExt;
                        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                        let request =
                            format!("GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n");
                        s.write_all(request.as_bytes()).await.expect("send");
                    }
                    Ending::CappedCloseAfterHead => {
                        // Ten keys, each far from its cap: a 429 here would mean leaked slots.
                        let r =
                            raw_get(addr, format!("/capped?key=k{}", i % 10).as_bytes(), &[]).await;
                        assert_eq!(r.status, 200, "{}", r.head);
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Publish on the churned topics the whole time: delivery to connections that are going away.
    let publisher = {
        let hub = hub.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while next.load(Ordering::Relaxed) < cycles && n < 1_000_000 {
                let topic = match n % 2 {
                    0 => "all".to_owned(),
                    _ => format!("t{}", n % 64),
                };
                hub.publish(topic, "tick", &n).await.expect("publish");
                n += 1;
                if n % 16 == 15 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    for worker in workers {
        worker.await.expect("worker panicked");
    }
    publisher.await.expect("publisher panicked");
    opened.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    const CYCLES: usize = 10_000;
    // 250 capped cycles per key: a leaked slot per cycle would hit this cap well before the end.
    const KEY_CAP: usize = 100;
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(1))
        .queue_capacity(8)
        .max_connections_per_key(KEY_CAP as u32)
        .build()
        .unwrap();
    let server = TestServer::start(app(&hub)).await;
    let opened = tokio::time::timeout(
        Duration::from_secs(120),
        churn(&hub, server.addr, CYCLES, 50),
    )
    .await
    .expect("10,000 cycles within 120 s");
    assert!(opened >= CYCLES * 3 / 4, "{opened} streams opened");
    assert_nothing_left(&hub).await;
    let text = hub.metrics_text();
    eprintln!(
        "{CYCLES} cycles: {opened} streams answered 200, {} accepted, {} events published, {} delivered",
        metric(&text, "livepush_connections_accepted_total"),
        metric(&text, "livepush_events_published_total"),
        metric(&text, "livepush_events_delivered_total"),
    );
    assert!(
        metric(&text, "livepush_connections_accepted_total") >= opened as f64,
        "{text}"
    );

    // Every slot was given back: a key can take its full cap again, and not one more.
    let full: Vec<_> = futures_util::future::join_all(
        (0..KEY_CAP).map(|_| open_raw(server.addr, "/capped?key=k0")),
    )
    .await;
    let over = raw_get(server.addr, b"/capped?key=k0", &[]).await;
    assert_eq!(over.status, 429, "{}", over.head);
    drop((full, over));
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connect_disconnect_cycles_leave_no_subscription_or_slot() {
    const CYCLES: usize = 2_000;
    let redis = RedisServer::start();
    let hub = Hub::builder()
        .redis(redis.url())
        .heartbeat(Duration::from_secs(1))
        .max_connections_per_key(5_000)
        .build()
        .unwrap();
    eventually("redis ready", || {
        let hub = hub.clone();
        async move { hub.ready().await.is_ok() }
    })
    .await;
    let server = TestServer::start(app(&hub)).await;
    let opened = tokio::time::timeout(
        Duration::from_secs(120),
        churn(&hub, server.addr, CYCLES, 50),
    )
    .await
    .expect("cycles within 120 s");
    assert!(opened >= CYCLES * 3 / 4, "{opened} streams opened");
    assert_nothing_left(&hub).await;

    let mut conn = redis.connection().await;
    eventually("redis has no livepush channel subscribed", || {
        let mut conn = conn.clone();
        async move {
            let channels: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg("livepush:*")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB CHANNELS");
            channels.is_empty()
        }
    })
    .await;
    let numsub: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("livepush:topic:all")
        .arg("livepush:topic:t0")
        .query_async(&mut conn)
        .await
        .expect("PUBSUB NUMSUB");
    assert!(numsub.iter().all(|(_, n)| *n == 0), "{numsub:?}");
    eventually("every cap slot is given back in redis", || {
        let mut conn = conn.clone();
        async move {
            let mut held = 0i64;
            for k in 0..10 {
                let n: i64 = redis::cmd("ZCARD")
                    .arg(format!("livepush:slots:k{k}"))
                    .query_async(&mut conn)
                    .await
                    .expect("ZCARD");
                held += n;
            }
            held == 0
        }
    })
    .await;
}

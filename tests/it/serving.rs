//! `livepush::serve` against clients that misbehave, over real sockets on loopback: half request
//! heads (slow-loris), clients that stop reading, HTTP/2 with and without TLS, admin routes,
//! subscriptions that expire, broker payloads from another producer, and a bounded shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, RouterExt, SlowConsumerPolicy, Subscription, Topics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::support;
use crate::support::{eventually, http, metric, Example, RedisServer, SseClient, WAIT};

#[subscribe_to_events]
async fn events() {}

/// `GET /events?topic=t` made with the macro; `/me/events` takes an expiring bearer token
/// `exp-<unix seconds>` and subscribes to `t` until then.
fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/me/events", get(my_events))
        .livepush(hub)
}

#[subscribe_to_events]
async fn my_events(headers: HeaderMap) -> Result<Subscription, StatusCode> {
    let exp: u64 = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer exp-"))
        .and_then(|v| v.parse().ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    // the token's expiry is the stream's: a token already expired is refused with 401
    Ok(Subscription::new(Topics::one("t")).until_unix(exp))
}

/// A server started with `configure(livepush::serve(..))`, stopped by `stop`.
struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(
        app: Router,
        hub: &Hub,
        configure: impl FnOnce(livepush::serve::Serve) -> livepush::serve::Serve,
    ) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = configure(livepush::serve(listener, app)).with_graceful_shutdown(
            hub.shutdown_on(async move {
                let _ = stopped.await;
            }),
        );
        Served {
            addr,
            stop: Some(stop),
            handle: tokio::spawn(serve.into_future()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

use std::future::IntoFuture;

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Whether the server closed `socket` within `limit` (EOF or reset while reading).
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 or similar before the close
        }
    }
}

/// An SSE request on a socket with a small receive buffer that is never read.
async fn non_reading_stream(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn half_heads_are_closed_after_the_header_timeout_and_streams_are_untouched() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = Served::start(app(&hub), &hub, |s| {
        s.header_read_timeout(Duration::from_secs(1))
    })
    .await;
    let mut stream = SseClient::connect(&server.url("/events?topic=t")).await;
    let mut loris = Vec::new();
    for i in 0..50 {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        // half an HTTP/1.1 head, or half an HTTP/2 preface
        let half: &[u8] = if i % 2 == 0 {
            b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"PRI * HTTP/2.0\r\n"
        };
        socket.write_all(half).await.unwrap();
        loris.push(socket);
    }
    let started = Instant::now();
    for socket in &mut loris {
        assert!(
            closed_within(socket, WAIT).await,
            "a half head held its socket"
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
    // the SSE stream, open much longer than the header timeout, still works
    hub.publish("t", "after", &1).await.unwrap();
    loop {
        let event = stream.next().await;
        if event.event == "after" {
            break;
        }
    }
}

fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `bench_server` with a 1 s write deadline and 10 clients that never read while events flow:
/// every slot, descriptor and queued byte is given back.
async fn stuck_clients_are_freed(replay: &str, policy: &str) {
    let example = Example::start(
        "bench_server",
        &[
            ("LIVEPUSH_REPLAY", replay),
            ("LIVEPUSH_QUEUE_CAPACITY", "16"),
            ("LIVEPUSH_WRITE_TIMEOUT_SECS", "1"),
        ],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", example.port).parse().unwrap();
    let client = http();
    let metrics = || async {
        let text = client
            .get(example.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text
    };
    let fds_before = fds_of(example.pid());
    let mut stuck = Vec::new();
    for _ in 0..10 {
        stuck.push(non_reading_stream(addr, "/events?topic=bench").await);
    }
    eventually("10 streams open", || async {
        metric(&metrics().await, "livepush_connections") == 10.0
    })
    .await;
    assert!(fds_of(example.pid()) >= fds_before + 10);
    let body = serde_json::json!({ "pad": "x".repeat(32 * 1024) });
    let started = Instant::now();
    let mut published = 0;
    // events flow until every stuck client is gone
    loop {
        let text = metrics().await;
        if metric(&text, "livepush_connections") == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{policy}: still connected after 30 s: {text}"
        );
        for _ in 0..5 {
            let response = client
                .post(example.url("/publish"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            published += 1;
        }
    }
    let freed = started.elapsed();
    let text = metrics().await;
    assert_eq!(metric(&text, "livepush_queued_bytes"), 0.0, "{text}");
    if policy == "Disconnect" {
        assert_eq!(
            metric(&text, "livepush_slow_consumer_disconnects_total"),
            10.0,
            "{text}"
        );
    }
    // the server's ends of the ten sockets are closed (the clients still hold theirs)
    eventually("the server's descriptors are given back", || async {
        fds_of(example.pid()) <= fds_before + 1
    })
    .await;
    println!("{policy}: 10 stuck clients freed {freed:?} after the first of {published} events");
    drop(stuck);
}

#[tokio::test]
async fn non_reading_clients_are_freed_under_disconnect() {
    stuck_clients_are_freed("100", "Disconnect").await;
}

#[tokio::test]
async fn non_reading_clients_are_freed_under_notify() {
    stuck_clients_are_freed("0", "Notify").await;
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_drain_deadline_whatever_clients_do() {
    let hub = Hub::builder()
        .slow_consumer(SlowConsumerPolicy::Notify)
        .build()
        .unwrap();
    let mut server = Served::start(app(&hub), &hub, |s| {
        // no write deadline: only the drain deadline can end these connections
        s.write_timeout(None).drain_timeout(Duration::from_secs(1))
    })
    .await;
    let mut stuck = Vec::new();
    for _ in 0..20 {
        stuck.push(non_reading_stream(server.addr, "/events?topic=t").await);
    }
    eventually("20 streams open", || async { hub.connection_count() == 20 }).await;
    let payload = "x".repeat(60 * 1024);
    for _ in 0..200 {
        hub.publish("t", "big", &payload).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let _ = server.stop.take().unwrap().send(());
    let served = tokio::time::timeout(WAIT, &mut server.handle).await;
    // stopped, and by returning `Ok(())`: not a panic of the server task, not an error
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "the server did not stop cleanly within {WAIT:?} of the signal: {served:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for the drain"
    );
    println!("stopped {:?} after the signal", started.elapsed());
    assert_eq!(hub.connection_count(), 0);
}

#[tokio::test]
async fn h2c_serves_streams_with_the_same_headers_and_heartbeats() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = Served::start(app(&hub), &hub, |s| s).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    assert_eq!(health.status(), StatusCode::OK);
    // eight streams on one connection, more than a browser's six per origin over HTTP/1.1
    let mut streams = Vec::new();
    for _ in 0..8 {
        let response = client
            .get(server.url("/events?topic=t"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(
            response.headers()["cache-control"],
            "no-cache, no-transform"
        );
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        streams.push(SseClient::from_response(response));
    }
    eventually("8 streams open", || async { hub.connection_count() == 8 }).await;
    hub.publish("t", "tick", &1).await.unwrap();
    for stream in &mut streams {
        assert_eq!(stream.next().await.event, "tick");
    }
    // heartbeats are comments: eventsource-stream skips them, so read one stream raw over curl
    if curl_has_http2() {
        let output = tokio::process::Command::new("curl")
            .args([
                "-sN",
                "--http2-prior-knowledge",
                "--max-time",
                "3",
                "-o",
                "-",
                "-w",
                "%{http_version}",
            ])
            .arg(server.url("/events?topic=t"))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(": heartbeat"), "{text}");
        assert!(text.ends_with('2'), "curl spoke {text}");
    }
}

fn curl_has_http2() -> bool {
    std::process::Command::new("curl")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"))
}

#[tokio::test]
async fn tls_negotiates_h2_and_serves_streams() {
    let hub = Hub::builder().build().unwrap();
    let (certified, tls) = support::tls::certificate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(livepush::serve::serve_tls(listener, app(&hub), tls).into_future());
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/events?topic=t", addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN chose h2"
    );
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseClient::from_response(response);
    eventually("stream open", || async { hub.connection_count() == 1 }).await;
    hub.publish("t", "tick", &1).await.unwrap();
    assert_eq!(stream.next().await.event, "tick");
    // an HTTP/1.1-only client is served too
    let h1 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", addr)
        .http1_only()
        .build()
        .unwrap();
    let health = h1
        .get(format!("https://localhost:{}/health", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    assert_eq!(health.status(), StatusCode::OK);
    handle.abort();
}

#[tokio::test]
async fn admin_routes_are_only_where_they_are_mounted() {
    let hub = Hub::builder().build().unwrap();
    let public = Served::start(app(&hub), &hub, |s| s).await;
    for path in ["/metrics", "/events/catalog"] {
        let response = http().get(public.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/health", "/health/live", "/health/ready"] {
        let response = http().get(public.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // the same hub's admin routes on a second listener
    let admin = Served::start(hub.admin_routes(), &hub, |s| s).await;
    for path in ["/metrics", "/events/catalog"] {
        let response = http().get(admin.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_stream_ends_with_its_credentials_and_the_expired_token_gets_401() {
    let hub = Hub::builder().build().unwrap();
    let server = Served::start(app(&hub), &hub, |s| s).await;
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = format!("Bearer exp-{}", unix_now + 2);
    let mut stream =
        SseClient::connect_with(&server.url("/me/events"), &[("authorization", &token)]).await;
    hub.publish("t", "before", &1).await.unwrap();
    let before = stream.next().await;
    assert_eq!(before.event, "before");
    let expired = stream.next().await;
    assert_eq!(expired.event, livepush::sse::EXPIRED.as_str());
    assert_eq!(expired.data, r#"{"reason":"expired"}"#);
    // no `id:` field: the client's last event id stays the one of the last real event
    assert_eq!(expired.id, before.id, "{before:?} then {expired:?}");
    assert!(
        stream.ended_within(WAIT).await,
        "the stream ends after the notice"
    );
    let again = SseClient::request(&server.url("/me/events"), &[("authorization", &token)]).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    let anonymous = SseClient::request(&server.url("/me/events"), &[]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(hub.connection_count(), 0);
}

#[tokio::test]
async fn malformed_broker_payloads_never_reach_the_wire_and_count_on_their_hub_only() {
    let redis = RedisServer::start();
    let hub = Hub::builder().redis(redis.url()).build().unwrap();
    // On the same Redis under another prefix: it never reads those channels.
    let other = Hub::builder()
        .redis(redis.url())
        .redis_prefix("other:")
        .build()
        .unwrap();
    let router = app(&hub).merge(hub.admin_routes());
    let server = Served::start(router, &hub, |s| s).await;
    let mut raw = support::raw_get(server.addr, b"/events?topic=t", &[]).await;
    assert_eq!(raw.status, 200);
    let mut conn = redis.connection().await;
    let channel = "livepush:topic:t";
    // The first stream of a hub built a moment ago can answer before Redis confirms the
    // SUBSCRIBE (seen here; the broker's business, not this test's): wait for it.
    eventually("the channel is subscribed", || {
        let mut conn = conn.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 1
        }
    })
    .await;
    let bad: [&[u8]; 5] = [
        b"1\nforged\r\nevent: x\n\n{}",
        b"2\nname\rid: 7\n\n{}",
        b"3\nok\nbad category\n{}",
        b"4\nok",
        b"not a payload at all",
    ];
    for payload in bad {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            receivers, 1,
            "the hub's pub/sub connection receives {payload:?}"
        );
    }
    // then an event of ours, on the same channel after them: everything before it was dropped
    hub.publish("t", "fine", &serde_json::json!({ "ok": true }))
        .await
        .unwrap();
    raw.read_until(b"event: fine").await;
    let body = raw.body_text();
    for forged in ["forged", "event: x", "id: 7", "bad category", "\r"] {
        assert!(
            !body.contains(forged),
            "{forged:?} reached the wire: {body:?}"
        );
    }
    let metrics = http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Counted once each, before the good event that followed them on the same connection.
    assert_eq!(
        metric(&metrics, "livepush_broker_malformed_payloads_total"),
        5.0,
        "{metrics}"
    );
    // Each hub counts what its own broker received: another hub in the same process saw none.
    let other = other.metrics_text();
    assert!(
        other
            .lines()
            .any(|line| line == "livepush_broker_malformed_payloads_total 0"),
        "{other}"
    );
}

/// The example binary with a file limit of 64: clients that hold half heads exhaust its
/// descriptors, and a normal client is served again within the header timeout.
#[tokio::test]
async fn an_example_under_slow_loris_with_a_low_file_limit_serves_again_within_the_timeout() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prlimit missing (util-linux): skipped");
        return;
    }
    let example = Example::start(
        "bench_server",
        &[("LIVEPUSH_HEADER_READ_TIMEOUT_SECS", "2")],
    );
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &example.pid().to_string(), "--nofile=64:64"])
        .status()
        .unwrap();
    assert!(status.success());
    let addr: SocketAddr = format!("127.0.0.1:{}", example.port).parse().unwrap();
    let mut loris = Vec::new();
    for _ in 0..100 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        loris.push(socket);
    }
    // the limit is reached: the server has no descriptor left for a new client right now
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let health = client.get(example.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let served_after = started.elapsed();
    assert!(
        served_after < Duration::from_secs(8),
        "served after {served_after:?}"
    );
    let mut closed = 0;
    for socket in &mut loris {
        if closed_within(socket, WAIT).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "every half head was closed");
    println!("normal client served {served_after:?} after 100 half heads; all closed");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", example.pid()))
        .unwrap()
        .count();
    assert!(fds < 40, "{fds} descriptors still open");
}

/// SIGTERM with 20 clients that stopped reading: the example exits within its drain deadline.
#[tokio::test]
async fn sigterm_with_stuck_clients_exits_within_the_drain_deadline() {
    let mut example = Example::start(
        "bench_server",
        &[
            ("LIVEPUSH_DRAIN_SECS", "2"),
            // no write deadline, so only the drain can end them
            ("LIVEPUSH_WRITE_TIMEOUT_SECS", "0"),
            ("LIVEPUSH_QUEUE_CAPACITY", "1024"),
        ],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", example.port).parse().unwrap();
    let mut stuck = Vec::new();
    for _ in 0..20 {
        stuck.push(non_reading_stream(addr, "/events?topic=bench").await);
    }
    let client = http();
    eventually("20 streams open", || async {
        let metrics = client
            .get(example.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric(&metrics, "livepush_connections") == 20.0
    })
    .await;
    let body = serde_json::json!({ "pad": "x".repeat(60 * 1024) });
    for _ in 0..200 {
        let response = client
            .post(example.url("/publish"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let started = std::time::Instant::now();
    example.terminate();
    let exited = example.wait_exit(Duration::from_secs(15));
    assert!(
        exited.is_some(),
        "still running 15 s after SIGTERM:\n{}",
        example.output()
    );
    let took = started.elapsed();
    println!("exited {took:?} after SIGTERM with 20 stuck clients");
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(stuck);
}

/// A reconnect storm in miniature: 100 clients connect at once, far more than the 4 connections
/// allowed to wait for their first head, then all send their request with a `Last-Event-ID`.
/// Every one is accepted in turn and replays exactly the events after its id, in order.
#[tokio::test]
async fn a_burst_of_resuming_clients_above_the_pending_head_limit_is_all_served() {
    let hub = Hub::builder()
        .replay(64, Duration::from_secs(60))
        .build()
        .unwrap();
    // a long first-head deadline: the clients connect first and send their heads after
    let server = Served::start(app(&hub), &hub, |s| {
        s.max_pending_heads(4)
            .header_read_timeout(Duration::from_secs(600))
    })
    .await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(hub.publish("t", "e", &n).await.unwrap().id().unwrap());
    }
    // every connection first (the kernel completes them; the server accepts 4 at a time) ...
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let socket = TcpStream::connect(server.addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        sockets.push(socket);
    }
    // ... then every request head
    let head = format!(
        "GET /events?topic=t HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: {}\r\n\r\n",
        ids[0]
    );
    for socket in &mut sockets {
        socket.write_all(head.as_bytes()).await.unwrap();
    }
    let last = format!("id: {}\n\n", ids[4]);
    for (i, socket) in sockets.into_iter().enumerate() {
        let mut response = support::raw::RawResponse {
            status: 0,
            head: String::new(),
            body: Vec::new(),
            stream: socket,
        };
        response.read_until(last.as_bytes()).await;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "client {i}: {text:?}");
        let replayed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(replayed, ["2", "3", "4", "5"], "client {i}");
    }
}

/// After the shutdown signal the server accepts nothing more, and connections that were
/// accepted but never sent a head end with the others.
#[tokio::test]
async fn shutdown_stops_accepting_and_ends_connections_that_never_sent_a_head() {
    let hub = Hub::builder().build().unwrap();
    let mut server = Served::start(app(&hub), &hub, |s| {
        s.drain_timeout(Duration::from_secs(1))
            .header_read_timeout(Duration::from_secs(600))
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // a served request after them: the silent ones were accepted before it
    let mut stream = SseClient::connect(&server.url("/events?topic=t")).await;
    hub.publish("t", "before", &1).await.unwrap();
    assert_eq!(stream.next().await.event, "before");
    let _ = server.stop.take().unwrap().send(());
    let served = tokio::time::timeout(WAIT, &mut server.handle).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "the server did not stop: {served:?}"
    );
    for socket in &mut silent {
        assert!(
            closed_within(socket, WAIT).await,
            "a connection without a head outlived the server"
        );
    }
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener still accepts"
    );
}

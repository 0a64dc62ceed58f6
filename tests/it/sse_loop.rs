//! `livepush::serve` answering a connection's first request itself when it is an `EventSource`
//! request (`GET`, HTTP/1.1, `Accept: text/event-stream`; `serve/sse_loop.rs`) answered with an
//! event stream, and handing everything else to hyper: the bytes on the wire, keep-alive and pipelining after such a
//! response, clients that close or stop reading, heads split or too long, HTTP/1.0, shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, RouterExt, Subscription, Topics};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::cleanup::assert_nothing_left;
use crate::support;
use crate::support::{capture_logs, eventually, metric, GracefulServer, TestServer, WAIT};

#[subscribe_to_events]
async fn events() {}

/// Subscribes to `t` for two seconds at most.
#[subscribe_to_events]
async fn expiring() -> Subscription {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Subscription::new(Topics::one("t")).until_unix(now.as_secs() + 2)
}

async fn plain() -> &'static str {
    "hello"
}

fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/expiring", get(expiring))
        .route("/plain", get(plain))
        .livepush(hub)
}

fn hub() -> Hub {
    Hub::builder()
        .replay(100, Duration::from_secs(60))
        .heartbeat(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// What `EventSource` sends.
fn sse_get(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{extra}\r\n"
    )
}

/// One client connection, plain TCP or TLS, read by hand with strict HTTP/1.1 framing.
struct Conn<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }
}

impl Conn<TlsStream<TcpStream>> {
    /// A TLS connection offering the `alpn` protocols (none: no ALPN extension).
    async fn tls(addr: SocketAddr, certified: &rcgen::CertifiedKey, alpn: &[&[u8]]) -> Self {
        Conn {
            stream: support::tls::connect(addr, certified, alpn).await,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing more arrived; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next `n` bytes.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }

    /// The next line, without its CRLF.
    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(at + 2).await;
                return String::from_utf8(line[..at].to_vec()).unwrap();
            }
            assert!(
                self.fill().await,
                "closed before a line: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// A response head: the status line and the header lines.
    async fn head(&mut self) -> Vec<String> {
        let mut lines = vec![self.line().await];
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return lines;
            }
            lines.push(line);
        }
    }

    /// The next chunk of a chunked body, checked byte for byte (`None`: the last chunk).
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.line().await;
        let size = usize::from_str_radix(&size_line, 16)
            .unwrap_or_else(|_| panic!("not a chunk size line: {size_line:?}"));
        let data = self.take(size).await;
        assert_eq!(self.take(2).await, b"\r\n", "a chunk ends with CRLF");
        (size > 0).then_some(data)
    }

    /// Chunks until their data holds `needle`; all of them, joined.
    async fn chunks_until(&mut self, needle: &str) -> String {
        let mut data = String::new();
        while !data.contains(needle) {
            let chunk = self.chunk().await.expect("the stream ended");
            data.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        data
    }

    /// Whether the server closes (end of file, or a reset) with nothing more sent.
    async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            Ok(Ok(_)) | Err(_) => false,
        }
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The head with the `date` header's value taken out (it changes every second).
fn without_date(head: &[String]) -> Vec<String> {
    head.iter()
        .map(|l| {
            if l.starts_with("date: ") {
                "date: <date>".to_owned()
            } else {
                l.clone()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_response_is_the_bytes_hyper_would_send() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    // the same request without `Accept` is served by hyper: the reference
    let mut ours = Conn::connect(server.addr).await;
    ours.send(sse_get("/events?topic=t", "").as_bytes()).await;
    let mut hypers = Conn::connect(server.addr).await;
    hypers
        .send(b"GET /events?topic=t HTTP/1.1\r\nHost: 127.0.0.1\r\nCache-Control: no-cache\r\n\r\n")
        .await;
    let head = ours.head().await;
    let reference = hypers.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    let date = header(&head, "date").expect("a date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    assert_eq!(without_date(&head), without_date(&reference));
    // the stream's first frame (retry:), then an event with its id: on the last line
    let first = ours.chunks_until("retry:").await;
    assert_eq!(first, hypers.chunks_until("retry:").await);
    hub.publish("t", "greeting", &serde_json::json!({"hello": "world"}))
        .await
        .unwrap();
    let event = ours.chunks_until("greeting").await;
    assert_eq!(event, hypers.chunks_until("greeting").await);
    assert!(event.starts_with("event: greeting\n"), "{event:?}");
    assert!(event.ends_with("\n\n"), "{event:?}");
    let last_line = event.trim_end().lines().last().unwrap();
    assert!(last_line.starts_with("id: "), "{event:?}");
    assert!(ours.buf.is_empty(), "nothing but whole chunks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_the_fast_path_then_the_next_request_on_the_same_connection() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    // no topic: livepush's JSON 400
    conn.send(sse_get("/events", "").as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 400 Bad Request");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(header(&head, "connection"), None, "keep-alive");
    let length: usize = header(&head, "content-length").unwrap().parse().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&conn.take(length).await).unwrap();
    assert_eq!(body["error"], "no_topics", "{body}");
    // the same connection: the next request (here again, as an SSE request)
    conn.send(sse_get("/events?topic=t", "").as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    conn.chunks_until("retry:").await;
    hub.publish("t", "second", &1).await.unwrap();
    conn.chunks_until("second").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_are_served_by_hyper_with_keep_alive() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    for _ in 0..3 {
        // no `Accept: text/event-stream`
        conn.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = conn.head().await;
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert_eq!(header(&head, "content-length"), Some("5"));
        assert_eq!(conn.take(5).await, b"hello");
    }
    // a plain route asked for with `Accept: text/event-stream`: hyper writes the answer
    conn.send(sse_get("/plain", "").as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(header(&head, "content-length"), Some("5"));
    assert_eq!(conn.take(5).await, b"hello");
    // an SSE GET on a fresh connection, after a POST with a body: hyper
    let mut conn = Conn::connect(server.addr).await;
    conn.send(
        b"POST /plain HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(conn.head().await[0], "HTTP/1.1 405 Method Not Allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_behind_a_stream_is_answered_when_the_stream_ends() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    let mut both = sse_get("/expiring", "").into_bytes();
    both.extend_from_slice(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.send(&both).await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    conn.chunks_until("retry:").await;
    hub.publish("t", "during", &1).await.unwrap();
    conn.chunks_until("during").await;
    // the subscription expires within 2 s: its notice, the last chunk, then the second answer
    conn.chunks_until("livepush.expired").await;
    assert_eq!(conn.chunk().await, None);
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(conn.take(5).await, b"hello");
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_mid_stream_releases_everything() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/events?topic=a,b", "").as_bytes()).await;
    conn.head().await;
    conn.chunks_until("retry:").await;
    assert_eq!(hub.connection_count(), 1);
    assert_eq!(metric(&hub.metrics_text(), "livepush_connections"), 1.0);
    hub.publish("a", "e", &1).await.unwrap();
    drop(conn);
    assert_nothing_left(&hub).await;
    // and one that sends a FIN only (shutdown of its sending side)
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/events?topic=a", "").as_bytes()).await;
    conn.head().await;
    conn.chunks_until("retry:").await;
    conn.stream.shutdown().await.unwrap();
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/events", "Connection: close\r\n").as_bytes())
        .await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 400 Bad Request");
    assert_eq!(header(&head, "connection"), Some("close"));
    let length: usize = header(&head, "content-length").unwrap().parse().unwrap();
    conn.take(length).await;
    assert!(conn.closed().await, "the server closes after the response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_split_over_several_writes_is_read_whole() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let request = sse_get("/events?topic=t", "");
    let mut conn = Conn::connect(server.addr).await;
    // "P" could start the HTTP/2 preface, and the rest arrives in pieces
    for piece in [
        &request[..1],
        &request[1..20],
        &request[20..45],
        &request[45..],
    ] {
        conn.send(piece.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    conn.chunks_until("retry:").await;
    hub.publish("t", "split", &1).await.unwrap();
    conn.chunks_until("split").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_too_long_or_malformed_for_the_fast_path_get_hypers_answers() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    // 20 KB of cookie: longer than the 8 KiB read here, well within hyper's limit
    let mut conn = Conn::connect(server.addr).await;
    let cookie = format!("Cookie: c={}\r\n", "x".repeat(20_000));
    conn.send(sse_get("/events?topic=t", &cookie).as_bytes())
        .await;
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    conn.chunks_until("retry:").await;
    // more headers than hyper takes: its 431
    let mut conn = Conn::connect(server.addr).await;
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    conn.send(sse_get("/events?topic=t", &many).as_bytes())
        .await;
    assert_eq!(
        conn.head().await[0],
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // a request line hyper refuses: its 400
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/events?topic=a\"b", "").as_bytes())
        .await;
    assert_eq!(conn.head().await[0], "HTTP/1.1 400 Bad Request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_is_served_by_hyper() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut conn = Conn::connect(server.addr).await;
    conn.send(b"GET /events?topic=t HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        .await;
    let head = conn.head().await;
    // hyper answers in HTTP/1.0, with a body delimited by the close
    assert_eq!(head[0], "HTTP/1.0 200 OK");
    assert_eq!(header(&head, "transfer-encoding"), None);
    while !String::from_utf8_lossy(&conn.buf).contains("retry:") {
        assert!(conn.fill().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_fast_path_streams_cleanly() {
    let hub = hub();
    // a drain deadline of an hour: exiting within the test's ceiling proves the streams ended
    // by themselves, with no clock in the check
    let mut server = GracefulServer::start_with(app(&hub), &hub, |serve| {
        serve.drain_timeout(Duration::from_secs(3600))
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut conn = Conn::connect(server.addr).await;
        conn.send(sse_get("/events?topic=t", "").as_bytes()).await;
        assert_eq!(conn.head().await[0], "HTTP/1.1 200 OK");
        conn.chunks_until("retry:").await;
        conns.push(conn);
    }
    server.shutdown();
    for conn in &mut conns {
        // whatever the hub sends at shutdown, then the last chunk, then the close
        while conn.chunk().await.is_some() {}
        assert!(conn.closed().await);
    }
    let handle = std::mem::replace(&mut server.handle, tokio::spawn(async {}));
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the server exits without waiting for its drain deadline")
        .expect("server task");
    assert_nothing_left(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_path_client_that_stops_reading_is_cut_at_the_write_deadline() {
    let hub = hub_for_a_stuck_client();
    let server =
        TestServer::start_with(app(&hub), |s| s.write_timeout(Some(Duration::from_secs(1)))).await;
    let mut stuck = stuck_socket().connect(server.addr).await.unwrap();
    stuck
        .write_all(sse_get("/events?topic=t", "").as_bytes())
        .await
        .unwrap();
    publish_until_cut(&hub).await;
    drop(stuck);
}

/// Over TLS, the write deadline holds too: rustls takes what the socket does not (up to its
/// buffer's limit), and the deadline is the socket's.
// current_thread: the captured logs are this thread's
#[tokio::test(flavor = "current_thread")]
async fn over_tls_a_fast_path_client_that_stops_reading_is_cut_at_the_write_deadline() {
    let (logs, _default) = capture_logs("livepush::serve=trace");
    let hub = hub_for_a_stuck_client();
    let (certified, tls) = support::tls::certificate();
    let server = TestServer::start_tls_with(app(&hub), tls, |s| {
        s.write_timeout(Some(Duration::from_secs(1)))
    })
    .await;
    let tcp = stuck_socket().connect(server.addr).await.unwrap();
    let mut stuck = support::tls::connect_over(tcp, &certified, &[b"http/1.1"]).await;
    stuck
        .write_all(sse_get("/events?topic=t", "").as_bytes())
        .await
        .unwrap();
    stuck.flush().await.unwrap();
    publish_until_cut(&hub).await;
    let fast = "an event stream, answered without hyper";
    assert_eq!(logs.text().matches(fast).count(), 1, "{}", logs.text());
    drop(stuck);
}

fn hub_for_a_stuck_client() -> Hub {
    Hub::builder()
        .queue_capacity(16)
        .heartbeat(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A client socket with a small receive buffer, which fills soon once it stops reading.
fn stuck_socket() -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
}

/// Publishes 32 KiB events to `t` until the hub's one stream, whose client stopped reading, is
/// gone (the server cut it at the write deadline).
async fn publish_until_cut(hub: &Hub) {
    eventually("the stream is open", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 1 }
    })
    .await;
    let pad = "x".repeat(32 * 1024);
    let started = Instant::now();
    while hub.connection_count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still connected after 30 s"
        );
        hub.publish("t", "big", &pad).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_nothing_left(hub).await;
}

/// Over TLS whose client chose `http/1.1` or named no protocol, event streams take the fast path
/// with the bytes hyper writes over TLS, and a later request that is not one goes to hyper with
/// the connection. (`h2` stays hyper's: `tests/it/serving.rs`, `tests/browser.rs`.)
// current_thread: the captured logs are this thread's
#[tokio::test(flavor = "current_thread")]
async fn over_tls_http1_event_streams_take_the_fast_path_and_the_rest_goes_to_hyper() {
    let (logs, _default) = capture_logs("livepush::serve=trace");
    let hub = hub();
    let (certified, tls) = support::tls::certificate();
    let server = TestServer::start_tls_with(app(&hub), tls, |s| s).await;
    let fast = "an event stream, answered without hyper";
    let count = |what: &str| logs.text().matches(what).count();
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let before = count(fast);
        let mut ours = Conn::tls(server.addr, &certified, alpn).await;
        ours.send(sse_get("/expiring", "").as_bytes()).await;
        // the reference: the same request without `Accept`, which hyper serves
        let mut hypers = Conn::tls(server.addr, &certified, alpn).await;
        hypers
            .send(b"GET /expiring HTTP/1.1\r\nHost: 127.0.0.1\r\nCache-Control: no-cache\r\n\r\n")
            .await;
        let head = ours.head().await;
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert_eq!(without_date(&head), without_date(&hypers.head().await));
        let first = ours.chunks_until("retry:").await;
        assert_eq!(first, hypers.chunks_until("retry:").await);
        hub.publish("t", "greeting", &1).await.unwrap();
        let event = ours.chunks_until("greeting").await;
        assert_eq!(event, hypers.chunks_until("greeting").await);
        assert_eq!(count(fast), before + 1, "{}", logs.text());
        // the subscription expires within 2 s: its notice, the last chunk, then on the same
        // connection a request that hyper answers
        ours.chunks_until("livepush.expired").await;
        assert_eq!(ours.chunk().await, None);
        ours.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = ours.head().await;
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert_eq!(header(&head, "content-length"), Some("5"));
        assert_eq!(ours.take(5).await, b"hello");
        assert_eq!(count(fast), before + 1, "{}", logs.text());
    }
    assert_nothing_left(&hub).await;
}

/// Which requests take the fast path, as `livepush::serve` logs it at the trace level.
#[tokio::test(flavor = "current_thread")]
async fn exactly_the_event_stream_requests_take_the_fast_path() {
    let (logs, _default) = capture_logs("livepush::serve=trace");
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let fast = "an event stream, answered without hyper";
    let hypers = "request: hyper's";
    let count = |what: &str| logs.text().matches(what).count();
    let exchange = |request: &'static [u8]| async move {
        let mut conn = Conn::connect(server.addr).await;
        conn.send(request).await;
        conn.head().await
    };
    exchange(b"GET /events?topic=t HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n").await;
    assert_eq!(count(fast), 1, "{}", logs.text());
    // an EventSource request the router refuses (no topic): the refusal is written by hyper
    exchange(b"GET /events HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n").await;
    assert_eq!(count(fast), 1, "{}", logs.text());
    assert_eq!(count(hypers), 1, "{}", logs.text());
    for request in [
        &b"GET /events HTTP/1.1\r\nAccept: */*\r\n\r\n"[..],
        b"GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
        b"HEAD /events HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
        b"GET /events HTTP/1.1\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\n\r\n",
    ] {
        exchange(request).await;
    }
    assert_eq!(count(fast), 1, "{}", logs.text());
    assert_eq!(count(hypers), 5, "{}", logs.text());
    // on one keep-alive connection: event streams stay here, the first other response (a plain
    // route asked for with `Accept: text/event-stream`) goes to hyper with the connection
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/expiring", "").as_bytes()).await;
    conn.head().await;
    conn.chunks_until("livepush.expired").await;
    assert_eq!(conn.chunk().await, None);
    assert_eq!(count(fast), 2, "{}", logs.text());
    for _ in 0..2 {
        conn.send(sse_get("/plain", "").as_bytes()).await;
        conn.head().await;
        assert_eq!(conn.take(5).await, b"hello");
    }
    conn.send(sse_get("/events?topic=t", "").as_bytes()).await;
    assert_eq!(conn.head().await[0], "HTTP/1.1 200 OK");
    assert_eq!(count(fast), 2, "{}", logs.text());
    assert_eq!(count(hypers), 6, "{}", logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_gets_a_408_at_the_header_timeout_then_the_close() {
    let hub = hub();
    let server =
        TestServer::start_with(app(&hub), |s| s.header_read_timeout(Duration::from_secs(1))).await;
    let mut conn = Conn::connect(server.addr).await;
    conn.send(b"GET /events?topic=t HTTP/1.1\r\nAccept: text/event-stream\r\n")
        .await;
    let started = Instant::now();
    let head = conn.head().await;
    assert_eq!(head[0], "HTTP/1.1 408 Request Timeout");
    assert_eq!(header(&head, "content-length"), Some("0"));
    assert!(conn.closed().await);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_idle_after_a_fast_path_response_closes_at_the_header_timeout() {
    let hub = hub();
    let server =
        TestServer::start_with(app(&hub), |s| s.header_read_timeout(Duration::from_secs(1))).await;
    let mut conn = Conn::connect(server.addr).await;
    conn.send(sse_get("/plain", "").as_bytes()).await;
    assert_eq!(conn.head().await[0], "HTTP/1.1 200 OK");
    assert_eq!(conn.take(5).await, b"hello");
    let started = Instant::now();
    // nothing sent: closed without a word
    assert!(conn.closed().await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

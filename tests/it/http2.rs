//! `livepush::serve` over HTTP/2 (h2c, prior knowledge) against clients that misbehave on one
//! connection: a stream that stops reading while the others read, rapid reset (CVE-2023-44487),
//! and a flood of streams. The client is the `h2` crate, which lets a test hold a stream's
//! flow-control window shut and reset streams at will.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream};
use livepush::{subscribe_to_events, Hub, RouterExt};
use tokio::net::TcpStream;

use crate::support::{eventually, TestServer, WAIT};

#[subscribe_to_events]
async fn events() {}

fn app(hub: &Hub) -> Router {
    Router::new().route("/events", get(events)).livepush(hub)
}

/// Replay off: the `Notify` policy, so a stuck stream is never cut by the hub, only by the
/// server's write deadline.
fn hub() -> Hub {
    Hub::builder()
        .heartbeat(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// An h2c connection whose streams get `stream_window` bytes of window each (released only when
/// the test says so) and a connection window large enough for everything the test sends, as a
/// browser's is.
async fn connect(addr: SocketAddr, stream_window: u32) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn sse_request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("http://127.0.0.1{path}"))
        .header("accept", "text/event-stream")
        .body(())
        .unwrap()
}

/// Opens an event stream on `client` and waits for its response head.
async fn open(client: &mut SendRequest<Bytes>, topic: &str) -> RecvStream {
    let mut client = client.clone().ready().await.unwrap();
    let (response, _) = client
        .send_request(sse_request(&format!("/events?topic={topic}")), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body()
}

/// Reads `body` until `needle` arrives, giving the window back as a reading client does.
async fn read_until(body: &mut RecvStream, needle: &str) {
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains(needle) {
        assert!(
            started.elapsed() < WAIT,
            "no {needle:?} within {WAIT:?}: {seen:?}"
        );
        let data = tokio::time::timeout(WAIT, body.data())
            .await
            .expect("data in time")
            .expect("the stream is open")
            .expect("no stream error");
        let _ = body.flow_control().release_capacity(data.len());
        seen.push_str(&String::from_utf8_lossy(&data));
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 4096);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stops_reading_is_reset_and_its_connection_serves_the_others() {
    let hub = hub();
    let server =
        TestServer::start_with(app(&hub), |s| s.write_timeout(Some(Duration::from_secs(1)))).await;
    let mut client = connect(server.addr, 64 * 1024).await;
    let mut stuck = open(&mut client, "stuck").await;
    let mut live = open(&mut client, "live").await;
    read_until(&mut live, "retry:").await;
    // The stuck stream's window (64 KiB) fills; it reads frames but never gives window back,
    // so the server can send it nothing more, while `live` reads everything.
    let pad = "x".repeat(16 * 1024);
    let started = Instant::now();
    let reset = loop {
        assert!(
            started.elapsed() < WAIT * 4,
            "the stuck stream was not reset"
        );
        hub.publish("stuck", "big", &pad).await.unwrap();
        hub.publish("live", "tick", &1).await.unwrap();
        read_until(&mut live, "event: tick").await;
        match tokio::time::timeout(Duration::from_millis(200), stuck.data()).await {
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(Some(Err(error))) => break error,
            Ok(None) => panic!("the stuck stream ended instead of being reset"),
        }
    };
    assert_eq!(reset.reason(), Some(Reason::CANCEL), "{reset}");
    // the same connection still serves its other stream, and a new one
    hub.publish("live", "after", &1).await.unwrap();
    read_until(&mut live, "event: after").await;
    let mut again = open(&mut client, "again").await;
    read_until(&mut again, "retry:").await;
    hub.publish("again", "hello", &1).await.unwrap();
    read_until(&mut again, "event: hello").await;
    // the stuck stream's slot was given back: two streams are open
    eventually("open streams: 2.0", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 2 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_a_goaway_and_leaves_nothing_behind() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut client = connect(server.addr, 64 * 1024).await;
    let mut opened = 0;
    let ended = loop {
        assert!(
            opened < 10_000,
            "10,000 streams opened and reset, and no GOAWAY"
        );
        let ready = match client.clone().ready().await {
            Ok(ready) => ready,
            Err(error) => break error,
        };
        client = ready;
        match client.send_request(sse_request("/events?topic=t"), true) {
            Ok((response, mut stream)) => {
                stream.send_reset(Reason::CANCEL);
                drop(response);
                opened += 1;
            }
            Err(error) => break error,
        }
    };
    assert!(
        ended.is_go_away() || ended.is_io() || ended.reason().is_some(),
        "{ended}"
    );
    // Bounded: h2 sends GOAWAY (ENHANCE_YOUR_CALM, "too_many_resets") once 20 streams wait
    // reset before the server accepted them. The client counts what it had written when it read
    // the GOAWAY (hundreds: its socket buffers); what matters is what reached the app. h2 bounds
    // only the streams reset *before* the server accepted them: one whose RST_STREAM came in a
    // later read than its HEADERS reaches the handler first, and how many do depends on how the
    // frames fall into the server's reads (0 to 21 in 11 runs on 2026-12-05; a bound of 20 failed
    // once in CI). What the test guards is that the flood ends in a GOAWAY (above) having reached
    // the app for a small share of what was sent (64, three times the most seen, or a quarter of
    // what the client sent plus h2's 20), and leaves nothing behind (below).
    let served = crate::support::metric(&hub.metrics_text(), "livepush_connections_accepted_total");
    println!(
        "GOAWAY after {opened} streams opened and reset ({served} reached the handler): {ended}"
    );
    assert!(
        served <= 64.0 && served <= opened as f64 / 4.0 + 20.0,
        "{served} of {opened} reset streams reached the handler"
    );
    // nothing is left of the reset streams, and the server serves a new connection
    eventually("open streams: 0.0", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 0 }
    })
    .await;
    let mut fresh = connect(server.addr, 64 * 1024).await;
    let mut body = open(&mut fresh, "t").await;
    read_until(&mut body, "retry:").await;
    hub.publish("t", "hello", &1).await.unwrap();
    read_until(&mut body, "event: hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_streams_on_one_connection_is_bounded_by_the_concurrency_limit() {
    let hub = hub();
    let server = TestServer::start(app(&hub)).await;
    let mut client = connect(server.addr, 64 * 1024).await;
    // The server's SETTINGS arrive with the handshake and the client honours the limit they
    // give: it queues the requests beyond it.
    let mut waiting = Vec::new();
    for _ in 0..250 {
        let ready = tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await;
        let Ok(Ok(ready)) = ready else { break };
        client = ready;
        let (response, _) = client
            .send_request(sse_request("/events?topic=flood"), true)
            .unwrap();
        waiting.push(tokio::spawn(response));
    }
    // hyper's limit: 200 concurrent streams per connection; the client holds the other 50
    eventually("200 open streams", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 200 }
    })
    .await;
    assert_eq!(waiting.len(), 250);
    drop(waiting);
    drop(client);
    eventually("open streams: 0.0", || {
        let hub = hub.clone();
        async move { hub.connection_count() == 0 }
    })
    .await;
}

//! The SSE client's checks fail where they must: a stream that ends or fails is never quiet,
//! and a failed stream is not a clean end. (The gap checker's own test is in `redis_faults`.)

use std::time::Duration;

use livepush::{Hub, RouterExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::handlers::events;
use crate::support::{SseClient, TestServer, WAIT};

/// An SSE response that stops in the middle of its chunked body: the connection closes
/// without the last chunk, as a crashed server's would. Serves one request.
async fn cut_stream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before its request head ended");
            head.extend_from_slice(&buf[..n]);
        }
        let body = "retry: 1000\n\n";
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        // dropped here: no `0\r\n\r\n`
    });
    format!("http://{addr}/events")
}

/// A stream of a hub that then shuts down (its streams end cleanly).
async fn ended_stream() -> (SseClient, TestServer) {
    let hub = Hub::builder().build().unwrap();
    let app = axum::Router::new()
        .route("/events", axum::routing::get(events))
        .livepush(&hub);
    let server = TestServer::start(app).await;
    let client = SseClient::connect(&server.url("/events?topic=t")).await;
    hub.shutdown();
    (client, server)
}

#[tokio::test]
#[should_panic(expected = "the stream ended instead of staying open")]
async fn a_stream_that_ends_is_not_quiet() {
    let (mut client, _server) = ended_stream().await;
    client.assert_quiet(WAIT, "quiet").await;
}

#[tokio::test]
async fn a_stream_that_ends_cleanly_is_seen_to_end() {
    let (mut client, _server) = ended_stream().await;
    assert!(client.ended_within(WAIT).await);
}

#[tokio::test]
#[should_panic(expected = "the stream failed instead of staying open")]
async fn a_stream_cut_short_is_not_quiet() {
    let mut client = SseClient::connect(&cut_stream().await).await;
    client.assert_quiet(WAIT, "quiet").await;
}

#[tokio::test]
#[should_panic(expected = "the SSE stream failed instead of ending cleanly")]
async fn a_stream_cut_short_is_not_a_clean_end() {
    let mut client = SseClient::connect(&cut_stream().await).await;
    client.ended_within(WAIT).await;
}

#[tokio::test]
#[should_panic(expected = "the SSE stream ended while an event or silence was expected")]
async fn waiting_for_an_event_on_an_ended_stream_fails() {
    let (mut client, _server) = ended_stream().await;
    let _ = client.next_within(Duration::from_secs(60)).await;
}

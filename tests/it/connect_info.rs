//! Handlers served by `livepush::serve` get their client's address as
//! `ConnectInfo<SocketAddr>`, as with `axum::serve(.., app.into_make_service_with_connect_info())`:
//! on connections hyper serves, on the SSE fast path, over h2c and over TLS.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::TestServer;

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    addr.to_string()
}

/// An event stream whose one event is the peer's address (served by the fast path).
async fn peer_stream(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> Response {
    let frame = format!("data: {addr}\n\n");
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter([Ok::<
        _,
        std::io::Error,
    >(
        Bytes::from(frame),
    )])));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
}

fn app() -> Router {
    Router::new()
        .route("/peer", get(peer))
        .route("/peer/stream", get(peer_stream))
}

/// Sends `request` on a fresh connection that closes after the answer; the answer and the
/// client's own address.
async fn exchange(addr: SocketAddr, request: &str) -> (String, SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    (answer, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_get_the_peer_address_on_every_path() {
    let server = TestServer::start(app()).await;
    // hyper's connection
    let (answer, local) = exchange(
        server.addr,
        "GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    // an EventSource request answered with a plain body: routed on the fast path, written by
    // hyper
    let (answer, local) = exchange(
        server.addr,
        "GET /peer HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    // an event stream written by the fast path
    let (answer, local) = exchange(
        server.addr,
        "GET /peer/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains(&format!("data: {local}\n\n")), "{answer}");
    // h2c
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("http://127.0.0.1/peer")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let mut text = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        text.extend_from_slice(&data);
    }
    assert_eq!(String::from_utf8(text).unwrap(), local.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_get_the_peer_address_over_tls() {
    let (certified, tls) = crate::support::tls::certificate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(std::future::IntoFuture::into_future(
        livepush::serve::serve_tls(listener, app(), tls),
    ));
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    for http1_only in [false, true] {
        let mut client = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", addr);
        if http1_only {
            client = client.http1_only();
        }
        let answer = client
            .build()
            .unwrap()
            .get(format!("https://localhost:{}/peer", addr.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let seen: SocketAddr = answer.parse().unwrap();
        // reqwest does not say which local port it used: the loopback address and a port of
        // the client's, not the server's
        assert_eq!(seen.ip(), addr.ip(), "{answer}");
        assert_ne!(seen.port(), addr.port(), "{answer}");
    }
    server.abort();
}

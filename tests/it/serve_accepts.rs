//! `livepush::serve` takes what `axum::serve` takes, as far as it can: a `Router` and
//! `router.into_make_service()`, each served over real HTTP with `ConnectInfo<SocketAddr>` for
//! its handlers. `into_make_service_with_connect_info::<SocketAddr>()` is refused at compile
//! time with a note to pass the `Router` itself (its router cannot be read back out of it, and
//! every request gets `ConnectInfo` anyway); docs/deployment.md says so.

use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    addr.to_string()
}

fn app() -> Router {
    Router::new().route("/peer", get(peer))
}

/// Serves with `serve`, asks `GET /peer` on a fresh connection, and checks the handler saw this
/// connection's address.
async fn handler_sees_its_peer<F>(serve: F)
where
    F: FnOnce(TcpListener) -> livepush::serve::Serve,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener).into_future());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    server.abort();
}

#[tokio::test]
async fn a_router() {
    handler_sees_its_peer(|listener| livepush::serve(listener, app())).await;
}

#[tokio::test]
async fn into_make_service() {
    handler_sees_its_peer(|listener| livepush::serve(listener, app().into_make_service())).await;
}

//! Serving a router that streams events: `axum::serve` with the two settings push needs.

use std::io;
use std::net::SocketAddr;

use axum::routing::IntoMakeService;
use axum::serve::{Listener, Serve};
use axum::Router;
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on `listener`: [`axum::serve()`] with the two settings an SSE server needs.
///
/// - **`TCP_NODELAY` on every accepted socket.** An SSE frame is a few hundred bytes written on
///   its own. With Nagle's algorithm on (the kernel default, and what `axum::serve` leaves), the
///   kernel holds a small write while an earlier one is unacknowledged, and the client delays its
///   ACKs by up to 40 ms: events wait for ACKs instead of going out. Measured in BENCHMARKS.md:
///   p99 publish→deliver latency at 1,000 subscribers and 100 events/s halves with it.
///   Batching is not lost: livepush already joins queued events into one write per socket.
/// - **The router made into a service once** ([`Router::into_make_service`]).
///   `axum::serve(listener, router)` rebuilds the route table for every accepted connection,
///   and a long-lived SSE connection keeps that copy (≈ 4.7 KiB each, measured).
///
/// It returns axum's [`Serve`], so everything axum offers still applies, graceful shutdown
/// included:
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use livepush::{subscribe_to_events, Hub, LivepushRouter};
///
/// #[subscribe_to_events]
/// async fn events() {}
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let hub = Hub::builder().build().expect("valid settings");
///     let app = Router::new().route("/events", get(events)).livepush(&hub);
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     livepush::serve(listener, app)
///         // end every SSE stream on Ctrl-C, then finish the requests in flight
///         .with_graceful_shutdown(hub.shutdown_on(async {
///             let _ = tokio::signal::ctrl_c().await;
///         }))
///         .await
/// }
/// ```
pub fn serve(
    listener: TcpListener,
    app: Router,
) -> Serve<NoDelayListener, IntoMakeService<Router>, Router> {
    axum::serve(NoDelayListener::from(listener), app.into_make_service())
}

/// A [`TcpListener`] that sets `TCP_NODELAY` on every connection it accepts; see [`serve`].
///
/// Use it directly to keep your own `axum::serve` call:
/// `axum::serve(NoDelayListener::from(listener), app.into_make_service())`.
#[derive(Debug)]
pub struct NoDelayListener {
    inner: TcpListener,
}

impl From<TcpListener> for NoDelayListener {
    fn from(inner: TcpListener) -> Self {
        NoDelayListener { inner }
    }
}

impl Listener for NoDelayListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        // `axum::serve` retries accept errors (e.g. out of descriptors) after a pause; this
        // delegates to the same loop so that behaviour is kept.
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        if let Err(error) = stream.set_nodelay(true) {
            // Not fatal: the connection works, only with Nagle's delays.
            tracing::debug!(%error, %addr, "cannot set TCP_NODELAY");
        }
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = NoDelayListener::from(listener);
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (accepted, peer) = listener.accept().await;
        let client = client.await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
        assert_eq!(peer, client.local_addr().unwrap());
        // the kernel default, for contrast: the option really was set by the listener
        assert!(!client.nodelay().unwrap());
    }
}

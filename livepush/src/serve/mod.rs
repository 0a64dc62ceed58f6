//! Serving a router that streams events: HTTP/1.1 and HTTP/2 on one port, with the timeouts and
//! deadlines a server facing the open internet needs.

mod accept;
mod conn;
mod conn_io;
mod io;
mod listen;
mod settings;
mod sse_loop;
mod stream_watch;
#[cfg(feature = "tls")]
mod tls_io;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use accept::BoxFuture;
use io::DeadlineIo;
pub use settings::ServeConfig;
/// rustls, as [`serve_tls`] takes it (`rustls::ServerConfig`, `rustls::pki_types`).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;

/// Serves `app` on `listener`: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port, with
/// the settings an SSE server on the open internet needs ([`ServeConfig`]).
///
/// - **Bounded heads** (slow-loris): a connection must send its first request head within the
///   header-read timeout, and at most [`ServeConfig::max_pending_heads`] connections may be
///   waiting for theirs ([`ServeConfig::max_pending_heads_per_peer`] from one address), so
///   clients that never finish a head cannot hold every descriptor.
/// - **Bounded bodies**: a request body must arrive within [`ServeConfig::body_read_timeout`].
/// - **A write deadline**: a connection whose peer takes no byte for the write timeout is reset,
///   which frees a client that stopped reading, under either slow-consumer policy; on HTTP/2 a
///   stream whose client takes none of its data is reset alone.
/// - **A listen backlog of 4,096** (tokio's `TcpListener::bind` asks for less: 128 measured): after a deploy
///   every client reconnects within about a second, and once the backlog is full new SYNs are
///   dropped and those clients retry after 1 s, then 3 s.
/// - **Idle connections close**; SSE streams are never idle while open.
/// - **Bounded shutdown**: after the signal of [`Serve::with_graceful_shutdown`] the listener
///   closes, every connection is asked to finish (HTTP/2: `GOAWAY`), and what has not finished
///   after the drain timeout is aborted, so the future completes on time.
/// - **`TCP_NODELAY` on every accepted socket.** An SSE frame is a few hundred bytes written on
///   its own. With Nagle's algorithm on (the kernel default, and what `axum::serve` leaves),
///   the kernel holds a small write while an earlier one is unacknowledged, and the client
///   delays its ACKs by up to 40 ms. Measured in `benchmarks/log/analysis-cpu-and-memory.md`: p99 publish→deliver latency at
///   1,000 subscribers and 100 events/s halves with it.
/// - **The router is shared**, not rebuilt per connection, and every request carries its
///   peer's address as `axum::extract::ConnectInfo<SocketAddr>`, as with `axum::serve` and
///   `into_make_service_with_connect_info`.
/// - **An SSE connection holds no HTTP buffers.** On HTTP/1.1 (plain TCP, or TLS whose client
///   did not choose `h2`), a connection whose first request is an `EventSource` request (`GET`,
///   HTTP/1.1, no body, `Accept: text/event-stream`) that the router answers with an event
///   stream is served without hyper, which would keep an 8 KiB read and an 8 KiB write buffer
///   and its connection state for as long as the stream lives: about 3 KiB of memory per idle
///   stream instead of about 17 (`benchmarks/log/2026-12-03-issue17.md`, goal 5; TLS adds
///   rustls' state, `benchmarks/log/2026-12-05-tls-memory.md`). The bytes on the wire are
///   hyper's. Later such requests on the connection are answered the same way; from the first
///   other request or response on (a refusal, a redirect, a page, and always for HTTP/2), hyper
///   serves the connection.
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use livepush::{subscribe_to_events, Hub, RouterExt};
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
///         .drain_timeout(std::time::Duration::from_secs(5))
///         // end every SSE stream on Ctrl-C, then let connections finish for 5 s at most
///         .with_graceful_shutdown(hub.shutdown_on(async {
///             let _ = tokio::signal::ctrl_c().await;
///         }))
///         .await
/// }
/// ```
pub fn serve(listener: TcpListener, app: impl IntoServedRouter) -> Serve {
    Serve {
        listener,
        app: app.into_router(),
        config: ServeConfig::default(),
        signal: None,
        #[cfg(feature = "tls")]
        tls: None,
    }
}

/// Serves `app` over TLS (rustls): ALPN offers `h2` and `http/1.1`, so browsers talk HTTP/2 to
/// an app that has no proxy in front. Everything else is [`serve`]; the TLS handshake counts
/// against the header-read timeout.
///
/// `tls` is your certificate and key; its ALPN list is set to `h2`, `http/1.1` when empty.
///
/// ```no_run
/// use std::sync::Arc;
/// use livepush::serve::rustls::{self, pki_types::{CertificateDer, PrivateKeyDer}};
///
/// # async fn run(app: axum::Router, cert: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> std::io::Result<()> {
/// let tls = rustls::ServerConfig::builder()
///     .with_no_client_auth()
///     .with_single_cert(cert, key)
///     .expect("a valid certificate and key");
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// livepush::serve::serve_tls(listener, app, Arc::new(tls)).await
/// # }
/// ```
#[cfg(feature = "tls")]
pub fn serve_tls(
    listener: TcpListener,
    app: impl IntoServedRouter,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Serve {
    let mut tls = tls;
    if tls.alpn_protocols.is_empty() {
        Arc::make_mut(&mut tls).alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let mut serve = serve(listener, app);
    serve.tls = Some(tls);
    serve
}

/// What [`serve`] serves: a `Router`, or `router.into_make_service()` as `axum::serve` takes it.
///
/// `router.into_make_service_with_connect_info::<SocketAddr>()` is not taken: its router cannot
/// be read back out of it, and it is not needed, because [`serve`] gives every request its
/// peer's address as `ConnectInfo<SocketAddr>` anyway. Pass the `Router` itself.
#[diagnostic::on_unimplemented(
    message = "`livepush::serve` serves a `Router` or `router.into_make_service()`, not `{Self}`",
    note = "for `into_make_service_with_connect_info::<SocketAddr>()`, pass the `Router` itself: \
            `livepush::serve` gives every request `ConnectInfo<SocketAddr>`"
)]
pub trait IntoServedRouter: sealed::Sealed {
    /// The router every connection shares.
    fn into_router(self) -> Router;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for axum::Router {}
    impl Sealed for axum::routing::IntoMakeService<axum::Router> {}
}

impl IntoServedRouter for Router {
    fn into_router(self) -> Router {
        self
    }
}

impl IntoServedRouter for axum::routing::IntoMakeService<Router> {
    fn into_router(mut self) -> Router {
        use futures_util::FutureExt;
        // Its future is a ready clone of the router (no I/O), so it completes on first poll.
        match tower_service::Service::<()>::call(&mut self, ()).now_or_never() {
            Some(Ok(router)) => router,
            Some(Err(never)) => match never {},
            None => unreachable!("IntoMakeService answers at once"),
        }
    }
}

/// A server being set up by [`serve`]; `.await` it to run it.
///
/// Each [`ServeConfig`] setting has a method of the same name.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    signal: Option<BoxFuture<()>>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Replaces every setting (see [`ServeConfig::from_env`]).
    pub fn config(mut self, config: ServeConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`ServeConfig::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_read_timeout = timeout;
        self
    }

    /// See [`ServeConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// See [`ServeConfig::body_read_timeout`].
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.body_read_timeout = timeout;
        self
    }

    /// See [`ServeConfig::max_pending_heads`].
    pub fn max_pending_heads(mut self, max: usize) -> Self {
        self.config.max_pending_heads = max.max(1);
        self
    }

    /// See [`ServeConfig::max_pending_heads_per_peer`].
    pub fn max_pending_heads_per_peer(mut self, max: usize) -> Self {
        self.config.max_pending_heads_per_peer = max.max(1);
        self
    }

    /// See [`ServeConfig::write_timeout`].
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// See [`ServeConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Stops accepting when `signal` completes, then lets connections finish for the drain
    /// timeout at most. Wrap the signal in [`Hub::shutdown_on`](crate::Hub::shutdown_on) so
    /// that open streams end at once.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn run(self) -> std::io::Result<()> {
        let Serve {
            listener,
            app,
            config,
            signal,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        listen::deepen_backlog(&listener);
        let executor = stream_watch::WatchingExecutor {
            write_timeout: config.write_timeout,
        };
        let mut builder = auto::Builder::new(executor);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout);
        let shared = Arc::new(conn::Shared {
            builder,
            http1,
            app,
            config: config.clone(),
            #[cfg(feature = "tls")]
            tls,
        });
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let write_timeout = config.write_timeout;
        let mut start = move |stream: TcpStream, peer: SocketAddr, head| -> BoxFuture<()> {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
            }
            let io = DeadlineIo::new(stream, write_timeout);
            Box::pin(conn::run(io, peer, shared.clone(), head, stopped.clone()))
        };
        // Accepting and reading first heads happen in this task (see accept.rs); `unconstrained`
        // because tokio's cooperative budget would otherwise end a turn after 128 socket
        // operations and send this task to the back of the run queue, behind the stream tasks
        // of a busy fan-out. accept.rs bounds a turn instead.
        let mut acceptor =
            accept::Acceptor::new(config.max_pending_heads, config.max_pending_heads_per_peer);
        tokio::task::unconstrained(std::future::poll_fn(|cx| {
            if signal.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            acceptor.poll_turn(cx, &listener, &mut start, &mut connections)
        }))
        .await;
        acceptor.spawn_pending(&mut connections);
        drop(listener);
        let _ = stop.send(true);
        let open = connections.len();
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                open,
                left = connections.len(),
                drain = ?config.drain_timeout,
                "aborting the connections that did not finish in time"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

impl IntoFuture for Serve {
    type Output = std::io::Result<()>;
    type IntoFuture = BoxFuture<std::io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A [`TcpListener`] for your own `axum::serve` call: it sets `TCP_NODELAY` on every connection
/// and applies a write deadline (10 s by default: a write the peer takes no byte of fails and
/// the connection is reset). [`serve`] does both and more
/// (header-read timeout, HTTP/2, bounded shutdown), which `axum::serve` cannot be told to do.
///
/// `axum::serve(NoDelayListener::from(listener), app.into_make_service())`
#[derive(Debug)]
pub struct NoDelayListener {
    inner: TcpListener,
    write_timeout: Option<Duration>,
}

impl NoDelayListener {
    /// Sets the write deadline of accepted connections (`None`: none).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }
}

impl From<TcpListener> for NoDelayListener {
    fn from(inner: TcpListener) -> Self {
        NoDelayListener {
            inner,
            write_timeout: ServeConfig::default().write_timeout,
        }
    }
}

impl Listener for NoDelayListener {
    type Io = DeadlineIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (DeadlineIo, SocketAddr) {
        // `axum::serve` retries accept errors (e.g. out of descriptors) after a pause; this
        // delegates to the same loop so that behaviour is kept.
        let (stream, addr): (TcpStream, SocketAddr) = Listener::accept(&mut self.inner).await;
        if let Err(error) = stream.set_nodelay(true) {
            // Not fatal: the connection works, only with Nagle's delays.
            tracing::debug!(%error, %addr, "cannot set TCP_NODELAY");
        }
        (DeadlineIo::new(stream, self.write_timeout), addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
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
        assert!(accepted.get_ref().nodelay().unwrap());
        assert_eq!(peer, client.local_addr().unwrap());
        // the kernel default, for contrast: the option really was set by the listener
        assert!(!client.nodelay().unwrap());
    }
}

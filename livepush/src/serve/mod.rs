//! Serving a router that streams events: HTTP/1.1 and HTTP/2 on one port, with the timeouts and
//! deadlines a server facing the open internet needs.

mod accept;
mod conn;
mod io;
mod listen;
mod sse_loop;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{parse_in, ConfigError};

pub use io::DeadlineIo;
pub use listen::{bind, LISTEN_BACKLOG};
/// rustls, as [`serve_tls`] takes it (`rustls::ServerConfig`, `rustls::pki_types`).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Settings of [`serve`]: the limits of a connection, as opposed to the hub's limits of a stream.
///
/// | setting | variable ([`ServeConfig::from_env`]) | default | what it bounds |
/// | --- | --- | --- | --- |
/// | [`header_read_timeout`](Self::header_read_timeout) | `LIVEPUSH_HEADER_READ_TIMEOUT_SECS` | 10 s | from accept to a complete first request head (TLS handshake and HTTP/2 preface included), and on HTTP/1.1 the wait for each later head |
/// | [`idle_timeout`](Self::idle_timeout) | `LIVEPUSH_IDLE_TIMEOUT_SECS` | 60 s | a connection with no request in flight (an open SSE stream is a request in flight) |
/// | [`max_pending_heads`](Self::max_pending_heads) | `LIVEPUSH_MAX_PENDING_HEADS` | 512 | connections accepted that have not sent their first head yet; accepting waits above it |
/// | [`write_timeout`](Self::write_timeout) | `LIVEPUSH_WRITE_TIMEOUT_SECS` | 10 s | a write the peer takes no byte of: the connection is then reset |
/// | [`drain_timeout`](Self::drain_timeout) | `LIVEPUSH_DRAIN_SECS` | 5 s | after the shutdown signal, how long connections may take to finish before they are aborted |
///
/// SSE streams are not affected by the first two: once its head is read, a stream lives until
/// its client, the hub or the write deadline ends it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Longest wait for a request head (default 10 s). The first head of a connection must be
    /// complete this long after the accept, or the connection is closed: a client that sends
    /// half a head (slow-loris) holds a socket for this long at most. On HTTP/1.1 it also
    /// applies to every later head, counted from the end of the previous response, so it
    /// also bounds how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long (default 60 s; HTTP/2
    /// gets a `GOAWAY`). Open SSE streams are requests in flight and never idle.
    pub idle_timeout: Duration,
    /// Most accepted connections that have not completed their first request head (default
    /// 512). Above it the server accepts nothing until one completes or times out, so clients
    /// that never finish a head cannot take every file descriptor of the process.
    pub max_pending_heads: usize,
    /// A write that the peer takes no byte of for this long fails and resets the connection
    /// (default 10 s; `None` waits for ever). This is what frees a client that stopped reading:
    /// its slot, its descriptor, its queue and the kernel's socket buffers.
    pub write_timeout: Option<Duration>,
    /// After the shutdown signal, how long connections may take to send what they hold before
    /// they are aborted (default 5 s), so the process exits on time whatever its clients do.
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_pending_heads: 512,
            write_timeout: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl ServeConfig {
    /// Reads `LIVEPUSH_HEADER_READ_TIMEOUT_SECS` (1–3600), `LIVEPUSH_IDLE_TIMEOUT_SECS`
    /// (1–86400), `LIVEPUSH_MAX_PENDING_HEADS` (1–1048576), `LIVEPUSH_WRITE_TIMEOUT_SECS`
    /// (1–3600, 0 = none) and `LIVEPUSH_DRAIN_SECS` (0–3600) over the defaults; an empty
    /// variable counts as unset.
    ///
    /// ```
    /// let config = livepush::serve::ServeConfig::from_env().expect("valid LIVEPUSH_* variables");
    /// assert!(config.max_pending_heads >= 1);
    /// ```
    pub fn from_env() -> Result<ServeConfig, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ServeConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = ServeConfig::default();
        let secs = |var, min, max, expected| -> Result<Option<Duration>, ConfigError> {
            get(var)
                .map(|v| parse_in(&v, var, min, max, expected).map(Duration::from_secs))
                .transpose()
        };
        if let Some(d) = secs(
            "LIVEPUSH_HEADER_READ_TIMEOUT_SECS",
            1,
            3600,
            "seconds from 1 to 3600",
        )? {
            config.header_read_timeout = d;
        }
        if let Some(d) = secs(
            "LIVEPUSH_IDLE_TIMEOUT_SECS",
            1,
            86_400,
            "seconds from 1 to 86400",
        )? {
            config.idle_timeout = d;
        }
        if let Some(d) = secs(
            "LIVEPUSH_WRITE_TIMEOUT_SECS",
            0,
            3600,
            "seconds from 0 (none) to 3600",
        )? {
            config.write_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = secs("LIVEPUSH_DRAIN_SECS", 0, 3600, "seconds from 0 to 3600")? {
            config.drain_timeout = d;
        }
        if let Some(v) = get("LIVEPUSH_MAX_PENDING_HEADS") {
            config.max_pending_heads = parse_in(
                &v,
                "LIVEPUSH_MAX_PENDING_HEADS",
                1,
                1 << 20,
                "a whole number from 1 to 1048576",
            )? as usize;
        }
        Ok(config)
    }
}

/// Serves `app` on `listener`: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port, with
/// the settings an SSE server on the open internet needs ([`ServeConfig`]).
///
/// - **Bounded heads** (slow-loris): a connection must send its first request head within the
///   header-read timeout, and at most [`ServeConfig::max_pending_heads`] connections may be
///   waiting for theirs, so clients that never finish a head cannot hold every descriptor.
/// - **A write deadline**: a connection whose peer takes no byte for the write timeout is reset
///   ([`DeadlineIo`]), which frees a client that stopped reading, under either slow-consumer
///   policy.
/// - **Idle connections close**; SSE streams are never idle while open.
/// - **Bounded shutdown**: after the signal of [`Serve::with_graceful_shutdown`] the listener
///   closes, every connection is asked to finish (HTTP/2: `GOAWAY`), and what has not finished
///   after the drain timeout is aborted, so the future completes on time.
/// - **`TCP_NODELAY` on every accepted socket.** An SSE frame is a few hundred bytes written on
///   its own. With Nagle's algorithm on (the kernel default, and what `axum::serve` leaves),
///   the kernel holds a small write while an earlier one is unacknowledged, and the client
///   delays its ACKs by up to 40 ms. Measured in BENCHMARKS.md: p99 publish→deliver latency at
///   1,000 subscribers and 100 events/s halves with it.
/// - **The router is shared**, not rebuilt per connection.
/// - **An SSE connection holds no HTTP buffers.** On plain TCP, a connection whose first request
///   is an `EventSource` request (`GET`, HTTP/1.1, no body, `Accept: text/event-stream`) is
///   answered without hyper, which would keep an 8 KiB read and an 8 KiB write buffer and its
///   connection state for as long as the stream lives: about 3 KiB of memory per idle stream
///   instead of about 17 (BENCHMARKS.md, goal 5). The bytes on the wire are hyper's. Later
///   SSE requests on the connection are answered the same way; from the first other request
///   on (and for HTTP/2 and TLS), hyper serves the connection.
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
///     // a listen backlog of 4,096 instead of tokio's 1,024 (see `serve::bind`)
///     let listener = livepush::serve::bind("127.0.0.1:3000").await?;
///     livepush::serve(listener, app)
///         .drain_timeout(std::time::Duration::from_secs(5))
///         // end every SSE stream on Ctrl-C, then let connections finish for 5 s at most
///         .with_graceful_shutdown(hub.shutdown_on(async {
///             let _ = tokio::signal::ctrl_c().await;
///         }))
///         .await
/// }
/// ```
pub fn serve(listener: TcpListener, app: Router) -> Serve {
    Serve {
        listener,
        app,
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
    app: Router,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Serve {
    let mut tls = tls;
    if tls.alpn_protocols.is_empty() {
        Arc::make_mut(&mut tls).alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let mut serve = serve(listener, app);
    serve.tls = Some(tokio_rustls::TlsAcceptor::from(tls));
    serve
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
    tls: Option<tokio_rustls::TlsAcceptor>,
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

    /// See [`ServeConfig::max_pending_heads`].
    pub fn max_pending_heads(mut self, max: usize) -> Self {
        self.config.max_pending_heads = max.max(1);
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
        let mut builder = auto::Builder::new(TokioExecutor::new());
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
        let mut acceptor = accept::Acceptor::new(config.max_pending_heads);
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
/// and applies a write deadline ([`DeadlineIo`], 10 s by default). [`serve`] does both and more
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

    #[test]
    fn reads_the_serve_variables() {
        let vars = [
            ("LIVEPUSH_HEADER_READ_TIMEOUT_SECS", "2"),
            ("LIVEPUSH_IDLE_TIMEOUT_SECS", "3"),
            ("LIVEPUSH_MAX_PENDING_HEADS", "4"),
            ("LIVEPUSH_WRITE_TIMEOUT_SECS", "0"),
            ("LIVEPUSH_DRAIN_SECS", "6"),
        ];
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let c = ServeConfig::from_lookup(lookup).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.max_pending_heads, 4);
        assert_eq!(c.write_timeout, None);
        assert_eq!(c.drain_timeout, Duration::from_secs(6));
        let bad = ServeConfig::from_lookup(|k| {
            (k == "LIVEPUSH_HEADER_READ_TIMEOUT_SECS").then(|| "0".to_owned())
        });
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("LIVEPUSH_HEADER_READ_TIMEOUT_SECS"));
    }
}

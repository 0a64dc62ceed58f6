//! One accepted connection: its head deadline, its idle timer, its part in a shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::conn_io::ConnIo;
use super::io::DeadlineIo;
use super::settings::ServeConfig;
use super::sse_loop::{self, Handoff, ToHyper};
use super::stream_watch::{StreamWatch, WatchingExecutor};
#[cfg(feature = "tls")]
use super::tls_io::TlsIo;

/// What every connection of one server shares.
pub(super) struct Shared {
    /// HTTP/1.1 and HTTP/2, told apart by the HTTP/2 preface: TLS connections that chose `h2`,
    /// and connections that start with the preface.
    pub(super) builder: auto::Builder<WatchingExecutor>,
    /// HTTP/1 only, with the same settings as `builder`'s: connections whose first head
    /// [`sse_loop`] did not serve, and what follows a response it served.
    pub(super) http1: http1::Builder,
    pub(super) app: Router,
    pub(super) config: ServeConfig,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Serves one connection until it ends, times out, or the server's drain ends it.
///
/// `head` is the connection's place among those still reading their first head; it is given
/// back when the first request arrives or the connection ends.
pub(super) async fn run(
    io: DeadlineIo,
    peer: SocketAddr,
    shared: Arc<Shared>,
    head: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + shared.config.header_read_timeout;
    let mut stop = stop;
    // `http2`: the TLS handshake chose `h2` (told here, not by a borrow of `io`, which would
    // keep a copy of it in this future, which every idle stream keeps)
    #[cfg(feature = "tls")]
    let (io, http2) = match &shared.tls {
        // Boxed: the connection's future does not carry the TLS handshake's state.
        Some(tls) => match Box::pin(handshake(tls, io, peer, deadline, &mut stop)).await {
            Some(opened) => opened,
            None => return,
        },
        None => (ConnIo::plain(io), false),
    };
    #[cfg(not(feature = "tls"))]
    let (io, http2) = (ConnIo::plain(io), false);
    let handoff = if http2 {
        Handoff::Hyper(Box::new(ToHyper {
            io,
            peer,
            http2,
            head: Some((head, deadline)),
            answer: None,
        }))
    } else {
        let app = &shared.app;
        sse_loop::serve(io, peer, app, &shared.config, head, deadline, &mut stop).await
    };
    if let Handoff::Hyper(to) = handoff {
        // Boxed: hyper's connection state is not carried by the connections sse_loop keeps.
        Box::pin(serve_hyper(*to, &shared, stop)).await;
    }
}

/// The TLS handshake of `io`, done by `deadline`, and whether it chose HTTP/2 (ALPN `h2`); `None`
/// when it fails, times out or the server stops first.
#[cfg(feature = "tls")]
async fn handshake(
    tls: &Arc<tokio_rustls::rustls::ServerConfig>,
    io: DeadlineIo,
    peer: SocketAddr,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<(ConnIo, bool)> {
    // The handshake runs as a task of its own: this future is driven by the accept task until
    // the first head is read (accept.rs), and a TLS handshake is a millisecond of CPU that a
    // reconnect storm would otherwise pay in that one task, one connection after the other,
    // instead of on every worker of the runtime.
    let mut handshake = Handshake(tokio::spawn(tokio::time::timeout_at(
        deadline,
        TlsIo::accept(tls.clone(), io),
    )));
    let accepted = tokio::select! {
        accepted = &mut handshake.0 => match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, %peer, "TLS handshake task failed");
                return None;
            }
        },
        _ = stop.changed() => return None,
    };
    match accepted {
        Ok(Ok(tls)) => {
            let http2 = tls.alpn_protocol() == Some(b"h2");
            // boxed here, in the handshake's task, so the connection never moves it again
            return Some((ConnIo::tls(Box::new(tls)), http2));
        }
        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "no TLS handshake within the header-read timeout"),
    }
    None
}

/// A TLS handshake's task, aborted if the connection is dropped first (a server's drain).
#[cfg(feature = "tls")]
struct Handshake<T>(tokio::task::JoinHandle<T>);

#[cfg(feature = "tls")]
impl<T> Drop for Handshake<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves a connection with hyper, HTTP/1.1 or HTTP/2 as `http2` says (then, over plain TCP,
/// as its first bytes say); what was read of it already has been given back to its `io`
/// ([`ConnIo::rewind`]).
async fn serve_hyper(to: ToHyper, shared: &Shared, stop: watch::Receiver<bool>) {
    let ToHyper {
        io,
        peer,
        http2,
        head,
        answer,
    } = to;
    let activity = Arc::new(Activity::new());
    let mut service = service(shared, &activity, peer);
    service.answer = answer.map(|answer| Arc::new(Mutex::new(Some(answer))));
    if http2 {
        let conn = shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        drive(conn, activity, peer, shared, head, stop).await
    } else {
        let conn = shared
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        drive(conn, activity, peer, shared, head, stop).await
    }
}

fn service(shared: &Shared, activity: &Arc<Activity>, peer: SocketAddr) -> ConnService {
    ConnService {
        app: shared.app.clone(),
        activity: activity.clone(),
        answer: None,
        body_read_timeout: shared.config.body_read_timeout,
        peer,
    }
}

/// A hyper connection future that can be asked to finish (`auto`'s or `http1`'s).
trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I> Graceful for auto::UpgradeableConnection<'_, I, ConnService, WatchingExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I> Graceful for http1::UpgradeableConnection<I, ConnService>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

async fn drive<C: Graceful>(
    conn: C,
    activity: Arc<Activity>,
    peer: SocketAddr,
    shared: &Shared,
    head: Option<(OwnedSemaphorePermit, Instant)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = pin!(conn);
    let (mut head, deadline) = match head {
        Some((permit, deadline)) => (Some(permit), deadline),
        None => (None, Instant::now()),
    };
    let mut head_deadline = pin!(tokio::time::sleep_until(deadline));
    let idle_timeout = shared.config.idle_timeout;
    let mut idle = pin!(tokio::time::sleep(idle_timeout));
    // A stop sent before this connection got here (while sse_loop served its first request)
    // is seen at once.
    let mut closing = false;
    if *stop.borrow_and_update() {
        closing = true;
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = activity.first_request.notified(), if head.is_some() => head = None,
            () = &mut head_deadline, if head.is_some() => {
                tracing::debug!(%peer, "no request head within the header-read timeout: closed");
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut idle, if head.is_none() && !closing => {
                let now = Instant::now();
                match activity.idle_since() {
                    Some(since) if now >= since + idle_timeout => {
                        tracing::debug!(%peer, "idle connection closed");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(since) => idle.as_mut().reset(since + idle_timeout),
                    None => idle.as_mut().reset(now + idle_timeout),
                }
            }
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when `in_flight` last changed.
    changed_ms: AtomicU64,
    born: Instant,
    started: AtomicBool,
    first_request: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            changed_ms: AtomicU64::new(0),
            born: Instant::now(),
            started: AtomicBool::new(false),
            first_request: Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.changed_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        if !self.started.swap(true, Ordering::Relaxed) {
            self.first_request.notify_one();
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// When the last request in flight ended; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| {
            self.born + std::time::Duration::from_millis(self.changed_ms.load(Ordering::Relaxed))
        })
    }
}

/// One request in flight, until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The router, counting the requests in flight of its connection.
#[derive(Clone)]
struct ConnService {
    app: Router,
    activity: Arc<Activity>,
    /// The response to the connection's first request, given by the router before hyper had
    /// the connection (see `sse_loop::Handoff`); taken by that request.
    answer: Option<Arc<Mutex<Option<Response>>>>,
    body_read_timeout: std::time::Duration,
    /// Given to handlers as `ConnectInfo<SocketAddr>`, as `axum::serve` gives it.
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let answered = self
            .answer
            .as_ref()
            .and_then(|answer| answer.lock().unwrap_or_else(PoisonError::into_inner).take());
        let mut app = self.app.clone();
        let deadline = Instant::now() + self.body_read_timeout;
        let mut request = request;
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let request = request.map(|body| {
            if http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(Deadlined {
                    body,
                    deadline,
                    timer: None,
                })
            }
        });
        Box::pin(async move {
            let response = match answered {
                Some(response) => response,
                None => tower_service::Service::call(&mut app, request).await?,
            };
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                    watch: None,
                    first_poll: true,
                })
            }))
        })
    }
}

/// A request body that must have arrived whole by `deadline` (the body-read timeout after its
/// head): a client that trickles it cannot hold its connection for longer. Past the deadline
/// the body fails, the handler's extractor answers the failure, and hyper closes the
/// connection, since the rest of the body was not read.
struct Deadlined {
    body: Incoming,
    deadline: Instant,
    /// Armed the first time the body waits.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Deadlined {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {}
            ready => return ready.map(|frame| frame.map(|f| f.map_err(std::io::Error::other))),
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive within the body-read timeout",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that holds its request's [`InFlight`] until it is dropped, and on HTTP/2
/// tells its stream's [`StreamWatch`] when it waits for hyper.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
    /// Found on the first poll; `None` on HTTP/1.1 and when no write timeout is set.
    watch: Option<Arc<StreamWatch>>,
    first_poll: bool,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.first_poll {
            this.first_poll = false;
            this.watch = StreamWatch::current();
        }
        let Some(watch) = &this.watch else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        watch.polled();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if frame.is_data() && !this.body.is_end_stream() {
                watch.handed_data();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle SSE connection keeps its task's future for as long as it lives: the states it
    /// goes through before and after its stream (hyper's, the TLS handshake's, the router's
    /// future) are boxed so that they do not make it larger.
    #[tokio::test]
    async fn the_connection_future_is_small() {
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        let shared = Arc::new(Shared {
            builder: hyper_util::server::conn::auto::Builder::new(WatchingExecutor {
                write_timeout: None,
            }),
            http1: hyper::server::conn::http1::Builder::new(),
            app: axum::Router::new(),
            config: ServeConfig::default(),
            #[cfg(feature = "tls")]
            tls: None,
        });
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .acquire_owned()
            .await
            .unwrap();
        let (_stop, stopped) = watch::channel(false);
        let io = DeadlineIo::new(accepted, None);
        let conn = run(io, peer, shared, permit, stopped);
        let size = std::mem::size_of_val(&conn);
        eprintln!("connection future: {size} bytes");
        // 6.1 KiB for the whole task with hyper's `auto` connection before this module
        assert!(size <= 1280, "the connection future is {size} bytes");
    }
}

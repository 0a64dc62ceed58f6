//! One accepted connection: its head deadline, its idle timer, its part in a shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::{DeadlineIo, ServeConfig};

/// What every connection of one server shares.
pub(super) struct Shared {
    pub(super) builder: auto::Builder<TokioExecutor>,
    pub(super) app: Router,
    pub(super) config: ServeConfig,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
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
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.tls {
        let mut stop = stop;
        let accepted = tokio::select! {
            accepted = tokio::time::timeout_at(deadline, acceptor.accept(io)) => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok(Ok(tls)) => drive(TokioIo::new(tls), peer, &shared, head, deadline, stop).await,
            Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "no TLS handshake within the header-read timeout"),
        }
        return;
    }
    drive(TokioIo::new(io), peer, &shared, head, deadline, stop).await;
}

async fn drive<I>(
    io: I,
    peer: SocketAddr,
    shared: &Shared,
    head: OwnedSemaphorePermit,
    deadline: Instant,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = ConnService {
        app: shared.app.clone(),
        activity: activity.clone(),
    };
    let mut conn = pin!(shared.builder.serve_connection_with_upgrades(io, service));
    let mut head = Some(head);
    let mut head_deadline = pin!(tokio::time::sleep_until(deadline));
    let idle_timeout = shared.config.idle_timeout;
    let mut idle = pin!(tokio::time::sleep(idle_timeout));
    let mut closing = false;
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
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let mut app = self.app.clone();
        let request = request.map(Body::new);
        Box::pin(async move {
            let response = tower_service::Service::call(&mut app, request).await?;
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that holds its request's [`InFlight`] until it is dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

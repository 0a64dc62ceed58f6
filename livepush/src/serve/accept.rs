//! The accept loop: accepting connections and reading their first request head in one task, so
//! that a reconnect storm is served ahead of the live writes that keep every other task busy.
//!
//! Why not spawn each connection at once, as the loop did before: under a storm the runtime's
//! queue holds thousands of stream tasks woken by the live fan-out, and a task spawned for a new
//! connection waits behind all of them before it first reads its socket (measured: up to 0.3–1 s
//! on one core at 10,000 subscribers, `benchmarks/log/2026-12-03-issue17.md`, "Goal 3"). Meanwhile its head permit is held,
//! all [`max_pending_heads`](super::ServeConfig::max_pending_heads) permits run out, the loop
//! stops accepting, and the kernel's accept queue fills until SYNs are dropped (clients then
//! retransmit after 1 s, then 3 s). Here a new connection is driven by the accept task itself
//! until its first head is read: the accept task is woken straight by the I/O driver (tokio runs
//! such a wake-up next), its turn accepts everything queued and serves every connection whose
//! head arrived, a resuming client's replay included, and only then is the connection spawned as
//! a task of its own for its live stream. Under TLS the handshake is the one costly step before
//! the head, so it runs as a task of its own (`conn::run_tls`), on whichever worker is free,
//! and the accept task only waits for it.
//!
//! The pending connections are bounded in total (`max_pending_heads`: above it nothing is
//! accepted) and per peer address (`max_pending_heads_per_peer`), so that one address sending
//! half heads cannot take every place and leave the others waiting in the kernel's backlog. A
//! connection from an address that holds its share is parked, unread and taking no place, and
//! takes one when a connection of its address leaves the pending set: a reconnect storm through
//! one address (a load balancer, a NAT, the bench's load generator) is served in turn, none of
//! it closed. Only beyond [`MAX_PARKED`] parked connections (in all, or of one address) is a new
//! one from an address holding its share closed at once. (Closing them at once, as before, lost
//! two thirds of a 10,000-client storm from one address: `benchmarks/log/2026-12-04-issue29.md`.)

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;

/// A connection's future, as the accept loop and the server hold it.
pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Passes over the listener and the pending connections in one turn of the accept task before
/// it yields to the other tasks: a bound on how long one turn can keep the runtime's thread.
const PASSES_PER_TURN: usize = 64;

/// Most connections accepted in one pass (then the pending ones are served before more are
/// accepted).
const ACCEPTS_PER_PASS: usize = 256;

/// Most connections parked (accepted, unread, waiting for their address's share), in all: as
/// many as the listen backlog `livepush::serve` asks the kernel for, where they would wait
/// otherwise.
const MAX_PARKED: usize = 4096;

/// A connection that has not had its first request head read yet, driven by the accept task.
struct Opening {
    /// The connection's future (`conn::run`); taken out when it is handed off.
    conn: Option<BoxFuture<()>>,
    /// Its own one-permit semaphore: `conn::run` holds the only permit until the first head is
    /// read (or the connection ends), so a permit available here means "head read".
    head: Arc<Semaphore>,
    /// Its peer's address, whose count of pending heads it is part of.
    peer: IpAddr,
}

impl Future for Opening {
    /// The peer's address, and `Some(rest)`: the head was read, the rest of the connection is
    /// to be spawned; `None`: the connection ended before (or with) its first request.
    type Output = (IpAddr, Option<BoxFuture<()>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let peer = self.peer;
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready((peer, None));
        };
        if conn.as_mut().poll(cx).is_ready() {
            self.conn = None;
            return Poll::Ready((peer, None));
        }
        if self.head.available_permits() > 0 {
            return Poll::Ready((peer, self.conn.take()));
        }
        Poll::Pending
    }
}

/// The waker the pending connections see. A wake-up that arrives while the accept task is
/// polling them (their own, or the set's "I polled everything, yield now") only asks for one
/// more pass in the same turn; any other wakes the accept task. Without this, the set's yield
/// would put the accept task at the back of the runtime's queue, behind every stream task the
/// fan-out just woke: the wait this module exists to avoid.
#[derive(Default)]
struct TurnWaker {
    task: Mutex<Option<Waker>>,
    polling: AtomicBool,
    again: AtomicBool,
}

impl TurnWaker {
    fn set(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        match &*task {
            Some(current) if current.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }
}

impl Wake for TurnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // `again` first: the accept task reads it after clearing `polling`, so a wake-up that
        // sees `polling` set is never lost.
        self.again.store(true, Ordering::Release);
        if self.polling.load(Ordering::Acquire) {
            return;
        }
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

/// What the accept loop needs to start a connection: its future, given the socket and the
/// connection's head permit.
pub(super) type Start<'a> =
    dyn FnMut(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit) -> BoxFuture<()> + Send + 'a;

/// The accept loop's state between turns.
pub(super) struct Acceptor {
    /// Connections accepted that have not sent (or had read) their first head yet.
    opening: FuturesUnordered<Opening>,
    waker: Arc<TurnWaker>,
    /// After an accept error other than a reset: no accepting until it ends.
    backoff: Option<Pin<Box<Sleep>>>,
    max_pending_heads: usize,
    /// How many of `opening` each peer address holds (no entry: none).
    per_peer: HashMap<IpAddr, usize>,
    max_per_peer: usize,
    /// Connections of addresses that held their share when they came, oldest first.
    parked: HashMap<IpAddr, std::collections::VecDeque<(TcpStream, std::net::SocketAddr)>>,
    parked_total: usize,
}

impl Acceptor {
    pub(super) fn new(max_pending_heads: usize, max_per_peer: usize) -> Self {
        Acceptor {
            opening: FuturesUnordered::new(),
            waker: Arc::new(TurnWaker::default()),
            backoff: None,
            max_pending_heads: max_pending_heads.max(1),
            per_peer: HashMap::new(),
            max_per_peer: max_per_peer.max(1),
            parked: HashMap::new(),
            parked_total: 0,
        }
    }

    /// Takes `stream` among the pending heads, or parks it when its address holds its share
    /// already (closes it when [`MAX_PARKED`] are parked): accepting goes on for the other
    /// addresses, which the total bound alone would let one address lock out.
    fn open(&mut self, stream: TcpStream, peer: std::net::SocketAddr, start: &mut Start<'_>) {
        let held = self.per_peer.entry(peer.ip()).or_default();
        if *held >= self.max_per_peer {
            if self.parked_total >= MAX_PARKED {
                tracing::debug!(%peer, held = *held, "too many pending heads from this address: closed");
                return;
            }
            self.parked_total += 1;
            self.parked
                .entry(peer.ip())
                .or_default()
                .push_back((stream, peer));
            return;
        }
        *held += 1;
        self.start(stream, peer, start);
    }

    /// Puts `stream` among the pending heads (its address's count taken already).
    fn start(&mut self, stream: TcpStream, peer: std::net::SocketAddr, start: &mut Start<'_>) {
        let head = Arc::new(Semaphore::new(1));
        let permit = head
            .clone()
            .try_acquire_owned()
            .expect("a new semaphore has its permit");
        self.opening.push(Opening {
            conn: Some(start(stream, peer, permit)),
            head,
            peer: peer.ip(),
        });
    }

    /// `peer` has one pending head less: its oldest parked connection, if any, takes the place.
    fn opened(&mut self, peer: IpAddr, start: &mut Start<'_>) {
        if let Some(queue) = self.parked.get_mut(&peer) {
            if let Some((stream, addr)) = queue.pop_front() {
                if queue.is_empty() {
                    self.parked.remove(&peer);
                }
                self.parked_total -= 1;
                // the place passes on: `per_peer` stays as it is
                self.start(stream, addr, start);
                return;
            }
        }
        if let Some(held) = self.per_peer.get_mut(&peer) {
            *held -= 1;
            if *held == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Connections accepted and still waiting for their first head.
    #[cfg(test)]
    pub(super) fn pending_heads(&self) -> usize {
        self.opening.len()
    }

    /// One turn: accepts while fewer than `max_pending_heads` connections wait for their first
    /// head, serves the pending ones whose head arrived, and spawns into `connections` those
    /// whose head was read. Always `Pending`: it ends only when its caller stops polling it.
    pub(super) fn poll_turn(
        &mut self,
        cx: &mut Context<'_>,
        listener: &TcpListener,
        start: &mut Start<'_>,
        connections: &mut JoinSet<()>,
    ) -> Poll<()> {
        self.waker.set(cx.waker());
        let set_waker = Waker::from(self.waker.clone());
        let mut set_cx = Context::from_waker(&set_waker);
        for _ in 0..PASSES_PER_TURN {
            if let Some(backoff) = &mut self.backoff {
                if backoff.as_mut().poll(cx).is_pending() {
                    // accepting waits; the pending connections are still served below
                } else {
                    self.backoff = None;
                }
            }
            let mut accepted = 0;
            let mut full = false;
            while self.backoff.is_none() && accepted < ACCEPTS_PER_PASS {
                if self.opening.len() >= self.max_pending_heads {
                    // Above the limit new clients wait in the kernel's backlog, not here.
                    full = true;
                    break;
                }
                match listener.poll_accept(cx) {
                    Poll::Ready(Ok((stream, peer))) => {
                        self.open(stream, peer, start);
                        accepted += 1;
                    }
                    Poll::Ready(Err(error)) => {
                        if let Some(pause) = accept_error(error) {
                            let mut sleep = Box::pin(tokio::time::sleep(pause));
                            // registers the wake-up at its end
                            let _ = sleep.as_mut().poll(cx);
                            self.backoff = Some(sleep);
                        }
                    }
                    Poll::Pending => break,
                }
            }
            let before = self.opening.len();
            self.waker.polling.store(true, Ordering::Release);
            while let Poll::Ready(Some((peer, rest))) = self.opening.poll_next_unpin(&mut set_cx) {
                self.opened(peer, start);
                if let Some(rest) = rest {
                    connections.spawn(rest);
                }
            }
            self.waker.polling.store(false, Ordering::Release);
            while connections.try_join_next().is_some() {}
            let again = self.waker.again.swap(false, Ordering::AcqRel);
            let freed = self.opening.len() < before;
            // Another pass if the set asked for one, if more may be waiting to be accepted
            // (this pass stopped at its bound, or at the limit and connections left it).
            if !(again || accepted == ACCEPTS_PER_PASS || (full && freed)) {
                return Poll::Pending;
            }
        }
        // Out of passes: yield to the other tasks and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Hands the connections still waiting for their first head to `connections` (at shutdown:
    /// they end there, with the others).
    pub(super) fn spawn_pending(self, connections: &mut JoinSet<()>) {
        for opening in self.opening {
            if let Some(conn) = opening.conn {
                connections.spawn(conn);
            }
        }
    }
}

/// After a failed accept: a connection reset before it was accepted is nothing; anything else
/// (out of descriptors, above all) is logged and waited out briefly, as `axum::serve` does.
fn accept_error(error: std::io::Error) -> Option<Duration> {
    use std::io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return None;
    }
    tracing::warn!(%error, "accept error");
    Some(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One turn of `acceptor`, then a pause for the sockets and spawned tasks.
    async fn turn(
        acceptor: &mut Acceptor,
        listener: &TcpListener,
        start: &mut Start<'_>,
        connections: &mut JoinSet<()>,
    ) {
        std::future::poll_fn(|cx| {
            let _ = acceptor.poll_turn(cx, listener, start, connections);
            Poll::Ready(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn never_more_pending_heads_than_the_limit_and_the_rest_follow_as_heads_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(4, 4);
        let mut connections = JoinSet::new();
        // a connection whose "head" is one byte: it gives its permit back once the byte is
        // read, then lives until the client closes
        let mut start = |mut stream: TcpStream, _, head: OwnedSemaphorePermit| -> BoxFuture<()> {
            Box::pin(async move {
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte).await;
                drop(head);
                let _ = stream.read(&mut byte).await;
            })
        };
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        for _ in 0..400 {
            if acceptor.pending_heads() == 4 {
                break;
            }
            turn(&mut acceptor, &listener, &mut start, &mut connections).await;
        }
        // nothing sent yet: the limit holds however many turns run
        for _ in 0..10 {
            turn(&mut acceptor, &listener, &mut start, &mut connections).await;
            assert_eq!(acceptor.pending_heads(), 4);
            assert_eq!(connections.len(), 0);
        }
        for client in &mut clients {
            client.write_all(b"x").await.unwrap();
        }
        for _ in 0..400 {
            if connections.len() == 10 {
                break;
            }
            turn(&mut acceptor, &listener, &mut start, &mut connections).await;
        }
        assert_eq!(connections.len(), 10, "every connection was handed off");
        assert_eq!(acceptor.pending_heads(), 0);
        // the handed-off connections live on in their own tasks, and end with their clients
        drop(clients);
        for _ in 0..400 {
            if connections.is_empty() {
                break;
            }
            turn(&mut acceptor, &listener, &mut start, &mut connections).await;
        }
        assert!(connections.is_empty());
    }
}

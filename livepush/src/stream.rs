//! The body of an SSE response: queued frames, replayed history, heartbeats.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Interval, MissedTickBehavior};

use crate::event::{Envelope, EventId};
use crate::fanout::ConnState;
use crate::frame;
use crate::hub::Hub;
use crate::topic::Topic;

/// Most queued events written in one chunk: enough to save syscalls under load, small enough to
/// keep one chunk well under a socket buffer.
const MAX_BATCH: usize = 64;

/// The name of the event sent when a client missed events that were dropped for it.
pub const LAGGED_EVENT: &str = "livepush.lagged";
/// The name of the event sent when the history no longer reaches back to `Last-Event-ID`.
pub const RESET_EVENT: &str = "livepush.reset";

/// Releases everything one connection holds when its stream ends, whichever way it ends.
pub(crate) struct ConnectionGuard {
    pub(crate) hub: Hub,
    pub(crate) conn: u64,
    pub(crate) topics: Vec<Topic>,
    pub(crate) cap_key: Option<String>,
    pub(crate) registered: bool,
    /// `livepush.connection{conn, topics}`: the parent of everything logged about this stream.
    /// Disabled (no allocation) unless a subscriber wants debug spans of livepush.
    pub(crate) span: tracing::Span,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let inner = &self.hub.inner;
        if self.registered {
            let broker = &inner.broker;
            inner
                .fanout
                .remove(&self.topics, self.conn, |t| broker.unwatch(t));
            inner.metrics.subscriptions.dec_by(self.topics.len() as i64);
        }
        inner.connections.fetch_sub(1, Ordering::Relaxed);
        inner.metrics.connections.dec();
        if let Some(key) = self.cap_key.take() {
            let broker = inner.broker.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { broker.release_slot(&key).await });
                }
                Err(_) => tracing::warn!(
                    key,
                    "no runtime to give back a connection slot; it expires with its TTL"
                ),
            }
        }
        tracing::debug!(parent: &self.span, "stream closed");
    }
}

/// An SSE response body.
pub(crate) struct EventStream {
    /// This connection's queue and flags, shared with the fan-out.
    conn: Arc<ConnState>,
    /// Frames to send before live events: the retry hint, a reset notice, replayed history.
    pending: VecDeque<Bytes>,
    /// After a replay: per topic, the highest id already sent; live events at or below are
    /// duplicates of history.
    seen: Option<HashMap<Topic, EventId>>,
    heartbeat: Interval,
    heartbeat_frame: Bytes,
    wrote_since_tick: bool,
    batch: Vec<Arc<Envelope>>,
    done: bool,
    guard: ConnectionGuard,
}

impl EventStream {
    pub(crate) fn new(
        conn: Arc<ConnState>,
        pending: VecDeque<Bytes>,
        seen: Option<HashMap<Topic, EventId>>,
        guard: ConnectionGuard,
    ) -> Self {
        let config = &guard.hub.inner.config;
        let period = config.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        EventStream {
            conn,
            pending,
            seen,
            heartbeat,
            heartbeat_frame: guard.hub.inner.heartbeat_frame.clone(),
            wrote_since_tick: false,
            batch: Vec::with_capacity(8),
            done: false,
            guard,
        }
    }

    fn is_duplicate(&self, envelope: &Envelope) -> bool {
        match &self.seen {
            Some(seen) => seen
                .get(envelope.topic())
                .is_some_and(|&last| envelope.id() <= last),
            None => false,
        }
    }

    /// Joins the frames of the received batch into one chunk (one write for the socket).
    fn take_batch(&mut self) -> Option<Bytes> {
        // Hot path (one delivery per call under light load): no allocation unless several frames
        // are joined, and the duplicate filter only runs after a replay.
        let dequeued: usize = self.batch.iter().map(|e| e.frame().len()).sum();
        self.guard
            .hub
            .inner
            .metrics
            .queued_bytes
            .dec_by(dequeued as i64);
        if self.seen.is_some() {
            let mut batch = std::mem::take(&mut self.batch);
            batch.retain(|e| !self.is_duplicate(e));
            self.batch = batch;
        }
        let chunk = match self.batch.as_slice() {
            [] => None,
            [one] => Some(one.frame().clone()),
            many => {
                let len = many.iter().map(|e| e.frame().len()).sum();
                let mut buf = BytesMut::with_capacity(len);
                for e in many {
                    buf.extend_from_slice(e.frame());
                }
                Some(buf.freeze())
            }
        };
        self.batch.clear();
        chunk
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Whatever is still queued is never sent: take it out of the queued-bytes gauge.
        let left = self.conn.queue.close_and_clear();
        if left > 0 {
            self.guard
                .hub
                .inner
                .metrics
                .queued_bytes
                .dec_by(left as i64);
        }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(frame) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.conn.cut_off.load(Ordering::Relaxed) {
            // Too slow under the disconnect policy: end the stream so the client reconnects with
            // its Last-Event-ID and replays what it missed.
            tracing::debug!(parent: &this.guard.span, "slow consumer: queue overflowed, stream closed");
            this.done = true;
            return Poll::Ready(None);
        }
        loop {
            match this.conn.queue.poll_take(cx, &mut this.batch, MAX_BATCH) {
                Poll::Ready(0) => {
                    // Closed and empty: the hub is shutting down.
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(_) => {
                    if let Some(chunk) = this.take_batch() {
                        this.wrote_since_tick = true;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    // all duplicates of replayed history: look again
                }
                Poll::Pending => break,
            }
        }
        let missed = this.conn.missed.swap(0, Ordering::Relaxed);
        if missed > 0 {
            tracing::debug!(parent: &this.guard.span, missed, "slow consumer: events dropped");
            this.wrote_since_tick = true;
            let data = format!("{{\"missed\":{missed}}}");
            return Poll::Ready(Some(Ok(Frame::data(frame::notice(
                LAGGED_EVENT,
                data.as_bytes(),
            )))));
        }
        while this.heartbeat.poll_tick(cx).is_ready() {
            if !std::mem::replace(&mut this.wrote_since_tick, false) {
                return Poll::Ready(Some(Ok(Frame::data(this.heartbeat_frame.clone()))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

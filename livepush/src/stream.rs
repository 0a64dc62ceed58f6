//! The body of an SSE response: queued frames, replayed history, heartbeats.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::broker::Broker;
use crate::connections::{Admission, KeySlot, Registration};
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::fanout::Connection;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::position::Position;
use crate::queue::{Taken, MAX_BATCH};
use crate::sse;
use crate::topic::Topic;

/// What one stream holds until it ends. Each part gives back what it took when dropped, in this
/// order: its place among presence watchers, its membership (a leave after the grace period),
/// the fan-out registration, the cap key's slot, then the process connection.
pub(crate) struct Held {
    /// Held only to be dropped.
    pub(crate) _presence: Option<crate::presence::PresenceWatch>,
    /// Held only to be dropped.
    pub(crate) _member: Option<crate::presence::Membership>,
    /// Held only to be dropped.
    pub(crate) _registration: Registration,
    /// Held only to be dropped.
    pub(crate) _slot: Option<KeySlot>,
    pub(crate) admission: Admission,
}

/// The first coalescing window a stream opens when it falls behind (capped by the configured
/// longest window).
const FIRST_WINDOW: Duration = Duration::from_millis(1);

/// Adaptive write coalescing, as [`crate::Config::coalesce`] describes it; the window starts at
/// [`FIRST_WINDOW`].
struct Coalescer {
    /// The longest window; zero turns coalescing off.
    max: Duration,
    /// The current window; zero while the stream keeps up.
    window: Duration,
    /// When events were last handed to the socket (kept only while a window is open).
    last_write: Option<Instant>,
    /// Wakes the stream at the end of a window; made on first use.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the stream is holding events back until the window ends.
    held: bool,
}

impl Coalescer {
    fn new(max: Duration) -> Self {
        Coalescer {
            max,
            window: Duration::ZERO,
            last_write: None,
            timer: None,
            held: false,
        }
    }

    /// Whether to hold queued events back; if so, the timer (or, once the window has ended, an
    /// immediate wake-up) brings the stream back.
    fn hold(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(until) = self.last_write.map(|at| at + self.window) else {
            return false;
        };
        if Instant::now() >= until {
            if std::mem::replace(&mut self.held, false) {
                // The window ended while holding: take one more turn at the back of the run
                // queue before writing, behind the streams that were already waiting. Without
                // this the timer's wake-up lets a held stream cut ahead of them, and under load
                // held streams then write smaller batches more often (BENCHMARKS.md, N = 10,000).
                cx.waker().wake_by_ref();
                return true;
            }
            return false;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if timer.deadline() != until {
            timer.as_mut().reset(until);
        }
        self.held = timer.as_mut().poll(cx).is_pending();
        self.held
    }

    /// After a write of `events` queued events: widen the window if the stream is behind, close
    /// it if it keeps up. The clock is read only while a window is open.
    fn wrote(&mut self, events: usize) {
        self.held = false;
        if events > 1 && !self.max.is_zero() {
            self.window = (self.window * 2).clamp(FIRST_WINDOW.min(self.max), self.max);
            self.last_write = Some(Instant::now());
        } else {
            self.window = Duration::ZERO;
            self.last_write = None;
        }
    }
}

/// A connection's position in the partitions of its topics, and the broker that places them.
struct Positions {
    position: Position,
    broker: Arc<dyn Broker>,
}

/// An SSE response body.
pub(crate) struct EventStream {
    /// This connection's queue and flags, shared with the fan-out.
    conn: Arc<Connection>,
    /// Frames to send before live events: the retry hint, a reset notice, replayed history.
    pending: VecDeque<Bytes>,
    /// After a replay: per topic, the highest id already sent; live events at or below are
    /// duplicates of history.
    seen: Option<HashMap<Topic, EventId>>,
    heartbeat: Interval,
    heartbeat_frame: Bytes,
    wrote_since_tick: bool,
    batch: VecDeque<Arc<Envelope>>,
    coalescer: Coalescer,
    /// When the subscription's credentials expire ([`crate::Subscription::until`]).
    expiry: Option<Pin<Box<Sleep>>>,
    /// The expiry notice was sent: the stream ends at the next poll.
    expired: bool,
    /// A partitioned broker and topics in several partitions: each frame's `id:` line is this
    /// connection's position (broker/partitioned.rs), written here per connection.
    position: Option<Box<Positions>>,
    done: bool,
    metrics: Arc<Metrics>,
    /// Dropped with the stream, after [`EventStream`]'s own `Drop`.
    held: Held,
}

impl EventStream {
    pub(crate) fn new(
        hub: &Hub,
        conn: Arc<Connection>,
        pending: VecDeque<Bytes>,
        seen: Option<HashMap<Topic, EventId>>,
        held: Held,
    ) -> Self {
        let config = hub.config();
        let period = config.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        EventStream {
            conn,
            pending,
            seen,
            heartbeat,
            heartbeat_frame: hub.heartbeat_frame().clone(),
            wrote_since_tick: false,
            batch: VecDeque::with_capacity(8),
            coalescer: Coalescer::new(config.coalesce),
            expiry: None,
            expired: false,
            position: None,
            done: false,
            metrics: hub.metrics().clone(),
            held,
        }
    }

    /// Writes `position` as the `id:` line of every frame (topics in several partitions of
    /// `broker`).
    pub(crate) fn write_positions(&mut self, position: Position, broker: Arc<dyn Broker>) {
        self.position = Some(Box::new(Positions { position, broker }));
    }

    /// Ends the stream at `at` with a `livepush.expired` notice.
    pub(crate) fn expire_at(&mut self, at: Instant) {
        self.expiry = Some(Box::pin(tokio::time::sleep_until(at)));
    }

    fn is_duplicate(&self, envelope: &Envelope) -> bool {
        if envelope.is_notice() {
            return false;
        }
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
        self.metrics.queued_bytes.dec_by(dequeued as i64);
        if self.seen.is_some() {
            let mut batch = std::mem::take(&mut self.batch);
            batch.retain(|e| !self.is_duplicate(e));
            self.batch = batch;
        }
        if let Some(positions) = self.position.as_deref_mut() {
            let Positions { position, broker } = positions;
            let place = |t: &Topic| broker.partitioned().map(|p| p.partition_of(t));
            let chunk = (!self.batch.is_empty()).then(|| {
                let mut buf = BytesMut::new();
                position.frames_into(self.batch.make_contiguous(), &mut buf, &place);
                buf.freeze()
            });
            self.batch.clear();
            return chunk;
        }
        let chunk = match self.batch.len() {
            0 => None,
            1 => Some(self.batch[0].frame().clone()),
            _ => {
                let len = self.batch.iter().map(|e| e.frame().len()).sum();
                let mut buf = BytesMut::with_capacity(len);
                for e in &self.batch {
                    buf.extend_from_slice(e.frame());
                }
                Some(buf.freeze())
            }
        };
        self.batch.clear();
        chunk
    }
}

/// Most bytes of the backlog (retry hint, reset, replayed history) joined into one chunk.
const MAX_BACKLOG_CHUNK: usize = 32 * 1024;

/// The next chunk of the backlog: its frames joined up to [`MAX_BACKLOG_CHUNK`] bytes (a frame
/// larger than that goes alone). A resuming client gets the events it missed in one write and
/// one HTTP chunk instead of one per event: in a reconnect storm every client replays at once,
/// and each chunk costs both ends a chunk header, an iovec and a read to parse.
fn take_pending(pending: &mut VecDeque<Bytes>) -> Option<Bytes> {
    let first = pending.pop_front()?;
    let mut len = first.len();
    let joined = pending
        .iter()
        .take_while(|f| {
            len += f.len();
            len <= MAX_BACKLOG_CHUNK
        })
        .count();
    if joined == 0 {
        return Some(first);
    }
    let mut chunk = BytesMut::with_capacity(
        first.len() + pending.iter().take(joined).map(Bytes::len).sum::<usize>(),
    );
    chunk.extend_from_slice(&first);
    for frame in pending.drain(..joined) {
        chunk.extend_from_slice(&frame);
    }
    Some(chunk.freeze())
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Whatever is still queued is never sent: take it out of the queued-bytes gauge.
        let left = self.conn.queue.close_and_clear();
        if left > 0 {
            self.metrics.queued_bytes.dec_by(left as i64);
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
        if this.expired {
            tracing::debug!(parent: this.held.admission.span(), "subscription expired: stream closed");
            this.done = true;
            return Poll::Ready(None);
        }
        if let Some(expiry) = &mut this.expiry {
            if expiry.as_mut().poll(cx).is_ready() {
                this.expiry = None;
                this.expired = true;
                return Poll::Ready(Some(Ok(Frame::data(sse::notice(
                    &sse::EXPIRED,
                    br#"{"reason":"expired"}"#,
                )))));
            }
        }
        if let Some(chunk) = take_pending(&mut this.pending) {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.conn.cut_off.load(Ordering::Relaxed) {
            // Too slow under the disconnect policy: end the stream so the client reconnects with
            // its Last-Event-ID and replays what it missed.
            tracing::debug!(parent: this.held.admission.span(), "slow consumer: queue overflowed, stream closed");
            this.done = true;
            return Poll::Ready(None);
        }
        loop {
            let coalescer = &mut this.coalescer;
            let taken = this
                .conn
                .queue
                .poll_take(cx, &mut this.batch, MAX_BATCH, |cx| coalescer.hold(cx));
            match taken {
                // Closed and empty: the hub is shutting down.
                Taken::Closed => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Taken::Empty => break,
                Taken::Held => return Poll::Pending,
                Taken::Events(taken) => {
                    if let Some(chunk) = this.take_batch() {
                        this.wrote_since_tick = true;
                        this.coalescer.wrote(taken);
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    // all duplicates of replayed history: look again
                }
            }
        }
        let missed = this.conn.missed.swap(0, Ordering::Relaxed);
        if missed > 0 {
            tracing::debug!(parent: this.held.admission.span(), missed, "slow consumer: events dropped");
            this.wrote_since_tick = true;
            let data = format!("{{\"missed\":{missed}}}");
            return Poll::Ready(Some(Ok(Frame::data(sse::notice(
                &sse::LAGGED,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::BodyDataStream;
    use futures_util::StreamExt;

    use super::*;
    use crate::subscribe::{open, Subscription};
    use crate::{Hub, Topics};

    async fn subscribe(hub: &Hub) -> BodyDataStream {
        let topics = Topics::parse_list("t");
        let response = open(hub, None, Subscription::new(topics), None)
            .await
            .unwrap();
        let mut body = response.into_body().into_data_stream();
        let retry = body.next().await.unwrap().unwrap();
        assert!(retry.starts_with(b"retry:"));
        body
    }

    /// A hub whose longest coalescing window is 5 ms (windows of 1, 2, 4, 5, 5... ms).
    fn held_hub(builder: crate::HubBuilder) -> Hub {
        builder.coalesce(Duration::from_millis(5)).build().unwrap()
    }

    /// Polls `future` once without waiting (a later `.await` registers the real waker).
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// The payloads of the chunk the stream yields when polled once now; panics if it waits.
    fn written_now(body: &mut BodyDataStream) -> Vec<String> {
        match poll_once(&mut body.next()) {
            Poll::Ready(Some(Ok(chunk))) => payloads(&chunk),
            other => panic!("expected a chunk at once, got {other:?}"),
        }
    }

    /// The `data:` payloads of one chunk, in order.
    fn payloads(chunk: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(chunk)
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_owned()))
            .collect()
    }

    /// Publishes `events` before the stream reads, then reads them: written at once in one
    /// chunk (no window was open), which opens the first window (1 ms) when there are several.
    async fn fall_behind(
        hub: &Hub,
        body: &mut BodyDataStream,
        events: std::ops::RangeInclusive<i32>,
    ) {
        let expected: Vec<String> = events.clone().map(|n| n.to_string()).collect();
        for n in events {
            hub.publish("t", "e", &n).await.unwrap();
        }
        let before = tokio::time::Instant::now();
        assert_eq!(payloads(&body.next().await.unwrap().unwrap()), expected);
        assert_eq!(tokio::time::Instant::now(), before, "written at once");
    }

    /// A stream of `hub` that fell behind (a 1 ms window is open) holding event 3 back.
    async fn holding_event_3(hub: &Hub) -> BodyDataStream {
        let mut body = subscribe(hub).await;
        fall_behind(hub, &mut body, 1..=2).await;
        hub.publish("t", "e", &3).await.unwrap();
        assert!(
            poll_once(&mut body.next()).is_pending(),
            "event 3 is held back"
        );
        body
    }

    #[test]
    fn the_backlog_goes_out_in_chunks_of_whole_frames() {
        let frame = |n: usize, len: usize| Bytes::from(format!("data:{n}{}\n\n", " ".repeat(len)));
        let mut pending: VecDeque<Bytes> = (0..3).map(|n| frame(n, 10)).collect();
        let chunk = take_pending(&mut pending).unwrap();
        assert_eq!(payloads(&chunk), ["0", "1", "2"]);
        assert!(take_pending(&mut pending).is_none());
        // frames that do not fit go in the next chunk, whole; a frame above the bound alone
        let mut pending: VecDeque<Bytes> = [
            frame(0, 20_000),
            frame(1, 20_000),
            frame(2, 40_000),
            frame(3, 10),
        ]
        .into();
        let mut chunks = Vec::new();
        while let Some(chunk) = take_pending(&mut pending) {
            assert!(chunk.ends_with(b"\n\n"));
            chunks.push(payloads(&chunk));
        }
        assert_eq!(chunks, [vec!["0"], vec!["1"], vec!["2"], vec!["3"]]);
        let mut pending: VecDeque<Bytes> = [frame(0, 10), frame(1, 40_000)].into();
        assert_eq!(payloads(&take_pending(&mut pending).unwrap()), ["0"]);
        assert_eq!(payloads(&take_pending(&mut pending).unwrap()), ["1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_keeps_up_writes_every_event_at_once() {
        let hub = held_hub(Hub::builder());
        let mut body = subscribe(&hub).await;
        for n in 1..=3 {
            hub.publish("t", "e", &n).await.unwrap();
            assert_eq!(written_now(&mut body), [n.to_string()]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_falls_behind_waits_a_window_that_doubles_up_to_the_limit() {
        let hub = held_hub(Hub::builder());
        let mut body = subscribe(&hub).await;
        fall_behind(&hub, &mut body, 1..=2).await;
        let mut last_write = tokio::time::Instant::now();
        for (pair, window_ms) in [(3, 1), (5, 2), (7, 4), (9, 5), (11, 5)] {
            hub.publish("t", "e", &pair).await.unwrap();
            let mut next = body.next();
            assert!(
                poll_once(&mut next).is_pending(),
                "{pair} held within the window"
            );
            hub.publish("t", "e", &(pair + 1)).await.unwrap();
            assert_eq!(
                payloads(&next.await.unwrap().unwrap()),
                [pair.to_string(), (pair + 1).to_string()]
            );
            let now = tokio::time::Instant::now();
            assert_eq!(now - last_write, Duration::from_millis(window_ms));
            last_write = now;
        }
        // a single event (held: the window is still open) closes the window...
        hub.publish("t", "e", &13).await.unwrap();
        assert_eq!(payloads(&body.next().await.unwrap().unwrap()), ["13"]);
        assert_eq!(
            tokio::time::Instant::now() - last_write,
            Duration::from_millis(5)
        );
        // ...so the next one is written at once
        hub.publish("t", "e", &14).await.unwrap();
        assert_eq!(written_now(&mut body), ["14"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_stream_takes_one_more_turn_when_its_window_ends() {
        #[derive(Default)]
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let hub = held_hub(Hub::builder());
        let mut body = holding_event_3(&hub).await;
        tokio::time::advance(Duration::from_millis(1)).await;
        let flag = Arc::new(Flag::default());
        let waker = std::task::Waker::from(flag.clone());
        let poll = Pin::new(&mut body.next()).poll(&mut Context::from_waker(&waker));
        assert!(poll.is_pending(), "the first poll after the window yields");
        assert!(flag.0.load(Ordering::SeqCst), "after waking itself");
        assert_eq!(written_now(&mut body), ["3"], "written on the next turn");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_written_at_the_flush_mark_without_waiting() {
        // capacity 16: a held stream writes once 4 events are queued
        let hub = held_hub(Hub::builder().queue_capacity(16));
        let mut body = subscribe(&hub).await;
        fall_behind(&hub, &mut body, 1..=2).await;
        for n in 3..=6 {
            hub.publish("t", "e", &n).await.unwrap();
        }
        assert_eq!(written_now(&mut body), ["3", "4", "5", "6"]);
        // nothing dropped for a client that keeps up
        assert!(!hub
            .metrics_text()
            .contains("livepush_events_dropped_total 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_writes_every_event_at_once() {
        let hub = Hub::builder().coalesce(Duration::ZERO).build().unwrap();
        let mut body = subscribe(&hub).await;
        fall_behind(&hub, &mut body, 1..=2).await;
        hub.publish("t", "e", &3).await.unwrap();
        assert_eq!(written_now(&mut body), ["3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_held_back_stream_after_sending_what_it_held() {
        let hub = held_hub(Hub::builder());
        let mut body = holding_event_3(&hub).await;
        hub.shutdown();
        assert_eq!(payloads(&body.next().await.unwrap().unwrap()), ["3"]);
        assert!(body.next().await.is_none());
    }
}

//! One connection's queue of events: bounded, filled by the fan-out, drained by its stream.
//!
//! Hand-written instead of `tokio::sync::mpsc` because this queue is on the path of every
//! delivery and its shape is narrower than a channel's: one reader that takes everything queued
//! in one go, writers that never wait (a full queue is the slow-consumer policy's business, not a
//! reason to block), and an explicit close instead of counting senders. That is one uncontended
//! lock per push and per batch taken, and a wake-up only when the queue goes from empty to not
//! empty, where a bounded mpsc pays a semaphore, a block list and a waker per message
//! (`benchmarks/log/analysis-cpu-and-memory.md` has the profile), and one small allocation per connection instead of a
//! cache-padded channel. It also lets the reader hold events back for write coalescing
//! ([`crate::Config::coalesce`]) without that ever costing an event: a queue that reaches its
//! flush mark wakes the reader, which then writes at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use crate::envelope::Envelope;

/// Most queued events written in one chunk: enough to save syscalls under load, small enough to
/// keep one chunk well under a socket buffer. Also the flush mark of a held queue.
pub(crate) const MAX_BATCH: usize = 64;

/// What [`EventQueue::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue holds its capacity: the event was not queued.
    Full,
    /// The stream is gone or the hub is shutting down: the event was not queued.
    Closed,
}

/// What [`EventQueue::poll_take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This many events were moved out.
    Events(usize),
    /// Nothing queued; the reader is woken by the next push.
    Empty,
    /// Events are queued but the reader chose to wait; it is woken when the queue reaches its
    /// flush mark or closes (and by whatever else it waits on).
    Held,
    /// Closed and empty: the stream is over.
    Closed,
}

#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<State>,
    capacity: usize,
    /// The queue length at which a push wakes a reader that holds events back.
    flush_at: usize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Arc<Envelope>>,
    /// The reader's waker, set when it found the queue empty; taken by the push that fills it.
    waker: Option<Waker>,
    closed: bool,
}

impl State {
    fn register(&mut self, waker: &Waker) {
        match &mut self.waker {
            Some(current) if current.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }
}

impl EventQueue {
    /// A queue of at most `capacity` events; a reader holding events back is woken once
    /// `flush_at` are queued, clamped to a quarter of the capacity: the other three quarters are
    /// the slack that absorbs events published while the woken reader is on its way, so holding
    /// back never makes a queue overflow for a client that keeps up. Below 8 events of capacity
    /// the mark is 1: nothing is held.
    pub(crate) fn new(capacity: usize, flush_at: usize) -> Self {
        let capacity = capacity.max(1);
        EventQueue {
            state: Mutex::new(State::default()),
            capacity,
            flush_at: flush_at.min(capacity / 4).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something did, the queue is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` unless the queue is full or closed. Never waits.
    pub(crate) fn push(&self, event: &Arc<Envelope>) -> Pushed {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return Pushed::Closed;
            }
            if state.items.len() >= self.capacity {
                return Pushed::Full;
            }
            state.items.push_back(event.clone());
            // The first event wakes a waiting reader; until it has taken them all it is either
            // scheduled, polled again after its write, or holding them back, which the flush
            // mark ends.
            let len = state.items.len();
            if len == 1 || len == self.flush_at {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Pushed::Queued
    }

    /// Moves up to `max` queued events into `out`, unless `hold` (asked only while the queue is
    /// open and below its flush mark) says to wait. One lock for the whole decision. Taking
    /// everything into an empty `out` (the usual case) swaps the two buffers instead of moving
    /// the events one by one.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Arc<Envelope>>,
        max: usize,
        hold: impl FnOnce(&mut Context<'_>) -> bool,
    ) -> Taken {
        let mut state = self.lock();
        if state.items.is_empty() {
            if state.closed {
                return Taken::Closed;
            }
            state.register(cx.waker());
            return Taken::Empty;
        }
        if !state.closed && state.items.len() < self.flush_at && hold(cx) {
            state.register(cx.waker());
            return Taken::Held;
        }
        let n = state.items.len().min(max);
        if n == state.items.len() && out.is_empty() {
            std::mem::swap(&mut state.items, out);
        } else {
            out.extend(state.items.drain(..n));
        }
        Taken::Events(n)
    }

    /// Refuses further events and wakes the reader, which takes what is queued and then ends.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the queue and drops what it holds; returns the bytes of the frames never sent.
    /// Wakes the reader, which then finds the queue closed and ends.
    pub(crate) fn close_and_clear(&self) -> usize {
        let (left, items, waker) = {
            let mut state = self.lock();
            state.closed = true;
            let left = state.items.iter().map(|e| e.frame().len()).sum();
            (left, std::mem::take(&mut state.items), state.waker.take())
        };
        // dropped outside the lock: the last reference to an envelope frees its frame
        drop(items);
        if let Some(waker) = waker {
            waker.wake();
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::envelope::Publication;
    use crate::event::EventId;
    use crate::topic::Topic;

    fn event(n: u64) -> Arc<Envelope> {
        let publication = Publication {
            trace: crate::trace::Trace::NONE,
            topic: Topic::new("t").unwrap(),
            event: crate::EventName::from_static("e"),
            category: None,
            data: n.to_string().into(),
            retain: None,
        };
        Arc::new(Envelope::new(EventId::new(n), publication))
    }

    fn never(_: &mut Context<'_>) -> bool {
        false
    }

    /// A waker and the count of its wake-ups.
    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_on_first_event_only_and_takes_in_order() {
        let queue = EventQueue::new(8, 64);
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, never), Taken::Empty);
        for n in 1..=3 {
            assert_eq!(queue.push(&event(n)), Pushed::Queued);
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            queue.poll_take(&mut cx, &mut out, 2, never),
            Taken::Events(2)
        );
        assert_eq!(
            queue.poll_take(&mut cx, &mut out, 2, never),
            Taken::Events(1)
        );
        let ids: Vec<u64> = out.iter().map(|e| e.id().get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(queue.poll_take(&mut cx, &mut out, 2, never), Taken::Empty);
        queue.push(&event(4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_held_queue_wakes_its_reader_at_the_flush_mark_and_on_close() {
        // capacity 16: the flush mark is clamped to 4
        let queue = EventQueue::new(16, 64);
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        let hold = |_: &mut Context<'_>| true;
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, hold), Taken::Empty);
        queue.push(&event(1));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "first event");
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, hold), Taken::Held);
        queue.push(&event(2));
        queue.push(&event(3));
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "held: no wake-up per event"
        );
        queue.push(&event(4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "the flush mark");
        // at the mark the reader is not asked whether to hold
        assert_eq!(
            queue.poll_take(&mut cx, &mut out, 64, |_| unreachable!()),
            Taken::Events(4)
        );

        // the reader took the events, so it is not waiting: no wake-up needed for the next one
        queue.push(&event(5));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, hold), Taken::Held);
        queue.close();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            3,
            "close wakes a holding reader"
        );
        assert_eq!(
            queue.poll_take(&mut cx, &mut out, 64, |_| unreachable!()),
            Taken::Events(1)
        );
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, hold), Taken::Closed);
    }

    #[test]
    fn full_and_closed_refuse_events() {
        let queue = EventQueue::new(2, 64);
        assert_eq!(queue.push(&event(1)), Pushed::Queued);
        assert_eq!(queue.push(&event(2)), Pushed::Queued);
        assert_eq!(queue.push(&event(3)), Pushed::Full);
        queue.close();
        assert_eq!(queue.push(&event(4)), Pushed::Closed);
        // what was queued before the close is still taken, then the queue reports its end
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = VecDeque::new();
        assert_eq!(
            queue.poll_take(&mut cx, &mut out, 64, never),
            Taken::Events(2)
        );
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64, never), Taken::Closed);
    }

    #[test]
    fn close_wakes_a_waiting_reader_and_clear_counts_bytes() {
        let queue = EventQueue::new(4, 64);
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            queue.poll_take(&mut cx, &mut VecDeque::new(), 64, never),
            Taken::Empty
        );
        queue.close();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);

        let queue = EventQueue::new(4, 64);
        let (a, b) = (event(1), event(2));
        queue.push(&a);
        queue.push(&b);
        assert_eq!(queue.close_and_clear(), a.frame().len() + b.frame().len());
        assert_eq!(queue.push(&a), Pushed::Closed);
    }
}

//! One connection's queue of events: bounded, filled by the fan-out, drained by its stream.
//!
//! Hand-written instead of `tokio::sync::mpsc` because this queue is on the path of every
//! delivery and its shape is narrower than a channel's: one reader that takes everything queued
//! in one go, writers that never wait (a full queue is the slow-consumer policy's business, not a
//! reason to block), and an explicit close instead of counting senders. That is one uncontended
//! lock per push and per batch taken, and a wake-up only when the queue goes from empty to not
//! empty, where a bounded mpsc pays a semaphore, a block list and a waker per message
//! (BENCHMARKS.md has the profile), and one small allocation per connection instead of a
//! cache-padded channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::event::Envelope;

/// What [`EventQueue::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue holds its capacity: the event was not queued.
    Full,
    /// The stream is gone or the hub is shutting down: the event was not queued.
    Closed,
}

#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Arc<Envelope>>,
    /// The reader's waker, set when it found the queue empty; taken by the push that fills it.
    waker: Option<Waker>,
    closed: bool,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
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
            // Only the first event wakes the reader: until it has taken them all it either is
            // already scheduled or comes back by itself (it is polled again after every batch).
            if state.items.len() == 1 {
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

    /// Moves up to `max` queued events into `out`. `Ready(0)` means closed and empty: the stream
    /// is over. `Pending` means empty; the reader is woken by the next push or by [`Self::close`].
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Envelope>>,
        max: usize,
    ) -> Poll<usize> {
        let mut state = self.lock();
        if state.items.is_empty() {
            if state.closed {
                return Poll::Ready(0);
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let n = state.items.len().min(max);
        out.extend(state.items.drain(..n));
        Poll::Ready(n)
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
    pub(crate) fn close_and_clear(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        state.waker = None;
        let left = state.items.iter().map(|e| e.frame().len()).sum();
        state.items = VecDeque::new();
        left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::event::{EventId, Publication};
    use crate::topic::Topic;

    fn event(n: u64) -> Arc<Envelope> {
        let publication = Publication {
            topic: Topic::new("t").unwrap(),
            event: "e".to_owned(),
            category: None,
            data: n.to_string().into(),
        };
        Arc::new(Envelope::new(EventId::new(n), publication))
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
        let queue = EventQueue::new(8);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64), Poll::Pending);
        for n in 1..=3 {
            assert_eq!(queue.push(&event(n)), Pushed::Queued);
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(queue.poll_take(&mut cx, &mut out, 2), Poll::Ready(2));
        assert_eq!(queue.poll_take(&mut cx, &mut out, 2), Poll::Ready(1));
        let ids: Vec<u64> = out.iter().map(|e| e.id().get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(queue.poll_take(&mut cx, &mut out, 2), Poll::Pending);
        queue.push(&event(4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn full_and_closed_refuse_events() {
        let queue = EventQueue::new(2);
        assert_eq!(queue.push(&event(1)), Pushed::Queued);
        assert_eq!(queue.push(&event(2)), Pushed::Queued);
        assert_eq!(queue.push(&event(3)), Pushed::Full);
        queue.close();
        assert_eq!(queue.push(&event(4)), Pushed::Closed);
        // what was queued before the close is still taken, then the queue reports its end
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64), Poll::Ready(2));
        assert_eq!(queue.poll_take(&mut cx, &mut out, 64), Poll::Ready(0));
    }

    #[test]
    fn close_wakes_a_waiting_reader_and_clear_counts_bytes() {
        let queue = EventQueue::new(4);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(queue.poll_take(&mut cx, &mut Vec::new(), 64), Poll::Pending);
        queue.close();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);

        let queue = EventQueue::new(4);
        let (a, b) = (event(1), event(2));
        queue.push(&a);
        queue.push(&b);
        assert_eq!(queue.close_and_clear(), a.frame().len() + b.frame().len());
        assert_eq!(queue.push(&a), Pushed::Closed);
    }
}

//! The write deadline of a single HTTP/2 stream: [`WatchingExecutor`] and [`StreamWatch`].
//!
//! Why: on HTTP/2 many streams share one socket, so the socket's write deadline
//! ([`DeadlineIo`](super::io::DeadlineIo)) only fires when the whole connection stops moving. A
//! client that stops reading one stream (its flow-control window stays shut) while it reads the
//! others keeps the connection moving, and hyper, which polls a response body only when the
//! stream has window for it, never polls that stream's body again: the stream would keep its
//! slot, its queue and the data hyper buffered for it for ever.
//!
//! hyper runs each HTTP/2 stream as a task of its own, through the executor it is given. This
//! executor wraps each such task in [`Watched`], which polls it with the task's [`StreamWatch`]
//! set for the thread; the response body ([`conn`](super::conn)'s `Tracked`) finds the watch
//! there on its first poll and records when it handed hyper a data frame and was not polled
//! again, which is hyper waiting for window. When that wait reaches the write timeout, `Watched`
//! drops the stream's task: h2 then resets the stream (`RST_STREAM` `CANCEL`), drops what it
//! buffered for it, and the body (with the stream's slot and queue) is dropped, while the
//! connection and its other streams go on.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

thread_local! {
    /// The watch of the HTTP/2 stream task being polled on this thread, if any.
    static CURRENT: RefCell<Option<Arc<StreamWatch>>> = const { RefCell::new(None) };
}

/// Since when one HTTP/2 stream's body has waited for hyper to take its next frame.
#[derive(Debug, Default)]
pub(super) struct StreamWatch {
    waiting_since: Mutex<Option<Instant>>,
}

impl StreamWatch {
    /// The watch of the stream task being polled, when the caller runs inside one.
    pub(super) fn current() -> Option<Arc<StreamWatch>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// The body was polled: hyper had window for it.
    pub(super) fn polled(&self) {
        *self.lock() = None;
    }

    /// The body handed hyper a data frame: until it is polled again, hyper waits for window.
    pub(super) fn handed_data(&self) {
        *self.lock() = Some(Instant::now());
    }

    fn waiting_since(&self) -> Option<Instant> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.waiting_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// hyper's executor: spawns on tokio, each task watched when a write timeout is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct WatchingExecutor {
    pub(super) write_timeout: Option<Duration>,
}

impl<F> hyper::rt::Executor<F> for WatchingExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        match self.write_timeout {
            None => drop(tokio::spawn(task)),
            Some(timeout) => drop(tokio::spawn(Watched {
                task: Box::pin(task),
                watch: Arc::new(StreamWatch::default()),
                timeout,
                timer: None,
            })),
        }
    }
}

/// A stream task, dropped when its body has waited for window for the write timeout.
struct Watched<F> {
    task: Pin<Box<F>>,
    watch: Arc<StreamWatch>,
    timeout: Duration,
    /// Armed while the body waits.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let previous = CURRENT.with(|current| current.replace(Some(this.watch.clone())));
        let polled = this.task.as_mut().poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        if polled.is_ready() {
            return Poll::Ready(());
        }
        let Some(since) = this.watch.waiting_since() else {
            this.timer = None;
            return Poll::Pending;
        };
        let deadline = since + this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            tracing::debug!(
                timeout = ?this.timeout,
                "an HTTP/2 stream's client took none of its data for the write timeout: reset"
            );
            // Dropping the task (with `self`) resets the stream.
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

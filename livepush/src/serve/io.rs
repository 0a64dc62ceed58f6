//! A socket whose writes must make progress: [`DeadlineIo`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// An accepted TCP connection whose writes fail with [`io::ErrorKind::TimedOut`] once a write
/// has waited `deadline` without the peer taking a byte.
///
/// A client that stops reading fills its receive window and then the kernel's send buffer;
/// from then on every write waits, and hyper, which only polls a response body while it can
/// write, never learns that the stream was meant to end. Failing the write ends the connection
/// whatever hyper or the body is doing: the connection's task drops its response bodies (which
/// gives back the stream's slot and queue) and the socket. On that error the socket is also
/// reset instead of closed (`SO_LINGER` 0), so the kernel drops the unsent data at once rather
/// than keep it, and the socket buffers it pins, while it probes a window that never opens.
#[derive(Debug)]
pub struct DeadlineIo {
    inner: TcpStream,
    deadline: Option<Duration>,
    /// Armed while a write waits; disarmed by any progress.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    timed_out: bool,
}

impl DeadlineIo {
    /// Wraps `stream`; `deadline` `None` turns the deadline off.
    pub fn new(stream: TcpStream, deadline: Option<Duration>) -> Self {
        DeadlineIo {
            inner: stream,
            deadline,
            timer: None,
            waiting: false,
            timed_out: false,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Whether a write timed out (the connection is then dead).
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Called when a write or flush returned `Pending`: arms the timer on the first wait and
    /// polls it, so the task is woken at the deadline even if the peer never reads again.
    fn check_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        let until = Instant::now() + deadline;
        if !self.waiting {
            self.waiting = true;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(until),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(until))),
            }
        }
        let timer = self.timer.as_mut().expect("armed above");
        ready!(timer.as_mut().poll(cx));
        self.timed_out = true;
        // SO_LINGER 0 is the one use of it that never blocks: close() then sends a reset and
        // frees the socket's buffers at once. Tokio deprecates set_linger for the blocking case.
        #[allow(deprecated)]
        let _ = self.inner.set_linger(Some(Duration::ZERO));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer took no data for {deadline:?}"),
        ))
    }

    fn progressed(&mut self) {
        self.waiting = false;
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.check_stalled(cx).map(Err),
            ready => {
                this.progressed();
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.check_stalled(cx).map(Err),
            ready => {
                this.progressed();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_stalled(cx).map(Err),
            ready => {
                this.progressed();
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // the peer connects and never reads
        let _peer = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut io = DeadlineIo::new(accepted, Some(Duration::from_millis(200)));
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let error = loop {
            if let Err(e) = io.write_all(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never stalled");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(io.timed_out());
    }
}

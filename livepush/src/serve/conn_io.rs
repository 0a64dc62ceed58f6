//! An accepted connection's bytes, plain TCP or TLS, with what was read of them given back:
//! [`ConnIo`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::io::DeadlineIo;
#[cfg(feature = "tls")]
use super::tls_io::TlsIo;

/// One connection as `serve` reads and writes it: [`DeadlineIo`], or TLS over it.
///
/// [`sse_loop`](super::sse_loop) and hyper read and write a connection through this one type, so
/// a TLS connection takes the same fast path as a plain one; the write deadline is
/// [`DeadlineIo`]'s in both (under TLS, rustls writes through it).
pub(super) struct ConnIo {
    stream: Stream,
    /// Bytes already read that reads return first (see [`ConnIo::rewind`]): plaintext, so that
    /// a TLS connection is handed to hyper the same way.
    rewound: Option<Bytes>,
}

enum Stream {
    Plain(DeadlineIo),
    /// Boxed: rustls' connection state is large, and a plain connection's future (which every
    /// idle stream keeps) should not carry room for it.
    #[cfg(feature = "tls")]
    Tls(Box<TlsIo>),
}

impl ConnIo {
    /// A plain TCP connection.
    pub(super) fn plain(io: DeadlineIo) -> Self {
        ConnIo {
            stream: Stream::Plain(io),
            rewound: None,
        }
    }

    /// A TLS connection whose handshake is done.
    #[cfg(feature = "tls")]
    pub(super) fn tls(io: Box<TlsIo>) -> Self {
        ConnIo {
            stream: Stream::Tls(io),
            rewound: None,
        }
    }

    /// Gives `bytes`, read earlier, back to the next reads, before anything the connection
    /// holds: `livepush::serve` reads a connection's first request head itself (see
    /// `serve::sse_loop`) and hands what it read to hyper when hyper is to serve it.
    pub(super) fn rewind(&mut self, bytes: Bytes) {
        debug_assert!(self.rewound.is_none(), "rewound twice");
        if !bytes.is_empty() {
            self.rewound = Some(bytes);
        }
    }

    /// Writes what of `bytes` the connection takes now, without waiting (a last word before it
    /// is closed).
    pub(super) fn write_now(&mut self, bytes: &[u8]) {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(_)) = Pin::new(&mut *self).poll_write(&mut cx, bytes) {
            // under TLS, what rustls encrypted and the socket has not taken yet
            let _ = Pin::new(&mut *self).poll_flush(&mut cx);
        }
    }

    fn stream(&mut self) -> Pin<&mut dyn AsyncReadWrite> {
        match &mut self.stream {
            Stream::Plain(io) => Pin::new(io),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Pin::new(&mut **tls),
        }
    }
}

/// What both kinds of stream are.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncReadWrite for T {}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(rewound) = &mut self.rewound {
            let n = rewound.len().min(buf.remaining());
            buf.put_slice(&rewound[..n]);
            rewound.advance(n);
            if rewound.is_empty() {
                self.rewound = None;
            }
            return Poll::Ready(Ok(()));
        }
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn rewound_bytes_are_read_first_then_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        peer.write_all(b" world").await.unwrap();
        let mut io = ConnIo::plain(DeadlineIo::new(accepted, None));
        io.rewind(Bytes::from_static(b"hello"));
        // a read smaller than the rewound bytes takes part of them
        let mut first = [0u8; 3];
        io.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hel");
        let mut rest = [0u8; 8];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"lo world");
        assert!(
            io.rewound.is_none(),
            "the rewound bytes are dropped once read"
        );
    }
}

//! TLS over a [`DeadlineIo`] whose buffers are this module's, not rustls': [`TlsIo`].
//!
//! Why not `tokio-rustls`: its `ServerConnection` keeps a 4 KiB record buffer for as long as
//! the connection lives (rustls shrinks it at most to one read's size), and an idle SSE stream
//! holds its connection for hours: on a server with tens of thousands of streams that buffer was
//! the largest single part of a TLS stream's memory (`benchmarks/log/2026-12-05-tls-memory.md`).
//! rustls' unbuffered API leaves the buffers to the caller, so here every buffer is empty and
//! unallocated while nothing is in flight: ciphertext is read into a stack buffer and copied
//! only while a record is incomplete, decrypted bytes are kept only until they are read, and
//! encrypted bytes only until the socket takes them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio_rustls::rustls::ServerConfig;

use super::io::DeadlineIo;

/// Bytes read from the socket per read: a stack buffer, so an idle connection holds none.
const READ_CHUNK: usize = 8 * 1024;

/// Most plaintext encrypted per write: one TLS record's worth.
const WRITE_CHUNK: usize = 16 * 1024;

/// A TLS server connection over a [`DeadlineIo`], as `AsyncRead` and `AsyncWrite`; the write
/// deadline is the socket's ([`DeadlineIo`]), since every encrypted byte is written through it.
pub(super) struct TlsIo {
    conn: UnbufferedServerConnection,
    io: DeadlineIo,
    /// Ciphertext read and not yet processed: an incomplete record (empty and unallocated
    /// otherwise).
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read; `plain_read` of it has been read.
    plain: Vec<u8>,
    plain_read: usize,
    /// Ciphertext to send, before anything else is encrypted; `sent` of it has been sent.
    outgoing: Vec<u8>,
    sent: usize,
    /// The peer sent `close_notify`, or closed the socket: reads return end of file.
    peer_closed: bool,
    /// Our `close_notify` is to be encrypted (next time rustls allows writing).
    closing: bool,
    /// Our `close_notify` was asked for: once is enough.
    closed: bool,
}

/// What [`TlsIo::process`] reached.
enum Processed {
    /// The handshake needs more bytes from the peer.
    Blocked,
    /// Application data may flow; this many bytes of what was to be written were encrypted.
    Traffic(usize),
    /// Both sides sent `close_notify`.
    Closed,
}

impl TlsIo {
    /// Does the TLS handshake on `io` with `config`.
    pub(super) async fn accept(config: Arc<ServerConfig>, io: DeadlineIo) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut tls = TlsIo {
            conn,
            io,
            incoming: Vec::new(),
            plain: Vec::new(),
            plain_read: 0,
            outgoing: Vec::new(),
            sent: 0,
            peer_closed: false,
            closing: false,
            closed: false,
        };
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }

    /// The protocol ALPN chose, if any.
    pub(super) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(cx))?;
            let processed = match self.process(&[]) {
                Ok(processed) => processed,
                Err(error) => {
                    // the alert, if the socket takes it now
                    let _ = self.poll_send(cx);
                    return Poll::Ready(Err(error));
                }
            };
            match processed {
                // what rustls answered goes out first, at the top of the loop
                Processed::Blocked | Processed::Traffic(_) if !self.outgoing.is_empty() => {}
                Processed::Blocked => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                // TLS 1.3 lets the server write before the client's Finished: wait for it
                Processed::Traffic(_) if self.conn.is_handshaking() => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Processed::Traffic(_) => return Poll::Ready(Ok(())),
                Processed::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            }
        }
    }

    /// Runs rustls over what was read until it needs more bytes or application data may flow,
    /// keeping the plaintext it decrypts and the records it encodes, and then encrypts what it
    /// can of `write` (at most [`WRITE_CHUNK`]).
    fn process(&mut self, write: &[u8]) -> io::Result<Processed> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let state = match status.state {
                Ok(state) => state,
                Err(error) => {
                    self.take_alert();
                    return Err(invalid(error));
                }
            };
            let outcome = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        self.plain
                            .extend_from_slice(record.map_err(invalid)?.payload);
                    }
                    None
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // not offered (`max_early_data_size` is rustls' 0 unless the app sets it)
                    while let Some(record) = early.next_record() {
                        self.plain
                            .extend_from_slice(record.map_err(invalid)?.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(
                        &mut self.outgoing,
                        |buf| encode.encode(buf),
                        encode_too_small,
                    )?;
                    None
                }
                // `outgoing` is sent before anything encrypted after it: it counts as sent
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Processed::Closed),
                ConnectionState::BlockedHandshake => Some(Processed::Blocked),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let chunk = &write[..write.len().min(WRITE_CHUNK)];
                    if !chunk.is_empty() {
                        append(
                            &mut self.outgoing,
                            |buf| traffic.encrypt(chunk, buf),
                            encrypt_too_small,
                        )?;
                    }
                    if self.closing {
                        append(
                            &mut self.outgoing,
                            |buf| traffic.queue_close_notify(buf),
                            encrypt_too_small,
                        )?;
                        self.closing = false;
                    }
                    Some(Processed::Traffic(chunk.len()))
                }
                _ => return Err(invalid("unexpected TLS connection state")),
            };
            let discard = status.discard;
            self.incoming.drain(..discard);
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }

    /// After an error: the alert rustls queued for the peer, into `outgoing` (the caller sends
    /// what it can of it), as tokio-rustls does, so that a client learns why its handshake failed.
    fn take_alert(&mut self) {
        while let Ok(ConnectionState::EncodeTlsData(mut encode)) =
            self.conn.process_tls_records(&mut []).state
        {
            if append(
                &mut self.outgoing,
                |buf| encode.encode(buf),
                encode_too_small,
            )
            .is_err()
            {
                return;
            }
        }
    }

    /// Reads what the socket has into `incoming`: the number of bytes (0: end of file).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// Sends `outgoing`, then frees it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.outgoing.is_empty() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts what it can of `data` and sends it (what the socket does not take now is sent
    /// before the next write): the number of bytes of `data` taken.
    fn poll_write_plain(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_send(cx))?;
        let Processed::Traffic(n) = self.process(data)? else {
            return Poll::Ready(Err(invalid("TLS connection not open for writing")));
        };
        // progress or a registered wake-up; what is left goes first on the next call
        if let Poll::Ready(Err(error)) = self.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(n))
    }
}

/// Appends what `write` writes to `out`, growing it to the size `too_small` reads from the
/// error when it is too small (rustls' encode and encrypt each have their error type).
fn append<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    too_small: fn(&E) -> Option<usize>,
) -> io::Result<()> {
    let mut room = 0;
    loop {
        let start = out.len();
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(error) => {
                out.truncate(start);
                match too_small(&error) {
                    Some(required) if room < required => room = required,
                    _ => return Err(invalid(error)),
                }
            }
        }
    }
}

fn encode_too_small(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

fn encrypt_too_small(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_read < this.plain.len() {
                let rest = &this.plain[this.plain_read..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                this.plain_read += n;
                if this.plain_read == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_read = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if let Processed::Closed = this.process(&[])? {
                this.peer_closed = true;
            }
            // rustls' answers to what it read (a key update's) go out with the next write
            if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            if this.plain.is_empty() && !this.peer_closed && ready!(this.poll_fill(cx))? == 0 {
                // closed without `close_notify`: the end of the stream all the same
                this.peer_closed = true;
            }
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_plain(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // one record for the slices that fit in one, not one record each
        let mut gathered = [0u8; WRITE_CHUNK];
        let mut len = 0;
        for slice in bufs {
            let n = slice.len().min(WRITE_CHUNK - len);
            gathered[len..len + n].copy_from_slice(&slice[..n]);
            len += n;
            if len == WRITE_CHUNK {
                break;
            }
        }
        self.poll_write_plain(cx, &gathered[..len])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.closed {
            ready!(this.poll_send(cx))?;
            this.closed = true;
            this.closing = true;
            this.process(&[])?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    /// A handshake between a server offering `h2` and `http/1.1` and a client offering `alpn`:
    /// the server's `TlsIo` and the client's stream, or their errors.
    async fn handshake(
        alpn: &[&[u8]],
    ) -> (
        io::Result<TlsIo>,
        io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
    ) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let mut server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let mut client = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, stream)
                .await
        };
        let accept = async {
            let (stream, _) = listener.accept().await.unwrap();
            TlsIo::accept(Arc::new(server), DeadlineIo::new(stream, None)).await
        };
        tokio::join!(accept, connect)
    }

    /// A server `TlsIo` and the client's end of it, `alpn` offered by the client.
    async fn pair(alpn: &[&[u8]]) -> (TlsIo, tokio_rustls::client::TlsStream<TcpStream>) {
        let (server, client) = handshake(alpn).await;
        (server.unwrap(), client.unwrap())
    }

    fn holds_no_buffer(tls: &TlsIo) -> bool {
        tls.incoming.capacity() == 0 && tls.plain.capacity() == 0 && tls.outgoing.capacity() == 0
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer_between_reads_and_writes() {
        let (mut server, mut client) = pair(&[b"http/1.1"]).await;
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert!(holds_no_buffer(&server), "after the handshake");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut head = [0u8; 18];
        server.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"GET / HTTP/1.1\r\n\r\n");
        assert!(holds_no_buffer(&server), "after a read");
        server.write_all(b"data: 1\n\n").await.unwrap();
        server.flush().await.unwrap();
        assert!(holds_no_buffer(&server), "after a write");
        let mut event = [0u8; 9];
        client.read_exact(&mut event).await.unwrap();
        assert_eq!(&event, b"data: 1\n\n");
    }

    #[tokio::test]
    async fn large_writes_and_reads_arrive_whole_and_close_notify_ends_the_stream() {
        let (mut server, mut client) = pair(&[b"h2", b"http/1.1"]).await;
        assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
        let sent: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let expected = sent.clone();
        // a write of many records, and slices gathered into records
        let writer = async move {
            server.write_all(&sent).await.unwrap();
            let slices = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
            let n = server.write_vectored(&slices).await.unwrap();
            assert_eq!(n, 4);
            server.flush().await.unwrap();
            server
        };
        let reader = async {
            let mut got = vec![0u8; expected.len() + 4];
            client.read_exact(&mut got).await.unwrap();
            got
        };
        let (mut server, got) = tokio::join!(writer, reader);
        assert_eq!(&got[..expected.len()], &expected[..]);
        assert_eq!(&got[expected.len()..], b"abcd");
        // the other way, larger than a read of the socket
        let upload = vec![7u8; 100_000];
        let (_, received) = tokio::join!(
            async {
                client.write_all(&upload).await.unwrap();
                client.shutdown().await.unwrap();
            },
            async {
                let mut received = Vec::new();
                server.read_to_end(&mut received).await.unwrap();
                received
            }
        );
        assert_eq!(
            received, upload,
            "then end of file at the client's close_notify"
        );
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_failed_handshake_tells_the_client_why() {
        // no protocol in common: rustls refuses with a `no_application_protocol` alert
        let (server, client) = handshake(&[b"spdy/3"]).await;
        assert!(server.is_err());
        let error = client.expect_err("the handshake fails").to_string();
        assert!(error.contains("NoApplicationProtocol"), "{error}");
    }
}

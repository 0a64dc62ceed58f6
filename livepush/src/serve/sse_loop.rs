//! The requests of an HTTP/1 connection, plain TCP or TLS (ALPN `http/1.1` or none), read and
//! answered without hyper while they ask for an event stream.
//!
//! Why: an SSE connection is one long response and nothing else, and hyper's HTTP/1 connection
//! is built for many short exchanges. For each connection it keeps an 8 KiB read buffer and an
//! 8 KiB write buffer (one page of each written by the request head and the response head, and
//! neither freed while the stream lives), and its dispatcher and `hyper-util`'s HTTP/1 + HTTP/2
//! `auto` future make the connection's task 6.1 KiB. At 19,000 idle connections that was 17.3
//! KiB of RSS per connection, against the 12 KiB asked for (`benchmarks/log/2026-12-03-issue17.md`, "Goal 5", and `benchmarks/log/analysis-cpu-and-memory.md`, "Where
//! the memory goes"), and no hyper setting makes those buffers smaller.
//!
//! So `serve` reads the first request head itself, into a buffer of 1 KiB that grows to 8 KiB at
//! most and is freed once the head is parsed (with `httparse`, hyper's parser), and answers it
//! itself when it is an `EventSource` request (`GET` over HTTP/1.1, no body, no `Upgrade` or
//! `Expect`, and `Accept` naming `text/event-stream`) that the router answers with an event
//! stream (`content-type: text/event-stream`). Every other response (a refusal, a redirect, a
//! page) is written by hyper: [`serve`] returns the connection as a [`Handoff`], with the head
//! given back to be read again and the router's response to it, so this module's head encoder
//! only ever writes event-stream heads (`tests/it/fast_path_differential.rs` compares its bytes
//! with hyper's on generated requests and responses). The response goes out with one `writev` for
//! the head and the first chunk and then one per body frame (a frame is reference-counted bytes,
//! never copied), the chunk framing written around it from a few bytes on the stack. While the
//! stream lives, the connection holds the socket, the body, the frame being written and the
//! pipelined bytes if any: no buffer of its own.
//!
//! On a keep-alive connection the next head is read here too, so a client that reconnects its
//! stream on the same connection keeps the small footprint. The first request that is not an
//! SSE request goes to hyper with the connection, the bytes already read given back to it first
//! ([`ConnIo::rewind`]): HTTP/2's preface, other methods and
//! versions, requests with a body, heads that do not parse or do not fit in 8 KiB (hyper then
//! answers 400 or 431 as it always did). A connection hyper has is hyper's to the end: it cannot
//! give a connection back between requests, so an `EventSource` request on a connection that
//! first fetched the page is served by hyper as before.
//!
//! The limits of [`serve`](crate::serve()) hold on this path too: the head must be complete
//! within the header-read timeout, and the connection holds its `max_pending_heads` place until
//! it is; writes go through [`DeadlineIo`](super::io::DeadlineIo) (the write deadline; under
//! TLS, rustls writes through it, and what it has encrypted is flushed whenever the body waits);
//! a client that closes is noticed while the body waits, as hyper notices it (the connection is
//! watched for reading: end of file or an error end the response, and bytes that arrive are kept
//! for the next request, up to 8 KiB); the shutdown signal closes the connection once its
//! response has ended (the hub's shutdown ends the streams) and the drain deadline aborts it as
//! any other.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::conn_io::ConnIo;
use super::settings::ServeConfig;

/// What an HTTP/2 prior-knowledge connection starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The head buffer's first size: an `EventSource` request with cookies fits.
const FIRST_READ: usize = 1024;
/// A head that does not fit in this much goes to hyper (whose own limit is larger).
const MAX_HEAD: usize = 8 * 1024;
/// hyper's default limit on the number of headers.
const MAX_HEADERS: usize = 100;
/// Bytes a client may send (a pipelined request) while its response streams; more closes it.
const MAX_PIPELINED: usize = 8 * 1024;

/// How a connection leaves [`serve`].
pub(super) enum Handoff {
    /// It has ended.
    Done,
    /// hyper is to serve it from here on (boxed: the connection's future, which every open
    /// stream keeps, does not carry it).
    Hyper(Box<ToHyper>),
}

/// A connection for hyper to serve from here on, HTTP/1.1 or HTTP/2 as `http2` says; what was
/// read of it has been given back to `io` ([`ConnIo::rewind`]).
pub(super) struct ToHyper {
    pub(super) io: ConnIo,
    pub(super) peer: SocketAddr,
    pub(super) http2: bool,
    /// The connection's head permit and first-head deadline, while no request was read.
    pub(super) head: Option<(OwnedSemaphorePermit, Instant)>,
    /// The router's response to the first request of the given-back bytes, when the router has
    /// answered it already: a response that is not an event stream, which hyper writes.
    pub(super) answer: Option<Response>,
}

impl Handoff {
    fn hyper(
        io: ConnIo,
        peer: SocketAddr,
        http2: bool,
        head: Option<(OwnedSemaphorePermit, Instant)>,
        answer: Option<Response>,
    ) -> Handoff {
        Handoff::Hyper(Box::new(ToHyper {
            io,
            peer,
            http2,
            head,
            answer,
        }))
    }
}

/// Serves a connection (plain TCP, or TLS that did not choose `h2`): its requests here as long as they are SSE requests answered
/// with an event stream (see the module's documentation), then, from the first one that is
/// not, hands it to hyper.
///
/// `permit` and `deadline`: the connection's place among those reading their first head, and
/// when that head must be complete.
pub(super) async fn serve(
    mut io: ConnIo,
    peer: SocketAddr,
    app: &Router,
    config: &ServeConfig,
    permit: OwnedSemaphorePermit,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Handoff {
    let mut permit = Some(permit);
    let mut deadline = deadline;
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        let first = permit.is_some();
        let Some(head) = next_head(&mut io, &mut buf, deadline, stop, peer).await else {
            return Handoff::Done;
        };
        let (request, len, keep_alive) = match head {
            Head::Closed => return Handoff::Done,
            Head::Hyper { http2 } => {
                // The HTTP/2 preface only opens a connection.
                let http2 = http2 && first;
                tracing::trace!(%peer, http2, first, "request: hyper's, and the connection");
                io.rewind(Bytes::from(buf));
                let head = permit.map(|permit| (permit, deadline));
                return Handoff::hyper(io, peer, http2, head, None);
            }
            Head::Sse {
                mut request,
                len,
                keep_alive,
            } => {
                // as `axum::serve` and hyper's connections here give it
                request.extensions_mut().insert(ConnectInfo(peer));
                (request, len, keep_alive)
            }
        };
        // The head is complete: the connection leaves the pending heads.
        permit = None;
        let mut app = app.clone();
        // Boxed: the router's future is done with once the response head exists, and the
        // stream's state should not carry its size.
        let response = match Box::pin(tower_service::Service::call(&mut app, *request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        drop(app);
        if !is_event_stream(&response) {
            // A refusal, a redirect, a page: hyper writes it, from the same head read again,
            // and has the connection from then on.
            tracing::trace!(%peer, first, "request: hyper's, and the connection (not an event stream)");
            io.rewind(Bytes::from(buf));
            return Handoff::hyper(io, peer, false, None, Some(response));
        }
        tracing::trace!(%peer, first, "request: an event stream, answered without hyper");
        let pipelined = buf.split_off(len);
        drop(std::mem::take(&mut buf));
        let Some(next) = respond(&mut io, response, keep_alive, pipelined, stop, peer).await else {
            return Handoff::Done;
        };
        // The next head, waited for as on hyper's connections: the header-read timeout
        // (hyper's) or the idle timeout (`conn::drive`'s), whichever is shorter.
        buf = next;
        deadline = Instant::now() + config.header_read_timeout.min(config.idle_timeout);
    }
}

/// The connection's next head, read into `buf` by `deadline`; `None` when the connection ends
/// first (the deadline, an error, the server's stop).
async fn next_head(
    io: &mut ConnIo,
    buf: &mut Vec<u8>,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<Head> {
    // A head already whole in what was read (pipelined) is not waited for.
    if let Some(head) = (!buf.is_empty()).then(|| classify(buf)).flatten() {
        return Some(head);
    }
    // Boxed, as the other states that an open stream does not need, so that they do not make
    // the connection's future (kept while it lives) larger.
    let timeout = Box::pin(tokio::time::sleep_until(deadline));
    let read = tokio::select! {
        read = read_head(io, buf) => read,
        () = timeout => {
            tracing::debug!(%peer, "no request head within the header-read timeout: closed");
            if !buf.is_empty() && !H2_PREFACE.starts_with(buf) {
                // Part of an HTTP/1 head: hyper's answer to that, if the socket takes it now.
                io.write_now(&request_timeout());
            }
            return None;
        }
        // No request in progress: hyper's graceful shutdown would close it too.
        _ = stop.changed() => return None,
    };
    read.map_err(|error| {
        tracing::debug!(%error, %peer, "connection ended while reading a request head");
    })
    .ok()
}

/// Writes `response` until it ends; `Some(the bytes the client sent meanwhile)` when the
/// connection stays open for a next request, `None` when it has ended.
async fn respond(
    io: &mut ConnIo,
    response: Response,
    keep_alive: bool,
    pipelined: Vec<u8>,
    stop: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    // The stop signal is not watched while the response streams (which would keep a waiter in
    // the future): the hub's shutdown ends the streams, the drain deadline aborts the rest, and
    // a connection whose response ends after the signal is closed.
    let stopping = *stop.borrow();
    let mut exchange = Exchange::new(response, keep_alive && !stopping, pipelined);
    let ended = poll_fn(|cx| exchange.poll(io, cx)).await;
    match ended {
        Ok(()) if exchange.keep_alive && !*stop.borrow() => Some(exchange.pipelined),
        Ok(()) => {
            drop(exchange);
            let _ = io.shutdown().await;
            None
        }
        Err(error) => {
            tracing::debug!(%error, %peer, "connection ended with an error");
            None
        }
    }
}

/// Whether `response` is an event stream: the one kind of response written here; every other
/// is written by hyper.
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// hyper's `408` to a head not complete in time.
fn request_timeout() -> Vec<u8> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let (parts, body) = response.into_parts();
    encode_head(&parts, &body, false).0
}

/// What the first bytes of a connection are.
#[derive(Debug)]
enum Head {
    /// The peer closed (or reset) before a complete head.
    Closed,
    /// For hyper: HTTP/2's preface, or an HTTP/1 head this module does not serve.
    Hyper { http2: bool },
    /// An SSE request, its head `len` bytes long.
    Sse {
        /// Boxed: the head-reading state of the connection's future stays small.
        request: Box<Request>,
        len: usize,
        keep_alive: bool,
    },
}

/// Reads until `buf` holds a complete head, the HTTP/2 preface, or something for hyper.
async fn read_head(io: &mut ConnIo, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        if buf.len() == buf.capacity() {
            if buf.capacity() >= MAX_HEAD {
                return Ok(Head::Hyper { http2: false });
            }
            // 1 KiB, 2, 4, 8
            buf.reserve_exact(buf.capacity().max(FIRST_READ));
        }
        if io.read_buf(buf).await? == 0 {
            // hyper answers nothing to half a head either
            return Ok(Head::Closed);
        }
        if let Some(head) = classify(buf) {
            return Ok(head);
        }
    }
}

/// What `buf` is, or `None` while it may still become a head or the preface.
fn classify(buf: &[u8]) -> Option<Head> {
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return None;
    }
    if buf.starts_with(H2_PREFACE) {
        return Some(Head::Hyper { http2: true });
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(len)) => Some(match sse_request(&parsed) {
            Some((request, keep_alive)) => Head::Sse {
                request: Box::new(request),
                len,
                keep_alive,
            },
            None => Head::Hyper { http2: false },
        }),
        // hyper says why (400, 431)
        Err(_) => Some(Head::Hyper { http2: false }),
    }
}

/// The request and whether it allows keep-alive, if it is one this module serves.
fn sse_request(parsed: &httparse::Request<'_, '_>) -> Option<(Request, bool)> {
    if parsed.version != Some(1) || parsed.method != Some("GET") {
        return None;
    }
    let uri = Uri::try_from(parsed.path?).ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut keep_alive = true;
    let mut event_stream = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        match name {
            header::CONTENT_LENGTH if value != "0" => return None,
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => return None,
            header::CONNECTION if has_token(&value, "close") => keep_alive = false,
            header::ACCEPT if contains_ignore_case(value.as_bytes(), b"text/event-stream") => {
                event_stream = true
            }
            _ => {}
        }
        headers.append(name, value);
    }
    if !event_stream {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, keep_alive))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// No body may follow (204, 304, 1xx), or a known length of 0.
    Empty,
    /// `content-length`: this many bytes are still to come.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// The size line of a chunk, `<HEX>\r\n`, kept inline.
#[derive(Debug, Default)]
struct ChunkLine {
    bytes: [u8; 18],
    len: u8,
}

impl ChunkLine {
    fn new(size: usize) -> Self {
        let mut line = ChunkLine::default();
        let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..digits {
            let nibble = (size >> (4 * (digits - 1 - i))) & 0xf;
            // upper case, as hyper writes it (`{:X}`)
            line.bytes[i] = b"0123456789ABCDEF"[nibble];
        }
        line.bytes[digits..digits + 2].copy_from_slice(b"\r\n");
        line.len = (digits + 2) as u8;
        line
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One response being written: what is still to be written (the head, then one body frame at a
/// time with its framing), the body, and what the client sent meanwhile.
struct Exchange {
    body: Body,
    framing: Framing,
    body_done: bool,
    /// Written as one: `head`, `line`, `data`, `tail`; `written` bytes of them are out.
    head: Vec<u8>,
    line: ChunkLine,
    data: Bytes,
    tail: &'static [u8],
    written: usize,
    /// Whether the connection stays open for a next request after the response (else it
    /// closes).
    keep_alive: bool,
    /// Bytes the client sent after its head: the next request.
    pipelined: Vec<u8>,
}

impl Exchange {
    fn new(response: Response, keep_alive: bool, pipelined: Vec<u8>) -> Exchange {
        let (parts, body) = response.into_parts();
        // A response that says `connection: close` closes the connection, as hyper does.
        let keep_alive = keep_alive
            && !parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|v| has_token(v, "close"));
        let (head, framing) = encode_head(&parts, &body, keep_alive);
        let ended = body.is_end_stream();
        let mut exchange = Exchange {
            body,
            framing,
            body_done: framing == Framing::Empty,
            head,
            line: ChunkLine::default(),
            data: Bytes::new(),
            tail: b"",
            written: 0,
            keep_alive,
            pipelined,
        };
        if ended && !exchange.body_done {
            exchange.end();
        }
        exchange
    }

    fn unwritten(&self) -> usize {
        self.head.len() + self.line.len as usize + self.data.len() + self.tail.len() - self.written
    }

    /// Writes the response until it is out (`Ready(Ok)`), the body waits with everything
    /// written (`Pending`), or the connection fails.
    fn poll(&mut self, io: &mut ConnIo, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(Err(error)) = self.poll_client(io, cx) {
            return Poll::Ready(Err(error));
        }
        loop {
            // The next frame, once the previous one is out (the head may still be waiting: the
            // first frame goes with it).
            let frame_out = self.line.len == 0 && self.data.is_empty() && self.tail.is_empty();
            if frame_out && !self.body_done {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.queue(data)?;
                        }
                        // trailers are not sent (hyper sends them only when asked to)
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(io::Error::other(error)));
                    }
                    Poll::Ready(None) => self.end(),
                    Poll::Pending => {}
                }
            }
            if self.unwritten() == 0 {
                // Under TLS, what rustls has encrypted and the socket has not taken yet (plain
                // TCP holds nothing back). Flushed only once the body waits, so that the frames
                // ready together go out together.
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
                if self.body_done {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            let mut slices = [IoSlice::new(&[]); 4];
            let mut skip = self.written;
            let mut n = 0;
            for part in [
                &self.head[..],
                self.line.as_bytes(),
                &self.data[..],
                self.tail,
            ] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[n] = IoSlice::new(&part[skip..]);
                skip = 0;
                n += 1;
            }
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(wrote)) => {
                    self.written += wrote;
                    if self.unwritten() == 0 {
                        self.head = Vec::new();
                        self.line = ChunkLine::default();
                        self.data = Bytes::new();
                        self.tail = b"";
                        self.written = 0;
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Takes a data frame to write next.
    fn queue(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            // a zero-size chunk would end the body
            return Ok(());
        }
        match &mut self.framing {
            Framing::Empty => {}
            Framing::Length(left) => {
                let len = data.len() as u64;
                if len > *left {
                    return Err(io::Error::other(
                        "the body is longer than its content-length",
                    ));
                }
                *left -= len;
                self.data = data;
                self.body_done = self.body.is_end_stream();
            }
            Framing::Chunked => {
                self.line = ChunkLine::new(data.len());
                self.data = data;
                self.tail = if self.body.is_end_stream() {
                    // the last chunk goes in the same write
                    self.body_done = true;
                    b"\r\n0\r\n\r\n"
                } else {
                    b"\r\n"
                };
            }
        }
        Ok(())
    }

    /// The body has ended.
    fn end(&mut self) {
        self.body_done = true;
        match self.framing {
            Framing::Chunked => self.tail = b"0\r\n\r\n",
            // shorter than announced: the client cannot tell where the next response starts
            Framing::Length(left) if left > 0 => self.keep_alive = false,
            _ => {}
        }
    }

    /// Reads what the client sends while the response streams: its end (`Err`, which ends the
    /// response) or a pipelined request (kept, up to [`MAX_PIPELINED`] bytes).
    fn poll_client(&mut self, io: &mut ConnIo, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut scratch = [0u8; 1024];
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection",
                    )))
                }
                Poll::Ready(Ok(())) => {
                    if self.pipelined.len() + read.filled().len() > MAX_PIPELINED {
                        return Poll::Ready(Err(io::Error::other(
                            "too many bytes sent while a response streams",
                        )));
                    }
                    self.pipelined.extend_from_slice(read.filled());
                }
            }
        }
    }
}

/// The status line and headers of `parts` as hyper writes them (its order, lower-case names,
/// `date` added), and how the body is framed.
fn encode_head(parts: &http::response::Parts, body: &Body, keep_alive: bool) -> (Vec<u8>, Framing) {
    let status = parts.status;
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut head = Vec::with_capacity(128 + 32 * parts.headers.len());
    if status == StatusCode::OK {
        head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let mut length = None;
    let mut wrote_date = false;
    let mut wrote_connection = false;
    for (name, value) in &parts.headers {
        match *name {
            // the framing is this module's to choose
            header::TRANSFER_ENCODING => continue,
            // hyper drops the header of a body that has ended already, and writes its own
            // `content-length: 0` after the others (below)
            header::CONTENT_LENGTH if body.is_end_stream() => continue,
            header::CONTENT_LENGTH => {
                let declared = value.to_str().ok().and_then(|v| v.trim().parse().ok());
                // kept whatever the status, as hyper keeps it (a 204 or 304 still sends no body)
                match declared {
                    Some(len) => length = Some(len),
                    None => continue,
                }
            }
            header::DATE => wrote_date = true,
            header::CONNECTION => {
                // All its values on one line, and `close` added to them when the connection
                // closes, as hyper writes them.
                if !wrote_connection {
                    wrote_connection = true;
                    write_connection(&mut head, &parts.headers, keep_alive);
                }
                continue;
            }
            _ => {}
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !keep_alive && !wrote_connection {
        head.extend_from_slice(b"connection: close\r\n");
    }
    let framing = if no_body {
        Framing::Empty
    } else if let Some(len) = length {
        Framing::Length(len)
    } else if let Some(len) = body.size_hint().exact() {
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(len.to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
        Framing::Length(len)
    } else {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if !wrote_date {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let framing = match framing {
        Framing::Length(0) => Framing::Empty,
        framing => framing,
    };
    (head, framing)
}

/// The `connection` line of a response with these `headers`: every value, then `close` when the
/// connection closes after it and no value says so already.
fn write_connection(head: &mut Vec<u8>, headers: &HeaderMap, keep_alive: bool) {
    head.extend_from_slice(b"connection: ");
    let mut says_close = false;
    for (i, value) in headers.get_all(header::CONNECTION).iter().enumerate() {
        if i > 0 {
            head.extend_from_slice(b", ");
        }
        head.extend_from_slice(value.as_bytes());
        says_close |= has_token(value, "close");
    }
    if !keep_alive && !says_close {
        head.extend_from_slice(b", close");
    }
    head.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_head_gets_hypers_408() {
        let response = String::from_utf8(request_timeout()).unwrap();
        let (head, date) = response.split_once("date: ").unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n"
        );
        assert!(date.ends_with(" GMT\r\n\r\n"), "{date:?}");
    }

    #[test]
    fn chunk_lines_are_hex_sizes() {
        assert_eq!(ChunkLine::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkLine::new(9).as_bytes(), b"9\r\n");
        assert_eq!(ChunkLine::new(0x1a).as_bytes(), b"1A\r\n");
        assert_eq!(ChunkLine::new(4096).as_bytes(), b"1000\r\n");
        assert_eq!(
            ChunkLine::new(usize::MAX).as_bytes(),
            b"FFFFFFFFFFFFFFFF\r\n"
        );
    }

    fn head_of(bytes: &[u8]) -> Option<Head> {
        classify(bytes)
    }

    #[test]
    fn only_event_stream_gets_are_served_here() {
        let sse = |extra: &str| {
            format!("GET /events?topic=t HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n")
        };
        assert!(matches!(
            head_of(sse("").as_bytes()),
            Some(Head::Sse {
                keep_alive: true,
                ..
            })
        ));
        assert!(matches!(
            head_of(sse("Connection: close\r\n").as_bytes()),
            Some(Head::Sse {
                keep_alive: false,
                ..
            })
        ));
        for extra in [
            "Content-Length: 3\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Upgrade: websocket\r\nConnection: upgrade\r\n",
            "Expect: 100-continue\r\n",
        ] {
            assert!(
                matches!(
                    head_of(sse(extra).as_bytes()),
                    Some(Head::Hyper { http2: false })
                ),
                "{extra}"
            );
        }
        for other in [
            "GET /events HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            "POST /events HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET /\0 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(
                    head_of(other.as_bytes()),
                    Some(Head::Hyper { http2: false })
                ),
                "{other:?}"
            );
        }
        // parts of a head, of the preface, and "P" of both
        assert!(head_of(b"GET /events HTTP/1.1\r\nAccept: text/").is_none());
        assert!(head_of(b"P").is_none());
        assert!(head_of(b"PRI * HTTP/2.0\r\n").is_none());
        assert!(matches!(
            head_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(Head::Hyper { http2: true })
        ));
    }
}

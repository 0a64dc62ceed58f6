//! A raw HTTP/1.1 client for what `reqwest` cannot do: stop reading, reset the connection, send
//! bytes a client library refuses.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// One HTTP/1.1 exchange on its own TCP connection, read by hand.
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// Body bytes read so far (chunked framing included).
    pub body: Vec<u8>,
    pub stream: TcpStream,
}

/// Sends `GET target` with `headers` (raw bytes, so anything can be sent) and reads the status line
/// and headers.
pub async fn raw_get(addr: SocketAddr, target: &[u8], headers: &[(&str, &[u8])]) -> RawResponse {
    let mut request = Vec::with_capacity(target.len() + 128);
    request.extend_from_slice(b"GET ");
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    raw_request(addr, &request).await
}

/// Sends `request` as is and reads the status line and headers of the answer.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(request).await.expect("send request");
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response head timed out")
            .expect("read response head");
        assert!(
            n > 0,
            "connection closed before the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    RawResponse {
        status,
        head,
        body: buf[end + 4..].to_vec(),
        stream,
    }
}

impl RawResponse {
    /// Reads until the body holds `needle` (panics after [`WAIT`]).
    pub async fn read_until(&mut self, needle: &[u8]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut from = 0;
        while find(&self.body[from..], needle).is_none() {
            // only new bytes (and a needle's length before them) need searching next time
            from = self.body.len().saturating_sub(needle.len());
            let mut chunk = [0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("{:?} did not arrive", String::from_utf8_lossy(needle)))
                .expect("read body");
            assert!(
                n > 0,
                "stream ended before {:?}",
                String::from_utf8_lossy(needle)
            );
            self.body.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads while `more()` says bytes are still on their way (panics after [`WAIT`]).
    pub async fn read_while(&mut self, mut more: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while more() {
            let mut chunk = [0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("the expected bytes did not arrive")
                .expect("read body");
            assert!(n > 0, "stream ended while bytes were expected");
            self.body.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the rest of a body that ends (its `Content-Length`, the last chunk, or a close).
    pub async fn read_to_end(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let length: Option<usize> = self.head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        });
        loop {
            if self.body.ends_with(b"0\r\n\r\n") || length.is_some_and(|n| self.body.len() >= n) {
                return;
            }
            let mut chunk = [0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => self.body.extend_from_slice(&chunk[..n]),
                Err(_) => panic!(
                    "body did not end: {:?}",
                    String::from_utf8_lossy(&self.body)
                ),
            }
        }
    }

    /// The body (chunked framing removed) as a string.
    pub fn body_text(&self) -> String {
        let chunked = self
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let bytes = if chunked {
            dechunk(&self.body)
        } else {
            self.body.clone()
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Closes with a TCP reset instead of a FIN: what a dropped network looks like to the server.
    pub fn reset(self) {
        // SO_LINGER 0, then close: the kernel sends RST. (Deprecated in tokio because a non-zero
        // linger blocks on close; zero does not.)
        #[allow(deprecated)]
        self.stream
            .set_linger(Some(Duration::ZERO))
            .expect("set SO_LINGER");
        drop(self.stream);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(body, b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        let start = line_end + 2;
        if size == 0 || body.len() < start + size {
            out.extend_from_slice(&body[start..body.len().min(start + size)]);
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

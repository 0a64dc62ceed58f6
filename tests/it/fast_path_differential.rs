//! `livepush::serve` compared with hyper on generated requests and responses: the same request
//! head sent to `livepush::serve` (whose fast path writes event-stream responses to `EventSource`
//! requests with its own head encoder, `serve/sse_loop.rs`) and to `axum::serve` (hyper) with the
//! same router must get the same status line, the same headers in the same order (the `date`
//! value aside) and the same body bytes.
//!
//! The router answers what the request's query asks for (status, headers, content type, body
//! shape), so one generated case drives both the request head and the response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use livepush::serve::rustls;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{tls, TestServer};

/// What the router answers, as the query string carries it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Answer {
    status: u16,
    /// `text/event-stream`, another type, or none.
    ct: String,
    /// `name:value` pairs joined by `|` (never `transfer-encoding`: hyper writes nothing at all
    /// for a response whose handler sets it on an empty body).
    #[serde(default)]
    headers: String,
    /// `empty`, `full` (a body of known length) or `chunks` (a stream of unknown length).
    body: String,
    /// The body's pieces joined by `|` (each may be empty).
    #[serde(default)]
    pieces: String,
    /// Whether a `content-length` header is set by the handler (matching the body).
    #[serde(default)]
    length_header: bool,
}

async fn answer(Query(answer): Query<Answer>) -> Response {
    let pieces: Vec<Bytes> = answer
        .pieces
        .split('|')
        .map(|p| Bytes::from(p.to_owned()))
        .collect();
    // the length of the body sent (a handler that states another length is not compared)
    let total: usize = match answer.body.as_str() {
        "empty" => 0,
        _ => pieces.iter().map(Bytes::len).sum(),
    };
    let body = match answer.body.as_str() {
        "empty" => Body::empty(),
        "full" => Body::from(pieces.concat()),
        _ => Body::from_stream(futures_util::stream::iter(
            pieces.into_iter().map(Ok::<_, std::io::Error>),
        )),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).expect("a generated status");
    let headers = response.headers_mut();
    if !answer.ct.is_empty() {
        headers.insert("content-type", HeaderValue::from_str(&answer.ct).unwrap());
    }
    for pair in answer.headers.split('|').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    if answer.length_header && answer.body != "chunks" {
        headers.insert("content-length", HeaderValue::from(total));
    }
    response
}

fn router() -> Router {
    Router::new().route("/answer", get(answer))
}

/// One generated case: the request head's variable parts and the answer.
#[derive(Debug, Clone)]
struct Case {
    version: &'static str,
    accept: Option<&'static str>,
    connection: Option<&'static str>,
    extra: Vec<(&'static str, &'static str)>,
    query: String,
}

fn case() -> impl Strategy<Value = Case> {
    let status = prop::sample::select(vec![
        200u16, 201, 202, 204, 206, 299, 301, 302, 304, 400, 401, 403, 404, 418, 429, 500, 503, 599,
    ]);
    let ct = prop::sample::select(vec![
        "text/event-stream",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "TEXT/EVENT-STREAM",
        "application/json",
        "",
    ]);
    let header = prop::sample::select(vec![
        "cache-control:no-cache",
        "x-accel-buffering:no",
        "set-cookie:a=1",
        "set-cookie:b=2",
        "vary:accept",
        "x-request-id:abc",
        "connection:close",
        "connection:keep-alive",
        "date:Fri, 04 Dec 2026 18:00:00 GMT",
        "location:/elsewhere",
    ]);
    let body = prop::sample::select(vec!["empty", "full", "chunks", "chunks"]);
    let piece = prop::sample::select(vec!["", "data: 1\n\n", "retry: 2000\n\n", "x", ": hb\n\n"]);
    let answer = (
        status,
        ct,
        prop::collection::vec(header, 0..4),
        body,
        prop::collection::vec(piece, 1..4),
        any::<bool>(),
    )
        .prop_map(|(status, ct, headers, body, pieces, length_header)| {
            let pairs: Vec<(&str, String)> = vec![
                ("status", status.to_string()),
                ("ct", ct.to_owned()),
                ("headers", headers.join("|")),
                ("body", body.to_owned()),
                ("pieces", pieces.join("|")),
                ("length_header", length_header.to_string()),
            ];
            serde_urlencoded::to_string(pairs).unwrap()
        });
    let accept = prop::sample::select(vec![
        Some("text/event-stream"),
        Some("text/event-stream"),
        Some("Text/Event-Stream, text/plain;q=0.5"),
        Some("*/*"),
        None,
    ]);
    let connection = prop::sample::select(vec![None, None, Some("close"), Some("keep-alive")]);
    let extra = prop::collection::vec(
        prop::sample::select(vec![
            ("Cache-Control", "no-cache"),
            ("Last-Event-ID", "7"),
            ("Cookie", "session=1"),
            ("Content-Length", "0"),
            ("User-Agent", "differential"),
        ]),
        0..3,
    );
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]);
    (version, accept, connection, extra, answer).prop_map(
        |(version, accept, connection, extra, query)| Case {
            version,
            accept,
            connection,
            extra,
            query,
        },
    )
}

impl Case {
    fn request(&self) -> Vec<u8> {
        let mut head = format!(
            "GET /answer?{} {}\r\nHost: 127.0.0.1\r\n",
            self.query, self.version
        );
        if let Some(accept) = self.accept {
            head.push_str(&format!("Accept: {accept}\r\n"));
        }
        if let Some(connection) = self.connection {
            head.push_str(&format!("Connection: {connection}\r\n"));
        }
        for (name, value) in &self.extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// A response as read off the wire: the head's lines (the `date` value masked) and the body's
/// bytes as framed (chunk lines included).
#[derive(Debug, PartialEq)]
struct Wire {
    head: Vec<String>,
    body: Vec<u8>,
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> Wire {
    exchange_over(TcpStream::connect(addr).await.unwrap(), request).await
}

/// [`exchange`] over a connection made already (TLS).
async fn exchange_over(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> Wire {
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8(buf[..head_end - 4].to_vec()).unwrap();
    let head: Vec<String> = text
        .split("\r\n")
        .map(|l| {
            if l.starts_with("date: ") {
                "date: <date>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let mut body = buf[head_end..].to_vec();
    let value = |name: &str| {
        head.iter()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let status: u16 = head[0][9..12].parse().unwrap();
    let complete = |body: &[u8]| -> bool {
        if matches!(status, 100..=199 | 204 | 304) {
            true
        } else if let Some(len) = value("content-length") {
            body.len() >= len.parse::<usize>().unwrap()
        } else if value("transfer-encoding").as_deref() == Some("chunked") {
            body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n")
        } else {
            false // until the server closes
        }
    };
    while !complete(&body) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("the response ends")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Wire { head, body }
}

/// The reference: axum's own server, which is hyper's HTTP/1.1 writer.
async fn reference(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[test]
fn every_response_is_the_bytes_hyper_writes() {
    let runtime = runtime();
    let (ours, theirs) = runtime.block_on(async {
        let ours = TestServer::start(router()).await;
        let theirs = reference(router()).await;
        (ours, theirs)
    });
    compare(&runtime, 256, |request| async move {
        (
            exchange(ours.addr, &request).await,
            exchange(theirs, &request).await,
        )
    });
}

/// Over TLS (ALPN `http/1.1`), against hyper's HTTP/1.1 server over the same TLS: the fast path
/// serves TLS connections too.
#[test]
fn every_response_over_tls_is_the_bytes_hyper_writes_over_tls() {
    let runtime = runtime();
    let (certified, config) = tls::certificate();
    let (ours, theirs) = runtime.block_on(async {
        let ours = TestServer::start_tls_with(router(), config.clone(), |s| s).await;
        let theirs = tls_reference(router(), config).await;
        (ours, theirs)
    });
    let certified = &certified;
    compare(&runtime, 64, |request| async move {
        let over = |addr| async move { tls::connect(addr, certified, &[b"http/1.1"]).await };
        (
            exchange_over(over(ours.addr).await, &request).await,
            exchange_over(over(theirs).await, &request).await,
        )
    });
}

/// hyper's HTTP/1.1 server over rustls, as a hand-written HTTPS server is built.
async fn tls_reference(app: Router, config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `cases` generated cases, each request through `both` (ours, the reference), and checks
/// that the two answers are the same and that the fast path was reached often.
fn compare<F: std::future::Future<Output = (Wire, Wire)>>(
    runtime: &tokio::runtime::Runtime,
    cases: u32,
    both: impl Fn(Vec<u8>) -> F,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let fast = std::cell::Cell::new(0);
    runner
        .run(&case(), |case| {
            let request = case.request();
            let (a, b) = runtime.block_on(both(request.clone()));
            if case.version == "HTTP/1.1"
                && case
                    .accept
                    .is_some_and(|a| a.to_lowercase().contains("text/event-stream"))
                && a.head.iter().any(|l| {
                    l.to_lowercase()
                        .starts_with("content-type: text/event-stream")
                })
            {
                fast.set(fast.get() + 1);
            }
            prop_assert_eq!(a, b, "request {:?}", String::from_utf8_lossy(&request));
            Ok(())
        })
        .unwrap();
    // the generator reaches the fast path often (it is not only hyper against hyper)
    let fast = fast.get();
    assert!(fast >= cases / 8, "only {fast} cases took the fast path");
}

//! Clients that hold connections open without finishing what they send, against the server's
//! bounds: request bodies trickled one byte at a time at a low file limit (the body-read
//! deadline), and one address holding many half-sent heads (the per-address bound on pending
//! heads).

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::support::{Example, TestServer};

/// One plain `GET` on a fresh connection from `from`; `None` when nothing answered in time.
async fn answered(from: Option<&str>, addr: SocketAddr, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = match from {
            Some(ip) => {
                let socket = TcpSocket::new_v4().ok()?;
                socket.bind(format!("{ip}:0").parse().unwrap()).ok()?;
                socket.connect(addr).await.ok()?
            }
            None => TcpStream::connect(addr).await.ok()?,
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        text.starts_with("HTTP/1.1 ").then_some(text)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_flood_at_a_low_file_limit_does_not_lock_other_clients_out() {
    let server = Example::start(
        "bench_server",
        &[
            ("LIVEPUSH_BODY_READ_TIMEOUT_SECS", "2"),
            ("LIVEPUSH_HEADER_READ_TIMEOUT_SECS", "5"),
        ],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    assert!(answered(None, addr, "/health").await.is_some());
    // 64 descriptors for the whole process: a few dozen for connections
    let status = std::process::Command::new("prlimit")
        .args(["--nofile=64:64", "--pid", &server.pid().to_string()])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
    // 150 POSTs that send their head and then one byte of the body every 300 ms, for as long as
    // the test runs: more than the process has descriptors
    let mut flood = JoinSet::new();
    for _ in 0..150 {
        flood.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return;
            };
            let head = "POST /publish?topic=t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
            }
        });
    }
    // the flood holds the process's descriptors (a bounded poll of /proc)
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    for _ in 0..300 {
        if fds() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fds() >= 60, "the flood holds only {} descriptors", fds());
    // Without a body deadline the flood holds every descriptor for as long as it trickles and
    // `/health` is never answered; with it, the trickled bodies fail after 2 s and free theirs.
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            tries <= 24,
            "/health unanswered in {tries} tries of 5 s while bodies trickle"
        );
        if let Some(response) = answered(None, addr, "/health").await {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            break;
        }
    }
    flood.abort_all();
}

async fn plain() -> &'static str {
    "hello"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_half_sent_heads_cannot_lock_out_another() {
    let app = Router::new().route("/plain", get(plain));
    let server = TestServer::start_with(app, |s| {
        s.max_pending_heads(8)
            .max_pending_heads_per_peer(4)
            .header_read_timeout(Duration::from_secs(120))
    })
    .await;
    // 127.0.0.1 opens 20 connections and sends half a head on each
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /plain HTTP/1.1\r\nHo")
            .await
            .unwrap();
        held.push(stream);
    }
    // Beyond its share of 4 its connections are parked, unread: none is answered, none closed
    for stream in &mut held {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("a connection over its address's share was closed"),
            Ok(Ok(_)) => panic!("a half-sent head was answered"),
            Err(_) => {} // still held, waiting for its head (or its turn)
        }
    }
    // 127.0.0.2 is still served at once, well before the header-read timeout of the held ones
    let response = answered(Some("127.0.0.2"), server.addr, "/plain")
        .await
        .expect("127.0.0.2 answered while 127.0.0.1 holds its share");
    assert!(response.ends_with("hello"), "{response}");
    // Once 127.0.0.1's heads are complete, every one of its 20 is answered in turn: the parked
    // ones take the places the first ones leave (a storm through one address loses nothing).
    for stream in &mut held {
        stream
            .write_all(b"st: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
    }
    for (i, stream) in held.iter_mut().enumerate() {
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            stream.read_to_string(&mut response),
        )
        .await
        .unwrap_or_else(|_| panic!("connection {i} of 127.0.0.1 was not answered"))
        .unwrap();
        assert!(response.ends_with("hello"), "connection {i}: {response}");
    }
}

#[livepush::subscribe_to_events]
async fn events() {}

/// Under `Disconnect` a client that stopped reading is cut from its topics at once; its stream
/// ends with the last chunk after the bytes already on their way, so a client that reads again
/// within the write deadline gets a clean end of the body (and the server's FIN when the
/// connection closes), not a reset. Only a client that takes nothing for the whole deadline is
/// reset (`sse_loop::a_fast_path_client_that_stops_reading_is_cut_at_the_write_deadline`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_cut_under_disconnect_that_reads_again_gets_a_clean_end() {
    use livepush::{Hub, RouterExt, SlowConsumerPolicy};
    let hub = Hub::builder()
        .queue_capacity(4)
        .replay(1000, Duration::from_secs(60))
        .slow_consumer(SlowConsumerPolicy::Disconnect)
        .heartbeat(Duration::from_secs(60))
        .build()
        .unwrap();
    let app = Router::new().route("/events", get(events)).livepush(&hub);
    let server =
        TestServer::start_with(app, |s| s.write_timeout(Some(Duration::from_secs(20)))).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(server.addr).await.unwrap();
    client
        .write_all(
            b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    for _ in 0..1000 {
        if hub.connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.connection_count(), 1, "the stream opened");
    // the client reads nothing while events fill its socket and then its queue: cut. Each
    // publish is followed by a pause, so that the connection's task runs between them however
    // busy the machine is (a publish on the in-memory broker never yields by itself); the
    // ceiling only bounds a test that would otherwise spin.
    let pad = "x".repeat(16 * 1024);
    let mut published = 0;
    let cut = |hub: &Hub| {
        hub.metrics_text().lines().any(|l| {
            l.starts_with("livepush_slow_consumer_disconnects_total ") && !l.ends_with(" 0")
        })
    };
    while !cut(&hub) {
        assert!(
            published < 20_000,
            "not cut after {published} events of 16 KiB"
        );
        hub.publish("t", "big", &pad).await.unwrap();
        published += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // it reads again: everything on its way, then the last chunk and the end of file
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), client.read(&mut buf)).await {
            Err(_) => panic!("no end of the stream in 30 s"),
            Ok(Ok(0)) => break Ok(()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => break Err(error),
        }
    };
    assert!(
        ended.is_ok(),
        "the stream ended with {ended:?}, not a clean end"
    );
    assert!(
        received.ends_with(b"\r\n0\r\n\r\n"),
        "the body did not end with the last chunk: {:?}",
        String::from_utf8_lossy(&received[received.len().saturating_sub(64)..])
    );
}

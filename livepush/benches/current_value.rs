//! How long a new subscriber waits for the current value of a state topic (BENCHMARKS.md,
//! "Current value on subscribe").
//!
//! One process: a hub (in-memory broker, or Redis with `REDIS_URL`) served on loopback with
//! `livepush::serve`. A value is published retained on topic `tile`, then `SUBSCRIBERS` clients
//! connect one after another over TCP, each timed from the start of its TCP connect to the
//! moment it read the value's `data:` line (`value`). For comparison, as many streams of a topic
//! without a value are timed to their `retry:` line (`open`: what opening any stream costs, the
//! broker's subscription confirmation included). Alternating, so both see the same machine.
//!
//! ```sh
//! SUBSCRIBERS=1000 cargo bench -p livepush --features redis --bench current_value   # in memory
//! REDIS_URL=redis://127.0.0.1:6390 cargo bench -p livepush --features redis --bench current_value
//! ```
//!
//! Prints one line of JSON: percentiles in microseconds.

use std::time::{Duration, Instant};

use livepush::{subscribe_to_events, Hub, Retain, RouterExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[subscribe_to_events]
async fn events() {}

#[tokio::main]
async fn main() {
    // an environment variable: `cargo bench` passes `--bench` as the first argument
    let subscribers: usize = std::env::var("SUBSCRIBERS")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut builder = Hub::builder();
    let broker = match std::env::var("REDIS_URL") {
        #[cfg(feature = "redis")]
        Ok(url) => {
            // a key space of its own on a shared server
            let prefix = format!("bench-current-{}:", std::process::id());
            builder = builder.redis(url).redis_prefix(prefix);
            "redis"
        }
        #[cfg(not(feature = "redis"))]
        Ok(_) => panic!("REDIS_URL needs the `redis` feature: cargo bench --features redis"),
        Err(_) => "memory",
    };
    let hub = builder.build().unwrap();
    let app = axum::Router::new()
        .route("/events", axum::routing::get(events))
        .livepush(&hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { livepush::serve(listener, app).await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.ready().await.is_err() {
        assert!(Instant::now() < deadline, "the broker is not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.publish_retained(
        "tile",
        "load",
        &serde_json::json!({"load": 0.42}),
        Retain::latest(),
    )
    .await
    .unwrap();
    let (mut open, mut value) = (Vec::new(), Vec::new());
    for i in 0..subscribers {
        // a topic of its own each time: its first subscriber, as a new page's stream is
        open.push(time_to(addr, &format!("empty-{i}"), "retry:").await);
        value.push(time_to(addr, "tile", "data:").await);
    }
    let line = serde_json::json!({
        "broker": broker,
        "subscribers": subscribers,
        "open_us": percentiles(&mut open),
        "value_us": percentiles(&mut value),
    });
    println!("{line}");
}

/// From the start of a TCP connect to `topic`'s stream until a line starting with `prefix` was
/// read.
async fn time_to(addr: std::net::SocketAddr, topic: &str, prefix: &str) -> Duration {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!("GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(prefix) {
            return started.elapsed();
        }
    }
    panic!("the stream of {topic} ended before a `{prefix}` line");
}

/// p50, p90, p99 and the maximum, in whole microseconds.
fn percentiles(times: &mut [Duration]) -> serde_json::Value {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_micros() as u64
    };
    serde_json::json!({ "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0) })
}

//! Publishes per second that a NATS JetStream deployment acknowledges to one livepush process
//! (issue 26 item 4: how far one stream goes, and what partitions change). Figures:
//! `benchmarks/log/2026-12-05-nats-stream.md`, summed up in `docs/nats.md`.
//!
//! One hub on `NATS_URL` (it creates its stream(s) as in production: per-subject limits,
//! republish, duplicate window), then `IN_FLIGHT` tasks that each publish in a loop through
//! `Hub::publish`, so that many publishes are pipelined on the one NATS connection, over
//! `TOPICS` topics, for `SECONDS` after a one-second warm-up. Only publishes acknowledged with a
//! sequence count (a publish the retry buffer took is an error here). The data is loadgen's
//! event (`{"seq":…,"sent_ns":…,"pad":"…"}` with 200 bytes of padding, about 240 bytes).
//!
//! ```sh
//! NATS_URL='nats://127.0.0.1:4222?stream=BENCH' \
//!   cargo run --release --bin nats_stream -- SECONDS IN_FLIGHT TOPICS
//! ```
//!
//! Prints one line of JSON: publishes/s, publish latency p50/p99 (ms), this process's CPU
//! seconds, and the load average before and after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livepush::Hub;

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// This process's user + system CPU seconds (`/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields after the name: state is 0, utime 11, stime 12
    (ticks(11) + ticks(12)) / 100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One publisher task: publishes until `stop`, answering the latency of each acknowledged
/// publish made while `counting`.
async fn publisher(
    hub: Hub,
    topics: Vec<String>,
    first: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let pad = "x".repeat(200);
    let mut latencies = Vec::new();
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let topic = &topics[n % topics.len()];
        let sent = Instant::now();
        let data = serde_json::json!({"seq": n, "sent_ns": 0, "pad": pad});
        let published = hub.publish(topic, "e", &data).await.expect("publish");
        if published.id().is_none() {
            panic!("a publish went to the retry buffer: NATS did not acknowledge it");
        }
        if counting.load(Ordering::Relaxed) {
            latencies.push(sent.elapsed());
        }
        n += 1;
    }
    latencies
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = arg(&args, 0, 10);
    let in_flight = arg(&args, 1, 256) as usize;
    let topic_count = arg(&args, 2, 1000) as usize;
    let url = std::env::var("NATS_URL").expect("NATS_URL");
    let hub = Hub::builder()
        .nats(url.clone())
        .replay(1000, Duration::from_secs(3600))
        .build()
        .expect("hub");
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.ready().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "NATS not ready: {:?}",
            hub.ready().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let topics: Vec<String> = (0..topic_count).map(|n| format!("bench.{n}")).collect();
    let (counting, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let tasks: Vec<_> = (0..in_flight)
        .map(|i| {
            let first = i * topic_count / in_flight.max(1);
            let task = publisher(
                hub.clone(),
                topics.clone(),
                first,
                counting.clone(),
                stop.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load_before = load_average();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("publisher"));
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let line = serde_json::json!({
        "query": query,
        "in_flight": in_flight,
        "topics": topic_count,
        "seconds": elapsed,
        "acked": latencies.len(),
        "publishes_per_s": (latencies.len() as f64 / elapsed).round(),
        "latency_ms_p50": at(0.5),
        "latency_ms_p99": at(0.99),
        "client_cpu_s": cpu,
        "load_before": load_before,
        "load_after": load_average(),
    });
    println!("{line}");
    hub.shutdown();
}

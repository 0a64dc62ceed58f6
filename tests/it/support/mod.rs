//! The integration tests' helpers, in one place: servers on loopback ports ([`server`]), a real
//! SSE client ([`sse`]), a raw HTTP/1.1 client for what `reqwest` cannot do ([`raw`]), a private
//! `redis-server` a test can kill, pause, restart and administer ([`redis_server`]), a Sentinel
//! topology ([`sentinel`]), `nats-server`s alone or as a JetStream cluster ([`nats_server`]), the
//! no-silent-gap check of a subscriber's stream ([`gaps`]), a TCP proxy a test can cut
//! ([`tcp_proxy`]), the example binaries run as a user runs them ([`examples`]), readers of
//! `/metrics`, memory and logs ([`observe`]), real PostgreSQL and SQLite databases per test
//! ([`database`]), and the spans of an in-memory OpenTelemetry exporter ([`traces`], feature
//! `otel`).
//!
//! The module `support` of `tests/it` (the integration crate); the test binaries kept apart
//! (`tests/memory.rs`, `tests/tracing_spans.rs`, `tests/registry.rs`, `tests/asyncapi.rs`,
//! `tests/browser.rs`) include it too, with `#[path = "it/support/mod.rs"]`.

pub mod database;
pub mod examples;
pub mod gaps;
pub mod handlers;
pub mod nats_server;
pub mod observe;
pub mod presence;
pub mod raw;
pub mod redis_server;
pub mod sentinel;
pub mod server;
pub mod sse;
pub mod tcp_proxy;
// Used by `tests/otel.rs` and `tests/redis_cluster`, processes of their own: dead code in
// `tests/it`.
#[cfg(feature = "otel")]
#[allow(dead_code)]
pub mod traces;

use std::time::Duration;

pub use database::{Postgres, Sqlite};
pub use examples::{run_to_exit, Example};
pub use nats_server::{NatsCluster, NatsServer};
pub use observe::{capture_logs, metric};
pub use raw::{raw_get, raw_request, RawResponse};
pub use redis_server::RedisServer;
pub use sentinel::Sentinel;
pub use server::{GracefulServer, TestServer};
pub use sse::SseClient;
pub use tcp_proxy::TcpProxy;

/// The routes `router.livepush(&hub)` adds, which every example serves and answers 200 on
/// (`tests/it/examples.rs` checks it for each example binary).
pub const LIVEPUSH_ROUTES: [&str; 5] = [
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/events/catalog",
];

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A plain HTTP client (no connection pooling surprises between tests).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GETs `url` and parses the answer as JSON (panics on any failure: it is a test).
pub async fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// Polls `GET url` until it answers `status` or [`WAIT`] passes.
pub async fn wait_for_status(url: &str, status: u16) {
    let what = format!("GET {url} answers {status}");
    eventually(&what, || async {
        http()
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == status)
    })
    .await;
}

/// Polls `check` until it holds or [`WAIT`] passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// Waits until `hub.ready()` succeeds (a Redis broker connected and subscribed).
pub async fn wait_until_ready(hub: &livepush::Hub) {
    eventually("the hub is ready", || async { hub.ready().await.is_ok() }).await;
}

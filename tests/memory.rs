//! A client that never reads cannot grow server memory: while tens of MB are published, the
//! process's resident memory and the queued-bytes gauge stay bounded and other clients keep
//! receiving every event. Alone in its binary so no other test moves the RSS it measures.

// The shared helpers of `tests/it`; this binary uses a part of them, the rest is not dead code
// there (hence the allow, on this binary's copy only).
#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, LivepushRouter};
use serde_json::json;
use support::observe::rss_kib;
use support::{metric, raw_get, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_keeps_memory_bounded_and_others_keep_receiving() {
    const QUEUE: usize = 16;
    const PAD: usize = 16 * 1024;
    const ROUND: usize = 8;
    const ROUNDS: usize = 320; // 2,560 events of 16 KiB: 40 MiB published
    let hub = Hub::builder().queue_capacity(QUEUE).build().unwrap();
    let server =
        TestServer::start(Router::new().route("/events", get(events)).livepush(&hub)).await;

    // Connected, then never reads another byte.
    let mut stalled = raw_get(server.addr, b"/events?topic=feed", &[]).await;
    assert_eq!(stalled.status, 200);
    stalled.read_until(b"retry:").await;
    let mut reader = SseClient::connect(&server.url("/events?topic=feed")).await;

    let pad = "x".repeat(PAD);
    let publish_round = |round: usize| {
        let (hub, pad) = (hub.clone(), pad.clone());
        async move {
            for i in 0..ROUND {
                hub.publish("feed", "tick", &json!({"n": round * ROUND + i, "pad": pad}))
                    .await
                    .unwrap();
            }
        }
    };
    // Warm up (allocator arenas, socket buffers filling) before the baseline.
    let mut n = 0;
    for round in 0..16 {
        publish_round(round).await;
        for _ in 0..ROUND {
            let event = reader.next().await;
            assert_eq!(event.event, "tick");
            n += 1;
        }
    }
    let before = rss_kib();
    for round in 16..ROUNDS {
        publish_round(round).await;
        // The reading client gets every event, in order, while the other one is stuck.
        for _ in 0..ROUND {
            let event = reader.next().await;
            assert_eq!(event.event, "tick");
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["n"], n);
            n += 1;
        }
    }
    let after = rss_kib();

    let text = hub.metrics_text();
    let frame_len = PAD + 64;
    let queued = metric(&text, "livepush_queued_bytes");
    assert!(
        queued <= (QUEUE * frame_len) as f64,
        "only the stuck client's bounded queue is left: {queued} bytes"
    );
    assert!(
        metric(&text, "livepush_events_dropped_total") > 0.0,
        "the stuck client's queue overflowed"
    );
    assert_eq!(hub.connection_count(), 2, "both streams are still open");
    let published_mib = ROUNDS * ROUND * PAD / (1 << 20);
    if let (Some(before), Some(after)) = (before, after) {
        let grown_mib = after.saturating_sub(before) / 1024;
        eprintln!("published {published_mib} MiB to a stuck client: RSS {before} KiB -> {after} KiB (+{grown_mib} MiB), queued {queued} bytes");
        assert!(
            grown_mib < 24,
            "RSS grew by {grown_mib} MiB while {published_mib} MiB were published"
        );
    }
    drop(stalled);
}

//! # baseline_server: the bench protocol, hand-written with axum `Sse` + `tokio::sync::broadcast`
//!
//! No livepush: this is what an experienced axum user writes by hand, and what `bench_server`
//! (the same two routes made with `#[publish_event]` / `#[subscribe_to_events]`) is compared
//! with in `BENCHMARKS.md`. Same wire format as livepush (`id:`, `event: tick`, `data:` with the
//! compact JSON), same heartbeat period (15 s, axum's `KeepAlive` default, or
//! `LIVEPUSH_HEARTBEAT_SECS` as for bench_server, so both send as many), same per-connection
//! memory budget in spirit (one broadcast ring per topic shared by its subscribers).
//!
//! - `POST /publish?topic=T` (`T` = `bench` when absent) with a JSON object: 200 echoing it, and
//!   the object goes to every subscriber of topic `T` (nowhere when `T` has none).
//! - `GET /events?topic=T`: `text/event-stream` of topic `T`.
//!
//! Topics are what a hand-written server does: a map topic → `broadcast::Sender` behind a mutex,
//! the sender made by the first subscriber of a topic and removed when its last receiver leaves,
//! so the map holds only watched topics (the many-topic rows of `BENCHMARKS.md`, issue 17).
//!
//! Run:   cargo run --release --bin baseline_server      (`HOST`, `PORT` as for the examples)
//!
//! Per event and per subscriber, axum's `Sse` builds an `Event` (one buffer allocation and a copy
//! of the payload) and writes it: the cost livepush avoids by encoding each event once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{http::StatusCode, Json, Router};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

/// Events buffered by each topic's broadcast ring (`BASELINE_RING`, default 4,096); a subscriber
/// further behind than this loses events (`RecvError::Lagged`), which the load generator reports
/// as `lost`. tokio allocates the whole ring when the topic's sender is made (≈ 56 bytes a slot:
/// 4,096 slots ≈ 220 KiB a topic), so a server of one topic per user picks a small ring; the
/// many-topic rows of scripts/bench.sh run with 64 (each topic gets a few events).
const RING: usize = 4096;

type Tx = broadcast::Sender<(u64, Arc<str>)>;
type Rx = broadcast::Receiver<(u64, Arc<str>)>;

/// The watched topics: one sender per topic that has at least one receiver.
type Topics = Arc<Mutex<HashMap<String, Tx>>>;

#[derive(Clone)]
struct AppState {
    topics: Topics,
    ring: usize,
    next_id: Arc<AtomicU64>,
    keep_alive: Duration,
}

/// The map, also after a panic elsewhere while it was locked (nothing here leaves it half-made).
fn lock(topics: &Topics) -> MutexGuard<'_, HashMap<String, Tx>> {
    topics
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Deserialize)]
struct TopicQuery {
    topic: String,
}

/// `?topic=T` of `POST /publish`; `bench` when absent.
#[derive(Deserialize)]
struct Target {
    #[serde(default = "bench")]
    topic: String,
}

fn bench() -> String {
    "bench".to_owned()
}

async fn publish(
    State(state): State<AppState>,
    Query(target): Query<Target>,
    Json(body): Json<Map<String, Value>>,
) -> Json<Map<String, Value>> {
    // A map of JSON values always serializes.
    let data: Arc<str> = serde_json::to_string(&body).unwrap_or_default().into();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    // Clone the sender out of the lock: the send wakes every receiver.
    let tx = lock(&state.topics).get(&target.topic).cloned();
    if let Some(tx) = tx {
        // No subscriber left is not an error: the event simply goes nowhere.
        let _ = tx.send((id, data));
    }
    Json(body)
}

async fn events(State(state): State<AppState>, Query(q): Query<TopicQuery>) -> Response {
    if q.topic.is_empty() {
        return (StatusCode::BAD_REQUEST, "empty topic").into_response();
    }
    let rx = lock(&state.topics)
        .entry(q.topic.clone())
        .or_insert_with(|| broadcast::channel(state.ring).0)
        .subscribe();
    let sub = Subscription {
        rx: Some(rx),
        topic: q.topic,
        topics: state.topics,
    };
    Sse::new(subscribe(sub))
        .keep_alive(KeepAlive::new().interval(state.keep_alive))
        .into_response()
}

/// A receiver that, when dropped as its stream ends, removes its topic's sender if it was the
/// last receiver (checked under the lock that subscribing takes, so no new receiver is lost).
struct Subscription {
    rx: Option<Rx>,
    topic: String,
    topics: Topics,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut topics = lock(&self.topics);
        if topics
            .get(&self.topic)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}

/// The receiver as a stream of SSE events; lagged events are skipped (counted as lost).
fn subscribe(sub: Subscription) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    stream::unfold(sub, |mut sub| async move {
        let rx = sub.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok((id, data)) => {
                    let event = Event::default()
                        .id(id.to_string())
                        .event("tick")
                        .data(&*data);
                    return Some((Ok(event), sub));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[tokio::main]
async fn main() {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().unwrap_or_else(|_| {
            eprintln!("error: PORT={p:?} is invalid: expected a port number from 0 to 65535");
            std::process::exit(2)
        }),
        Err(_) => 3000,
    };
    let keep_alive = match std::env::var("LIVEPUSH_HEARTBEAT_SECS") {
        Ok(s) => match s.parse::<u64>() {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => {
                eprintln!("error: LIVEPUSH_HEARTBEAT_SECS={s:?} is invalid: expected whole seconds above 0");
                std::process::exit(2)
            }
        },
        Err(_) => Duration::from_secs(15),
    };
    let ring = match std::env::var("BASELINE_RING") {
        Ok(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 && n <= usize::MAX / 2 => n,
            _ => {
                eprintln!("error: BASELINE_RING={s:?} is invalid: expected a whole number above 0");
                std::process::exit(2)
            }
        },
        Err(_) => RING,
    };
    let state = AppState {
        topics: Arc::default(),
        ring,
        next_id: Arc::new(AtomicU64::new(1)),
        keep_alive,
    };
    let app = Router::new()
        .route("/publish", post(publish))
        .route("/events", get(events))
        .with_state(state);
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {host}:{port}: {e}");
            std::process::exit(2)
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("baseline_server listening on http://{addr}"),
        Err(e) => eprintln!("warning: cannot read the listening address: {e}"),
    }
    // `BASELINE_NODELAY=1`: the same server with `TCP_NODELAY` on every accepted socket, as
    // `livepush::serve` does (axum's default leaves Nagle's algorithm on). An informative row of
    // BENCHMARKS.md; the target rows compare with the default.
    let nodelay = std::env::var("BASELINE_NODELAY").is_ok_and(|v| v == "1");
    let listener = listener.tap_io(move |tcp| {
        if nodelay {
            if let Err(e) = tcp.set_nodelay(true) {
                eprintln!("warning: cannot set TCP_NODELAY: {e}");
            }
        }
    });
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: server error: {e}");
        std::process::exit(1)
    }
}

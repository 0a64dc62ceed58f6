//! # baseline_server: the bench protocol, hand-written with axum `Sse` + `tokio::sync::broadcast`
//!
//! No livepush: this is what an experienced axum user writes by hand, and what `bench_server`
//! (the same two routes made with `#[publish_event]` / `#[subscribe_to_events]`) is compared
//! with in `BENCHMARKS.md`. Same wire format as livepush (`id:`, `event: tick`, `data:` with the
//! compact JSON), same heartbeat period (15 s, axum's `KeepAlive` default, or
//! `LIVEPUSH_HEARTBEAT_SECS` as for bench_server, so both send as many), same per-connection
//! memory budget in spirit (one broadcast ring shared by all subscribers).
//!
//! - `POST /publish` with a JSON object: 200 echoing it, and the object goes to every subscriber.
//! - `GET /events?topic=bench`: `text/event-stream` (any other topic streams nothing).
//!
//! Run:   cargo run --release --bin baseline_server      (`HOST`, `PORT` as for the examples)
//!
//! Per event and per subscriber, axum's `Sse` builds an `Event` (one buffer allocation and a copy
//! of the payload) and writes it: the cost livepush avoids by encoding each event once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// Events buffered by the broadcast ring; a subscriber further behind than this loses events
/// (`RecvError::Lagged`), which the load generator reports as `lost`.
const RING: usize = 4096;

#[derive(Clone)]
struct AppState {
    tx: broadcast::Sender<(u64, Arc<str>)>,
    next_id: Arc<AtomicU64>,
    keep_alive: Duration,
}

#[derive(Deserialize)]
struct TopicQuery {
    topic: String,
}

async fn publish(
    State(state): State<AppState>,
    Json(body): Json<Map<String, Value>>,
) -> Json<Map<String, Value>> {
    // A map of JSON values always serializes.
    let data: Arc<str> = serde_json::to_string(&body).unwrap_or_default().into();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    // No subscriber is not an error: the event simply goes nowhere.
    let _ = state.tx.send((id, data));
    Json(body)
}

async fn events(State(state): State<AppState>, Query(q): Query<TopicQuery>) -> Response {
    if q.topic != "bench" {
        return (StatusCode::BAD_REQUEST, "unknown topic").into_response();
    }
    Sse::new(subscribe(state.tx.subscribe()))
        .keep_alive(KeepAlive::new().interval(state.keep_alive))
        .into_response()
}

/// The receiver as a stream of SSE events; lagged events are skipped (counted as lost).
fn subscribe(
    rx: broadcast::Receiver<(u64, Arc<str>)>,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok((id, data)) => {
                    let event = Event::default()
                        .id(id.to_string())
                        .event("tick")
                        .data(&*data);
                    return Some((Ok(event), rx));
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
    let (tx, _) = broadcast::channel(RING);
    let state = AppState {
        tx,
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

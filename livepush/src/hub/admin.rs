//! The live admin page of [`Hub::admin_routes`](super::Hub::admin_routes): `GET /admin` (one
//! self-contained HTML page: no CDN, no external file), `GET /admin/stats` (its SSE stream, one
//! `stats` snapshot a second) and `GET /admin/tail?topic=…` (SSE: the events of one topic as
//! this instance delivers them, for operators).
//!
//! The snapshot carries the numbers `/metrics` serves, read from the same registry, so the page
//! and Prometheus never disagree; the page keeps the history it draws (its charts start when it
//! opens).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Extension, RawQuery};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use http_body::Frame;
use serde_json::{json, Map, Value};

use super::Hub;
use crate::connections::{Admission, Registration};
use crate::envelope::Envelope;
use crate::event::{EventId, EventName};
use crate::fanout::Connection;
use crate::metrics::Metrics;
use crate::queue::Taken;
use crate::topic::Topic;

/// How often the stats stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);
/// Topics listed in a snapshot, those with the most local subscribers first.
const TOPICS_LISTED: usize = 20;
/// Events a tail stream keeps queued for a slow reader before it misses some.
const TAIL_QUEUE: usize = 256;

const STATS: EventName = EventName::from_static("stats");
const TAIL: EventName = EventName::from_static("tail");

/// Only what the page itself holds: inline script and style, and requests to this origin.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

pub(super) async fn page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        )],
        Html(include_str!("admin.html")),
    )
        .into_response()
}

fn sse(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache, no-transform"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn stats(Extension(hub): Extension<Hub>) -> Response {
    let ticks = futures_util::stream::unfold((hub, 0u64), |(hub, n)| async move {
        if n > 0 {
            tokio::time::sleep(EVERY).await;
        }
        if hub.is_shutting_down() {
            return None;
        }
        let data = snapshot(&hub).await.to_string();
        let frame = crate::sse::event(EventId::new(n + 1), &STATS, data.as_bytes());
        Some((Ok::<_, Infallible>(frame), (hub, n + 1)))
    });
    sse(Body::from_stream(ticks))
}

/// What the page draws: every sample of `/metrics` by its name (with labels), the topics with
/// the most local subscribers (with, where the broker can say, how many instances of the
/// deployment have subscribers of each: `instances`, else `null`), the broker's state, and the
/// last gaps it reported.
async fn snapshot(hub: &Hub) -> Value {
    let mut samples = Map::new();
    for line in hub.metrics_text().lines() {
        if line.starts_with('#') {
            continue;
        }
        // exemplars follow ` # `: only the sample is read
        let sample = line.split(" # ").next().unwrap_or(line);
        if let Some((name, value)) = sample.rsplit_once(' ') {
            if let Ok(value) = value.parse::<f64>() {
                samples.insert(name.to_owned(), json!(value));
            }
        }
    }
    let mut topics = hub.subscriber_counts();
    topics.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    topics.truncate(TOPICS_LISTED);
    let listed: Vec<Topic> = topics.iter().map(|(topic, _)| topic.clone()).collect();
    let (ready, processes) = tokio::join!(
        tokio::time::timeout(EVERY / 2, hub.ready()),
        tokio::time::timeout(EVERY / 2, hub.inner.broker.watching_processes(&listed)),
    );
    let ready = match ready {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 500 ms".to_owned()),
    };
    // The deployment's side where the broker can say: how many instances have subscribers.
    let processes = processes.ok().flatten().filter(|p| p.len() == listed.len());
    let topics: Vec<Value> = topics
        .iter()
        .enumerate()
        .map(|(i, (topic, n))| {
            json!({
                "topic": topic.as_str(),
                "subscribers": n,
                "instances": processes.as_ref().map(|p| p[i]),
            })
        })
        .collect();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "at_ms": at,
        "broker": {
            "kind": hub.broker_kind(),
            "ready": ready.is_ok(),
            "error": ready.err(),
        },
        "connections": hub.connection_count(),
        "topics": topics,
        "gaps": hub.metrics().recent_gaps.list(),
        "metrics": samples,
    })
}

pub(super) async fn tail(Extension(hub): Extension<Hub>, RawQuery(query): RawQuery) -> Response {
    let topic = serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "topic"))
        .map(|(_, v)| v);
    let topic = match topic.as_deref().map(Topic::new) {
        Some(Ok(topic)) => topic,
        Some(Err(error)) => return bad_request("invalid_topic", &error.to_string()),
        None => {
            return bad_request(
                "no_topics",
                "name the topic to tail: /admin/tail?topic=NAME",
            )
        }
    };
    let topics = vec![topic];
    let admission = match hub.admit(&topics) {
        Ok(admission) => admission,
        Err(error) => return error.into_response(),
    };
    let conn = Arc::new(Connection::new(
        admission.id(),
        None,
        crate::config::SlowConsumerPolicy::Notify,
        TAIL_QUEUE,
    ));
    let registration = hub.register(topics, &conn);
    let mut heartbeat = tokio::time::interval(hub.config().heartbeat);
    heartbeat.reset();
    sse(Body::new(Tail {
        conn,
        metrics: hub.metrics().clone(),
        batch: VecDeque::new(),
        heartbeat,
        heartbeat_frame: hub.heartbeat_frame().clone(),
        _registration: registration,
        _admission: admission,
    }))
}

fn bad_request(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// A tail's body: each event of the topic as a `tail` event whose data says what it was
/// (`{"id","event","topic","category","data"}`), heartbeats in between.
struct Tail {
    conn: Arc<Connection>,
    metrics: Arc<Metrics>,
    batch: VecDeque<Arc<Envelope>>,
    heartbeat: tokio::time::Interval,
    heartbeat_frame: Bytes,
    // Dropped with the body: the topic is unwatched and the connection given back.
    _registration: Registration,
    _admission: Admission,
}

impl Tail {
    fn encode(envelope: &Envelope) -> Bytes {
        let data = serde_json::from_slice::<Value>(envelope.data()).unwrap_or(Value::Null);
        let described = json!({
            "id": envelope.id().to_string(),
            "event": envelope.event().as_str(),
            "topic": envelope.topic().as_str(),
            "category": envelope.category(),
            "data": data,
        });
        crate::sse::event(envelope.id(), &TAIL, described.to_string().as_bytes())
    }
}

impl http_body::Body for Tail {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        match this
            .conn
            .queue
            .poll_take(cx, &mut this.batch, TAIL_QUEUE, |_| false)
        {
            Taken::Events(_) => {
                let mut out = BytesMut::new();
                let mut queued = 0usize;
                for envelope in this.batch.drain(..) {
                    queued += envelope.frame().len();
                    out.extend_from_slice(&Tail::encode(&envelope));
                }
                this.metrics.queued_bytes.dec_by(queued as i64);
                Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
            }
            Taken::Closed => Poll::Ready(None),
            Taken::Empty | Taken::Held => match this.heartbeat.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(this.heartbeat_frame.clone())))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let left = self.conn.queue.close_and_clear();
        if left > 0 {
            self.metrics.queued_bytes.dec_by(left as i64);
        }
    }
}

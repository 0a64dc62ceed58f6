//! Trace propagation (feature `otel`) across two instances on one real `redis-server`, with the
//! OpenTelemetry SDK's in-memory exporter in this process: a `POST` gives a trace whose publish
//! span is the parent of, and is linked from, the delivery span of each instance, directly,
//! through the outbox, and through the retry buffer while Redis is down.
//!
//! A process of its own: the `tracing-opentelemetry` layer is installed as the global subscriber
//! (see `tests/tracing_spans.rs` for why not a thread-local one; the exporter and the span
//! readers are `support::traces`, shared with `tests/redis_cluster`). The tests share the
//! exporter, so each publishes on a topic of its own and reads only the spans of its topic.

#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::__private::{encode, PublishContext, SubscribeContext};
use livepush::outbox::Outbox;
use livepush::{Hub, HubBuilder, RouterExt};
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::{json, Value};
use support::traces::{
    exporter, int_attribute, one_publish_linked_from_two_deliveries, spans_of, text_attribute,
};
use support::{
    eventually, http, metric, wait_for_status, NatsServer, RedisServer, Sentinel, Sqlite,
    SseClient, TestServer,
};
use tracing::Instrument;

/// Every request in a span, as an HTTP tracing layer (tower-http's `TraceLayer`) would make it.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
    );
    next.run(request).instrument(span).await
}

/// `GET /events?topic=…`.
async fn events(ctx: SubscribeContext) -> Response {
    ctx.from_query().await
}

/// `POST /comments/{topic}`, published as `#[publish_event(topic = "{topic}", event =
/// "comment_created")]` expands: after the 201, through `PublishContext`.
async fn create(
    publish: PublishContext,
    Path(topic): Path<String>,
    Json(comment): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let response = (StatusCode::CREATED, Json(comment));
    publish
        .publish("comment_created", None, topic, &encode(&response.1 .0))
        .await;
    response
}

/// `POST /outbox/{topic}`: the comment written through the outbox in a transaction.
async fn create_in_outbox(
    State((pool, outbox)): State<(sqlx::SqlitePool, Outbox)>,
    Path(topic): Path<String>,
    Json(comment): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let tx = pool.begin().await.unwrap();
    outbox
        .commit(tx, &topic, "comment_created", &comment)
        .await
        .unwrap();
    (StatusCode::CREATED, Json(comment))
}

fn app(hub: &Hub, outbox: Option<(sqlx::SqlitePool, Outbox)>) -> Router {
    let mut app = Router::new()
        .route("/events", get(events))
        .route("/comments/{topic}", post(create));
    if let Some(state) = outbox {
        app = app.merge(
            Router::new()
                .route("/outbox/{topic}", post(create_in_outbox))
                .with_state(state),
        );
    }
    app.livepush(hub)
        .merge(hub.admin_routes())
        .layer(middleware::from_fn(request_span))
}

/// Replay on: an instance that reconnects to Redis catches up from its streams what was
/// published while its subscription was down (else a reset, and the event is gone for it).
fn builder(redis: &RedisServer) -> HubBuilder {
    Hub::builder()
        .redis(redis.url())
        .replay(1000, Duration::from_secs(600))
}

/// Two instances on `redis`, each served on loopback once ready.
async fn two_instances(
    redis: &RedisServer,
    outbox: Option<(sqlx::SqlitePool, Outbox)>,
) -> [(Hub, TestServer); 2] {
    two_instances_of(|| builder(redis), outbox).await
}

/// Two instances built by `builder`, each served on loopback once ready.
async fn two_instances_of(
    builder: impl Fn() -> HubBuilder,
    outbox: Option<(sqlx::SqlitePool, Outbox)>,
) -> [(Hub, TestServer); 2] {
    let mut out = Vec::new();
    for _ in 0..2 {
        let hub = builder().build().unwrap();
        let server = TestServer::start(app(&hub, outbox.clone())).await;
        wait_for_status(&server.url("/health/ready"), 200).await;
        out.push((hub, server));
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}

/// `n` streams of `topic` on `server`, once the broker delivers the topic to it.
async fn subscribe(server: &TestServer, topic: &str, n: usize) -> Vec<SseClient> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(SseClient::connect(&server.url(&format!("/events?topic={topic}"))).await);
    }
    clients
}

async fn post_comment(server: &TestServer, path: &str, text: &str) {
    let response = http()
        .post(server.url(path))
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Every client's next event is the comment `text`.
async fn all_receive(clients: &mut [SseClient], text: &str) {
    for client in clients {
        let event = loop {
            let event = client.next().await;
            // a Redis that restarted empty is a gap: a reset comes first
            if event.event != "livepush.reset" {
                break event;
            }
        };
        assert_eq!(event.event, "comment_created", "{event:?}");
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data, json!({ "text": text }));
    }
}

/// [`one_publish_linked_from_two_deliveries`] on Redis.
async fn assert_one_publish_linked_from_two_deliveries(topic: &str, counts: [i64; 2]) -> String {
    one_publish_linked_from_two_deliveries("redis", topic, counts).await
}

#[tokio::test]
async fn a_post_gives_one_trace_whose_publish_span_both_instances_deliveries_link_to() {
    exporter();
    let redis = RedisServer::start();
    let [(_a, server_a), (_b, server_b)] = two_instances(&redis, None).await;
    let topic = "direct";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 2).await;

    post_comment(&server_a, &format!("/comments/{topic}"), "traced").await;
    all_receive(&mut on_a, "traced").await;
    all_receive(&mut on_b, "traced").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 2]).await;
    // The publish span is a child of the request that published.
    let spans = exporter().get_finished_spans().unwrap();
    let (publish, _) = spans_of(topic);
    let request = spans
        .iter()
        .find(|s| s.span_context.span_id() == publish[0].parent_span_id)
        .expect("the publish span's parent is exported");
    assert_eq!(request.name, "http.request");
    println!(
        "{} span {}\n{text}",
        request.name,
        request.span_context.span_id()
    );

    // The publish-to-queue histogram has an exemplar with the trace id, on each instance.
    let trace = publish[0].span_context.trace_id().to_string();
    for server in [&server_a, &server_b] {
        let metrics = http()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric(
                &metrics,
                "livepush_delivery_latency_seconds_count{broker=\"redis\"}"
            ),
            1.0,
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("# {{trace_id=\"{trace}\"}}")),
            "an exemplar names trace {trace}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn an_event_written_through_the_outbox_carries_its_trace_through_commit_and_relay() {
    exporter();
    let redis = RedisServer::start();
    let db = Sqlite::create();
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let outbox = Outbox::connect(&db.url).unwrap();
    outbox.ensure_schema().await.unwrap();
    let [(a, server_a), (_b, server_b)] = two_instances(&redis, Some((pool, outbox.clone()))).await;
    // one relay, in A: B's delivery comes from Redis only
    let _relay = outbox.relay(&a).start();
    let topic = "outboxed";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 2).await;

    post_comment(&server_b, &format!("/outbox/{topic}"), "committed").await;
    all_receive(&mut on_a, "committed").await;
    all_receive(&mut on_b, "committed").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 2]).await;
    let (publish, _) = spans_of(topic);
    assert_eq!(
        text_attribute(&publish[0], "messaging.operation.type"),
        "create"
    );
    println!("{text}");
}

#[tokio::test]
async fn an_event_buffered_while_redis_is_down_keeps_its_trace_until_published() {
    exporter();
    let mut redis = RedisServer::start();
    let [(_a, server_a), (_b, server_b)] = two_instances(&redis, None).await;
    let topic = "buffered";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 2).await;

    redis.kill();
    wait_for_status(&server_a.url("/health/ready"), 503).await;
    post_comment(&server_a, &format!("/comments/{topic}"), "waited").await;
    let text = http()
        .get(server_a.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "livepush_retry_buffer_events"), 1.0, "{text}");
    // held back a while: the time since publish covers the wait
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    for server in [&server_a, &server_b] {
        wait_for_status(&server.url("/health/ready"), 200).await;
    }
    all_receive(&mut on_a, "waited").await;
    all_receive(&mut on_b, "waited").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 2]).await;
    let (_, deliveries) = spans_of(topic);
    for d in &deliveries {
        assert!(
            int_attribute(d, "livepush.since_publish_us") >= 300_000,
            "the delivery counts the time in the retry buffer: {d:?}"
        );
    }
    println!("{text}");
}

#[tokio::test]
async fn a_post_through_nats_gives_one_trace_whose_publish_span_both_instances_link_to() {
    exporter();
    let nats = NatsServer::start();
    let builder = || {
        Hub::builder()
            .nats(nats.url())
            .replay(1000, Duration::from_secs(600))
    };
    let [(_a, server_a), (_b, server_b)] = two_instances_of(builder, None).await;
    let topic = "over-nats";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 2).await;

    post_comment(&server_a, &format!("/comments/{topic}"), "over nats").await;
    all_receive(&mut on_a, "over nats").await;
    all_receive(&mut on_b, "over nats").await;
    let text = one_publish_linked_from_two_deliveries("nats", topic, [1, 2]).await;
    // the publish span is the request's child, as on Redis
    let spans = exporter().get_finished_spans().unwrap();
    let (publish, _) = spans_of(topic);
    let request = spans
        .iter()
        .find(|s| s.span_context.span_id() == publish[0].parent_span_id)
        .expect("the publish span's parent is exported");
    assert_eq!(request.name, "http.request", "{text}");
    println!("{text}");
}

#[tokio::test]
async fn a_publish_outside_any_span_records_nothing_and_one_in_a_task_span_starts_a_trace() {
    exporter();
    let redis = RedisServer::start();
    let [(a, server_a), (_b, server_b)] = two_instances(&redis, None).await;
    // No span around it (an uninstrumented background task): nothing to link to, so no publish
    // span is built (that cost every such publish about 5 µs) and no delivery span either.
    let untraced = "untraced";
    let mut on_a = subscribe(&server_a, untraced, 1).await;
    let mut on_b = subscribe(&server_b, untraced, 1).await;
    a.publish(untraced, "comment_created", &json!({ "text": "untraced" }))
        .await
        .unwrap();
    all_receive(&mut on_a, "untraced").await;
    all_receive(&mut on_b, "untraced").await;
    // The same task in a span of its own (`#[tracing::instrument]`): a trace of its own, which
    // the sampler decides at that span.
    let topic = "in-a-task";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 1).await;
    a.publish(topic, "comment_created", &json!({ "text": "in a task" }))
        .instrument(tracing::info_span!("nightly digest"))
        .await
        .unwrap();
    all_receive(&mut on_a, "in a task").await;
    all_receive(&mut on_b, "in a task").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 1]).await;
    let (publish, _) = spans_of(topic);
    let task = support::traces::span_by_id(publish[0].parent_span_id).expect("the task's span");
    assert_eq!(task.name, "nightly digest", "{text}");
    assert_eq!(task.parent_span_id, SpanId::INVALID, "{text}");
    // by then the untraced publication was delivered on both instances long ago
    let (publish, deliveries) = spans_of(untraced);
    assert!(
        publish.is_empty() && deliveries.is_empty(),
        "{publish:?} {deliveries:?}"
    );
}

#[tokio::test]
async fn a_post_through_sentinel_gives_one_trace_whose_publish_span_both_instances_link_to() {
    exporter();
    let topology = Sentinel::start().await;
    let builder = || {
        Hub::builder()
            .redis(topology.url())
            .replay(1000, Duration::from_secs(600))
    };
    let [(_a, server_a), (_b, server_b)] = two_instances_of(builder, None).await;
    let topic = "over-sentinel";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 2).await;

    post_comment(&server_a, &format!("/comments/{topic}"), "over sentinel").await;
    all_receive(&mut on_a, "over sentinel").await;
    all_receive(&mut on_b, "over sentinel").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 2]).await;
    let (publish, _) = spans_of(topic);
    let request = support::traces::span_by_id(publish[0].parent_span_id).expect("the request");
    assert_eq!(request.name, "http.request", "{text}");
    println!("{text}");
}

#[tokio::test]
async fn an_unsampled_publish_is_delivered_and_timed_without_delivery_spans() {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    exporter();
    let redis = RedisServer::start();
    let [(a, server_a), (_b, server_b)] = two_instances(&redis, None).await;
    let topic = "unsampled";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 1).await;
    // A request whose caller decided not to sample (traceparent flags 00): the default sampler
    // follows the parent, so nothing of this trace is recorded, anywhere.
    let caller = SpanContext::new(
        TraceId::from(0x5a5a_u128),
        SpanId::from(0x77_u64),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let request = tracing::info_span!("http.request");
    request
        .set_parent(opentelemetry::Context::new().with_remote_span_context(caller))
        .unwrap();
    a.publish(topic, "comment_created", &json!({ "text": "unsampled" }))
        .instrument(request)
        .await
        .unwrap();
    all_receive(&mut on_a, "unsampled").await;
    all_receive(&mut on_b, "unsampled").await;
    // the latency is still observed (after the event was queued), without an exemplar
    for server in [&server_a, &server_b] {
        let url = server.url("/metrics");
        eventually("the delivery is timed", || async {
            let text = http().get(&url).send().await.unwrap().text().await.unwrap();
            metric(
                &text,
                "livepush_delivery_latency_seconds_count{broker=\"redis\"}",
            ) == 1.0
        })
        .await;
        let text = http().get(&url).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("trace_id="), "{text}");
    }
    let spans = exporter().get_finished_spans().unwrap();
    assert!(
        spans
            .iter()
            .all(|s| s.span_context.trace_id() != TraceId::from(0x5a5a_u128)),
        "nothing of an unsampled trace is exported"
    );
    let (publish, deliveries) = spans_of(topic);
    assert!(publish.is_empty() && deliveries.is_empty());
}

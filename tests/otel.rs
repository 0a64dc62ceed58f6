//! Trace propagation (feature `otel`) across two instances on one real `redis-server`, with the
//! OpenTelemetry SDK's in-memory exporter in this process: a `POST` gives a trace whose publish
//! span is the parent of, and is linked from, the delivery span of each instance, directly,
//! through the outbox, and through the retry buffer while Redis is down.
//!
//! A process of its own: the `tracing-opentelemetry` layer is installed as the global subscriber
//! (see `tests/tracing_spans.rs` for why not a thread-local one). The tests share the exporter,
//! so each publishes on a topic of its own and reads only the spans of its topic.

#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::OnceLock;
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
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use support::{
    eventually, http, metric, wait_for_status, NatsServer, RedisServer, Sqlite, SseClient,
    TestServer,
};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The exporter every span of this process ends in (installed once, always sampled).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("livepush-tests");
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .init();
        // Kept for the life of the process: dropping it would shut the exporter down.
        std::mem::forget(provider);
        exporter
    })
}

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

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text_attribute(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn int_attribute(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(OtelValue::I64(n)) => *n,
        // tracing-opentelemetry records a u64 field set after the span started as its text
        Some(OtelValue::String(s)) => s
            .as_str()
            .parse()
            .unwrap_or_else(|_| panic!("{key} of {} is {s:?}", span.name)),
        other => panic!("{key} of {} is {other:?}", span.name),
    }
}

/// The finished spans of `topic`: its publish span and its delivery spans.
fn spans_of(topic: &str) -> (Vec<SpanData>, Vec<SpanData>) {
    let spans = exporter().get_finished_spans().unwrap();
    let of_topic = |name: &str| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| s.name == name && text_attribute(s, "messaging.destination.name") == topic)
            .cloned()
            .collect()
    };
    (of_topic("livepush.publish"), of_topic("livepush.deliver"))
}

/// The trace of one publication on `topic`, delivered by two instances to `counts` local
/// streams each, as text (what the exporter holds): asserts that both delivery spans are
/// children of the publish span and link to it, on Redis.
async fn assert_one_publish_linked_from_two_deliveries(topic: &str, counts: [i64; 2]) -> String {
    assert_one_publish_linked_from_two_deliveries_on("redis", topic, counts).await
}

/// [`assert_one_publish_linked_from_two_deliveries`], the deliveries on `broker`.
async fn assert_one_publish_linked_from_two_deliveries_on(
    broker: &str,
    topic: &str,
    counts: [i64; 2],
) -> String {
    eventually(
        &format!("a publish and two deliveries of {topic}"),
        || async {
            let (publish, deliveries) = spans_of(topic);
            publish.len() == 1 && deliveries.len() == 2
        },
    )
    .await;
    let (publish, mut deliveries) = spans_of(topic);
    let publish = &publish[0];
    let trace: TraceId = publish.span_context.trace_id();
    let id: SpanId = publish.span_context.span_id();
    deliveries.sort_by_key(|d| int_attribute(d, "livepush.subscribers"));
    let mut seen = Vec::new();
    for delivery in &deliveries {
        assert_eq!(delivery.span_context.trace_id(), trace, "{delivery:?}");
        assert_eq!(delivery.parent_span_id, id, "{delivery:?}");
        assert!(delivery.parent_span_is_remote, "{delivery:?}");
        let links: Vec<_> = delivery
            .links
            .iter()
            .map(|l| l.span_context.span_id())
            .collect();
        assert_eq!(links, [id], "the delivery links to the publish span");
        assert_eq!(text_attribute(delivery, "livepush.broker"), broker);
        assert!(int_attribute(delivery, "livepush.since_publish_us") >= 0);
        seen.push(int_attribute(delivery, "livepush.subscribers"));
    }
    // one span per instance, counting its streams: never one per connection
    assert_eq!(seen, counts);
    let mut text = format!(
        "trace {trace}\n  {} span {id} parent {} ({})\n",
        publish.name,
        publish.parent_span_id,
        text_attribute(publish, "messaging.operation.type"),
    );
    for d in &deliveries {
        text.push_str(&format!(
            "    {} span {} parent {} link {} broker={} subscribers={} since_publish_us={}\n",
            d.name,
            d.span_context.span_id(),
            d.parent_span_id,
            d.links
                .iter()
                .map(|l| l.span_context.span_id().to_string())
                .collect::<Vec<_>>()
                .join(","),
            text_attribute(d, "livepush.broker"),
            int_attribute(d, "livepush.subscribers"),
            int_attribute(d, "livepush.since_publish_us"),
        ));
    }
    text
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
    let text = assert_one_publish_linked_from_two_deliveries_on("nats", topic, [1, 2]).await;
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
async fn hub_publish_outside_any_request_starts_a_trace_of_its_own() {
    exporter();
    let redis = RedisServer::start();
    let [(a, server_a), (_b, server_b)] = two_instances(&redis, None).await;
    let topic = "rooted";
    let mut on_a = subscribe(&server_a, topic, 1).await;
    let mut on_b = subscribe(&server_b, topic, 1).await;
    // no span around it: the publish span is a root, and still has a context to carry
    a.publish(topic, "comment_created", &json!({ "text": "rooted" }))
        .await
        .unwrap();
    all_receive(&mut on_a, "rooted").await;
    all_receive(&mut on_b, "rooted").await;
    let text = assert_one_publish_linked_from_two_deliveries(topic, [1, 1]).await;
    let (publish, _) = spans_of(topic);
    assert_eq!(publish[0].parent_span_id, SpanId::INVALID, "{text}");
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

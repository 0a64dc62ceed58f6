//! OpenTelemetry in a test process (feature `otel`): the SDK's in-memory exporter behind a
//! `tracing-opentelemetry` layer (every span sampled), and readers of the spans it holds.
//!
//! A process has one global subscriber: `tests/otel.rs` installs the layer alone
//! ([`exporter`]), `tests/redis_cluster` next to its log capture
//! ([`capture_logs_globally`](super::observe::capture_logs_globally) adds [`layer`]). Tests
//! sharing the exporter publish on topics of their own and read only their topic's spans.

use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use super::eventually;

static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();

/// The `tracing-opentelemetry` layer (INFO and above) whose spans end in [`exporter`]: for a
/// process that installs its own global subscriber. Once per process.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = InMemorySpanExporter::default();
    // the SDK's default sampler: every new trace sampled, children follow their parent
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("livepush-tests");
    // Kept for the life of the process: dropping it would shut the exporter down.
    std::mem::forget(provider);
    assert!(
        EXPORTER.set(exporter).is_ok(),
        "one OpenTelemetry layer per test process"
    );
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}

/// The exporter every span of this process ends in; installs the layer as the global subscriber
/// on first use unless the process did ([`layer`]).
pub fn exporter() -> &'static InMemorySpanExporter {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if EXPORTER.get().is_none() {
            tracing_subscriber::registry().with(layer()).init();
        }
    });
    EXPORTER.get().expect("installed above or by the process")
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Attribute `key` of `span` as text (`""` when absent).
pub fn text_attribute(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Integer attribute `key` of `span`.
pub fn int_attribute(span: &SpanData, key: &str) -> i64 {
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

/// The finished spans of `topic`: its publish spans and its delivery spans.
pub fn spans_of(topic: &str) -> (Vec<SpanData>, Vec<SpanData>) {
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

/// The finished span with id `id`, if exported.
pub fn span_by_id(id: SpanId) -> Option<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|s| s.span_context.span_id() == id)
}

/// The trace of one publication on `topic`, delivered by two instances to `counts` local
/// streams each, as text (what the exporter holds): asserts that both delivery spans are
/// children of the publish span and link to it, and name `broker`.
pub async fn one_publish_linked_from_two_deliveries(
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

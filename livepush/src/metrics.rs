//! Prometheus metrics of one hub, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Broker payloads that were not a well-formed event (a bad id, an invalid event or category
/// name, broken framing), dropped without reaching a stream. One count per process: the
/// decoder runs below any one hub. Every hub's `/metrics` shows it.
pub(crate) static MALFORMED_PAYLOADS: std::sync::LazyLock<Counter> =
    std::sync::LazyLock::new(Counter::default);

/// A label set with one label.
pub(crate) type Label = [(&'static str, &'static str); 1];

/// Every metric a hub keeps. Each hub has its own registry, so several hubs (tests, tenants) in
/// one process do not mix their numbers.
#[cfg_attr(
    not(any(feature = "outbox-postgres", feature = "outbox-sqlite")),
    allow(dead_code)
)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) connections_total: Counter,
    pub(crate) connections_rejected: Family<Label, Counter>,
    pub(crate) subscriptions: Gauge,
    pub(crate) topics: Gauge,
    pub(crate) published: Counter,
    pub(crate) delivered: Counter,
    pub(crate) dropped: Counter,
    pub(crate) replayed: Counter,
    pub(crate) publish_errors: Family<Label, Counter>,
    pub(crate) publish_latency: Histogram,
    pub(crate) broker_reconnects: Counter,
    /// Gaps the broker detected and turned into resets (a lost connection without a complete
    /// catch-up, a server restarted empty, a subscription the server dropped).
    pub(crate) broker_gaps: Counter,
    pub(crate) retry_buffer_events: Gauge,
    pub(crate) events_retried: Counter,
    pub(crate) events_given_up: Counter,
    pub(crate) slow_consumer_disconnects: Counter,
    /// Bytes of frames waiting in connection queues (a frame queued for n connections counts n
    /// times, though it is stored once).
    pub(crate) queued_bytes: Gauge,
    /// Outbox rows the relays of this process published to the broker.
    pub(crate) outbox_relayed: Counter,
    /// Failed relay rounds (database or broker errors; each is retried with backoff).
    pub(crate) outbox_errors: Counter,
    /// Age of the oldest committed outbox row not relayed yet, as last seen by a relay.
    pub(crate) outbox_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("livepush");
        let connections = Gauge::default();
        let connections_total = Counter::default();
        let connections_rejected = Family::<Label, Counter>::default();
        let subscriptions = Gauge::default();
        let topics = Gauge::default();
        let published = Counter::default();
        let delivered = Counter::default();
        let dropped = Counter::default();
        let replayed = Counter::default();
        let publish_errors = Family::<Label, Counter>::default();
        // 50 µs .. ~1.6 s
        let publish_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let broker_reconnects = Counter::default();
        let broker_gaps = Counter::default();
        let retry_buffer_events = Gauge::default();
        let events_retried = Counter::default();
        let events_given_up = Counter::default();
        let slow_consumer_disconnects = Counter::default();
        let queued_bytes = Gauge::default();
        let outbox_relayed = Counter::default();
        let outbox_errors = Counter::default();
        let outbox_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("connections", "Open SSE connections", connections.clone());
        // Not "connections": the gauge has that family name, and a family must be declared once.
        registry.register(
            "connections_accepted",
            "SSE connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connections_rejected",
            "SSE connections refused, by reason",
            connections_rejected.clone(),
        );
        registry.register(
            "subscriptions",
            "Topic subscriptions of open connections",
            subscriptions.clone(),
        );
        registry.register("topics", "Topics with local subscribers", topics.clone());
        registry.register("events_published", "Events published", published.clone());
        registry.register(
            "events_delivered",
            "Events queued to local subscribers",
            delivered.clone(),
        );
        registry.register(
            "events_dropped",
            "Events not queued because a subscriber's queue was full",
            dropped.clone(),
        );
        registry.register(
            "events_replayed",
            "Events sent from history on reconnect",
            replayed.clone(),
        );
        registry.register(
            "publish_errors",
            "Publishes that failed, by reason",
            publish_errors.clone(),
        );
        registry.register(
            "publish_duration_seconds",
            "Time from publish call to broker acknowledgement",
            publish_latency.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Times the broker connection was re-established",
            broker_reconnects.clone(),
        );
        registry.register(
            "broker_gaps",
            "Gaps in delivery the broker detected; each sent livepush.reset to the streams of the affected topics",
            broker_gaps.clone(),
        );
        registry.register(
            "retry_buffer_events",
            "Publications waiting in the retry buffer for the broker",
            retry_buffer_events.clone(),
        );
        registry.register(
            "events_retried",
            "Buffered publications published late, once the broker answered",
            events_retried.clone(),
        );
        registry.register(
            "events_given_up",
            "Buffered publications dropped (buffer full or too old); their topics were told to reset",
            events_given_up.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Streams closed because the client read too slowly",
            slow_consumer_disconnects.clone(),
        );
        registry.register(
            "broker_malformed_payloads",
            "Broker payloads dropped because they were not a well-formed event (process-wide)",
            MALFORMED_PAYLOADS.clone(),
        );
        registry.register(
            "queued_bytes",
            "Bytes of event frames waiting in connection queues",
            queued_bytes.clone(),
        );
        registry.register(
            "outbox_relayed",
            "Outbox rows published to the broker by this process's relay",
            outbox_relayed.clone(),
        );
        registry.register(
            "outbox_errors",
            "Outbox relay rounds that failed (database or broker) and were retried",
            outbox_errors.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest committed outbox row not relayed yet",
            outbox_lag.clone(),
        );
        Metrics {
            registry,
            connections,
            connections_total,
            connections_rejected,
            subscriptions,
            topics,
            published,
            delivered,
            dropped,
            replayed,
            publish_errors,
            publish_latency,
            broker_reconnects,
            broker_gaps,
            retry_buffer_events,
            events_retried,
            events_given_up,
            slow_consumer_disconnects,
            queued_bytes,
            outbox_relayed,
            outbox_errors,
            outbox_lag,
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn reject(&self, reason: &'static str) {
        self.connections_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub(crate) fn publish_error(&self, reason: &'static str) {
        self.publish_errors
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

//! Prometheus metrics of one hub, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

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
    /// Broker payloads that were not a well-formed event (a bad id, an invalid event or category
    /// name, broken framing), dropped without reaching a stream; counted by the listener that
    /// read them, so each hub counts what its own broker received.
    pub(crate) malformed_payloads: Counter,
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

/// Registers `metric` under `name` and hands it back, so each metric is named once.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("livepush");
        let r = &mut registry;
        Metrics {
            connections: add(r, "connections", "Open SSE connections", Gauge::default()),
            // Not "connections": the gauge has that family name, and a family must be declared once.
            connections_total: add(
                r,
                "connections_accepted",
                "SSE connections accepted",
                Counter::default(),
            ),
            connections_rejected: add(
                r,
                "connections_rejected",
                "SSE connections refused, by reason",
                Family::default(),
            ),
            subscriptions: add(
                r,
                "subscriptions",
                "Topic subscriptions of open connections",
                Gauge::default(),
            ),
            topics: add(r, "topics", "Topics with local subscribers", Gauge::default()),
            published: add(r, "events_published", "Events published", Counter::default()),
            delivered: add(
                r,
                "events_delivered",
                "Events queued to local subscribers",
                Counter::default(),
            ),
            dropped: add(
                r,
                "events_dropped",
                "Events not queued because a subscriber's queue was full",
                Counter::default(),
            ),
            replayed: add(
                r,
                "events_replayed",
                "Events sent from history on reconnect",
                Counter::default(),
            ),
            publish_errors: add(
                r,
                "publish_errors",
                "Publishes that failed, by reason",
                Family::default(),
            ),
            publish_latency: add(
                r,
                "publish_duration_seconds",
                "Time from publish call to broker acknowledgement",
                // 50 µs .. ~1.6 s
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            ),
            broker_reconnects: add(
                r,
                "broker_reconnects",
                "Times the broker connection was re-established",
                Counter::default(),
            ),
            broker_gaps: add(
                r,
                "broker_gaps",
                "Gaps in delivery the broker detected; each sent livepush.reset to the streams of the affected topics",
                Counter::default(),
            ),
            retry_buffer_events: add(
                r,
                "retry_buffer_events",
                "Publications waiting in the retry buffer for the broker",
                Gauge::default(),
            ),
            events_retried: add(
                r,
                "events_retried",
                "Buffered publications published late, once the broker answered",
                Counter::default(),
            ),
            events_given_up: add(
                r,
                "events_given_up",
                "Buffered publications dropped (buffer full or too old); their topics were told to reset",
                Counter::default(),
            ),
            slow_consumer_disconnects: add(
                r,
                "slow_consumer_disconnects",
                "Streams closed because the client read too slowly",
                Counter::default(),
            ),
            malformed_payloads: add(
                r,
                "broker_malformed_payloads",
                "Broker payloads dropped because they were not a well-formed event",
                Counter::default(),
            ),
            queued_bytes: add(
                r,
                "queued_bytes",
                "Bytes of event frames waiting in connection queues",
                Gauge::default(),
            ),
            outbox_relayed: add(
                r,
                "outbox_relayed",
                "Outbox rows published to the broker by this process's relay",
                Counter::default(),
            ),
            outbox_errors: add(
                r,
                "outbox_errors",
                "Outbox relay rounds that failed (database or broker) and were retried",
                Counter::default(),
            ),
            outbox_lag: add(
                r,
                "outbox_lag_seconds",
                "Age of the oldest committed outbox row not relayed yet",
                Gauge::default(),
            ),
            registry,
        }
    }

    /// The metrics in the OpenMetrics text format (what Prometheus scrapes).
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

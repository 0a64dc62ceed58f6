//! Prometheus metrics of one hub, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// A label set with one label.
pub(crate) type Label = [(&'static str, &'static str); 1];

/// The exemplar of an observation: the trace it belongs to (`trace_id`, 32 hex digits).
pub(crate) type TraceExemplar = [(&'static str, String); 1];

/// A histogram whose buckets keep the trace id of their latest sampled observation.
pub(crate) type TracedHistogram = HistogramWithExemplars<TraceExemplar>;

/// Publish-to-queue latency buckets: 100 µs .. ~6.5 s (a retry buffer or an outbox holds
/// events for seconds).
fn delivery_latency_histogram() -> TracedHistogram {
    TracedHistogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

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
    /// Time from publish to the event being queued to this instance's streams, by broker
    /// kind, with the trace id of sampled events as exemplars. Observed for events that carry
    /// a trace context (feature `otel`), so it stays empty without the feature.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) delivery_latency: Family<Label, TracedHistogram, fn() -> TracedHistogram>,
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
    /// The last gaps the broker reported, for the admin page (not a Prometheus metric:
    /// `broker_gaps` counts them).
    pub(crate) recent_gaps: RecentGaps,
}

/// The last [`RecentGaps::KEPT`] gaps the broker reported: when, why, how many topics, and the
/// id their streams resume from.
#[derive(Default)]
pub(crate) struct RecentGaps(std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>);

impl RecentGaps {
    const KEPT: usize = 10;

    pub(crate) fn record(&self, reason: &str, topics: usize, resume_at: u64) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let gap = serde_json::json!({
            "at_ms": at_ms,
            "reason": reason,
            "topics": topics,
            "resume_at": resume_at.to_string(),
        });
        let mut gaps = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if gaps.len() == Self::KEPT {
            gaps.pop_front();
        }
        gaps.push_back(gap);
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<serde_json::Value> {
        let gaps = self.0.lock().unwrap_or_else(|p| p.into_inner());
        gaps.iter().rev().cloned().collect()
    }
}

/// Registers a handle on `metric` under `name`: the registry and the field share one value.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: &M) {
    registry.register(name, help, metric.clone());
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("livepush"),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_rejected: Family::default(),
            subscriptions: Gauge::default(),
            topics: Gauge::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            replayed: Counter::default(),
            publish_errors: Family::default(),
            // 50 µs .. ~1.6 s
            publish_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            delivery_latency: Family::new_with_constructor(delivery_latency_histogram),
            broker_reconnects: Counter::default(),
            broker_gaps: Counter::default(),
            retry_buffer_events: Gauge::default(),
            events_retried: Counter::default(),
            events_given_up: Counter::default(),
            slow_consumer_disconnects: Counter::default(),
            malformed_payloads: Counter::default(),
            queued_bytes: Gauge::default(),
            outbox_relayed: Counter::default(),
            outbox_errors: Counter::default(),
            outbox_lag: Gauge::default(),
            recent_gaps: RecentGaps::default(),
        };
        // Group by group, in the order `/metrics` lists them (dashboards and the test below
        // read that order): a field left out here is missing from the test's expected text.
        metrics.register_connections();
        metrics.register_events();
        metrics.register_broker();
        metrics.register_retry_buffer();
        metrics.register_queues();
        metrics.register_outbox();
        metrics
    }

    /// Admission and subscriptions.
    fn register_connections(&mut self) {
        let r = &mut self.registry;
        add(r, "connections", "Open SSE connections", &self.connections);
        // Not "connections": the gauge has that family name, and a family must be declared once.
        let accepted = "SSE connections accepted";
        add(r, "connections_accepted", accepted, &self.connections_total);
        let rejected = "SSE connections refused, by reason";
        add(
            r,
            "connections_rejected",
            rejected,
            &self.connections_rejected,
        );
        let subscriptions = "Topic subscriptions of open connections";
        add(r, "subscriptions", subscriptions, &self.subscriptions);
        add(r, "topics", "Topics with local subscribers", &self.topics);
    }

    /// Publishing and delivering events.
    fn register_events(&mut self) {
        let r = &mut self.registry;
        add(r, "events_published", "Events published", &self.published);
        let delivered = "Events queued to local subscribers";
        add(r, "events_delivered", delivered, &self.delivered);
        let dropped = "Events not queued because a subscriber's queue was full";
        add(r, "events_dropped", dropped, &self.dropped);
        let replayed = "Events sent from history on reconnect";
        add(r, "events_replayed", replayed, &self.replayed);
        let errors = "Publishes that failed, by reason";
        add(r, "publish_errors", errors, &self.publish_errors);
        let latency = "Time from publish call to broker acknowledgement";
        add(
            r,
            "publish_duration_seconds",
            latency,
            &self.publish_latency,
        );
        let delivery = "Time from publish to the event being queued to this instance's streams, by broker (events with a trace context: feature otel)";
        add(
            r,
            "delivery_latency_seconds",
            delivery,
            &self.delivery_latency,
        );
    }

    /// The broker's connection and the gaps it detected.
    fn register_broker(&mut self) {
        let r = &mut self.registry;
        let reconnects = "Times the broker connection was re-established";
        add(r, "broker_reconnects", reconnects, &self.broker_reconnects);
        let gaps = "Gaps in delivery the broker detected; each sent livepush.reset to the streams of the affected topics";
        add(r, "broker_gaps", gaps, &self.broker_gaps);
    }

    /// Publications that wait for the broker.
    fn register_retry_buffer(&mut self) {
        let r = &mut self.registry;
        let waiting = "Publications waiting in the retry buffer for the broker";
        add(r, "retry_buffer_events", waiting, &self.retry_buffer_events);
        let retried = "Buffered publications published late, once the broker answered";
        add(r, "events_retried", retried, &self.events_retried);
        let given_up = "Buffered publications dropped (buffer full or too old); their topics were told to reset";
        add(r, "events_given_up", given_up, &self.events_given_up);
    }

    /// What did not reach a stream, and what waits for one.
    fn register_queues(&mut self) {
        let r = &mut self.registry;
        let slow = "Streams closed because the client read too slowly";
        add(
            r,
            "slow_consumer_disconnects",
            slow,
            &self.slow_consumer_disconnects,
        );
        let malformed = "Broker payloads dropped because they were not a well-formed event";
        add(
            r,
            "broker_malformed_payloads",
            malformed,
            &self.malformed_payloads,
        );
        let queued = "Bytes of event frames waiting in connection queues";
        add(r, "queued_bytes", queued, &self.queued_bytes);
    }

    /// The outbox relays of this process.
    fn register_outbox(&mut self) {
        let r = &mut self.registry;
        let relayed = "Outbox rows published to the broker by this process's relay";
        add(r, "outbox_relayed", relayed, &self.outbox_relayed);
        let errors = "Outbox relay rounds that failed (database or broker) and were retried";
        add(r, "outbox_errors", errors, &self.outbox_errors);
        let lag = "Age of the oldest committed outbox row not relayed yet";
        add(r, "outbox_lag_seconds", lag, &self.outbox_lag);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric, its name, help, type and place, as a fresh hub renders them (each family with
    /// one label set, since an empty family renders nothing). A change here is a change
    /// dashboards and alerts see: make it on purpose, with a CHANGELOG line.
    #[test]
    fn a_fresh_hub_renders_every_metric_in_its_place() {
        let metrics = Metrics::new();
        metrics.reject("forbidden");
        metrics.publish_error("broker");
        metrics
            .delivery_latency
            .get_or_create(&[("broker", "memory")])
            .observe(0.002, None, None);
        assert_eq!(metrics.render(), include_str!("testdata/metrics-fresh.txt"));
    }

    #[test]
    fn each_hub_counts_only_its_own() {
        let (one, two) = (Metrics::new(), Metrics::new());
        one.malformed_payloads.inc();
        one.published.inc();
        let line = |m: &Metrics, name: &str| {
            let text = m.render();
            text.lines()
                .find(|l| l.starts_with(name))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("{name} missing from {text}"))
        };
        let malformed = "livepush_broker_malformed_payloads_total ";
        assert_eq!(line(&one, malformed), format!("{malformed}1"));
        assert_eq!(line(&two, malformed), format!("{malformed}0"));
        let published = "livepush_events_published_total ";
        assert_eq!(line(&two, published), format!("{published}0"));
    }
}

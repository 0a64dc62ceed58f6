//! Local fan-out: one shared entry per topic, one bounded queue per connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::SlowConsumerPolicy;
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::metrics::Metrics;
use crate::queue::{EventQueue, Pushed};
use crate::recent::Recent;
use crate::sse;
use crate::topic::Topic;

/// One connection: the state it shares between the fan-out (writer) and its stream (reader),
/// listed once under each topic it subscribed.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    /// `None` accepts every category.
    categories: Option<Box<[String]>>,
    policy: SlowConsumerPolicy,
    /// Events dropped for this connection since its stream last reported them.
    pub(crate) missed: AtomicU64,
    /// Set when the queue overflowed under [`SlowConsumerPolicy::Disconnect`]: the stream ends.
    pub(crate) cut_off: AtomicBool,
    /// Events waiting for the stream, in order.
    pub(crate) queue: EventQueue,
}

impl Connection {
    pub(crate) fn new(
        id: u64,
        categories: Option<Box<[String]>>,
        policy: SlowConsumerPolicy,
        queue_capacity: usize,
    ) -> Self {
        Connection {
            id,
            categories,
            policy,
            missed: AtomicU64::new(0),
            cut_off: AtomicBool::new(false),
            queue: EventQueue::new(queue_capacity, crate::queue::MAX_BATCH),
        }
    }

    /// Whether this connection takes an event of `category`; `reset` for a `livepush.reset`
    /// (worked out once per event by the caller, not once per subscriber).
    fn accepts(&self, reset: bool, category: Option<&str>) -> bool {
        // A reset concerns every event of its topic, whatever the category filter.
        if reset {
            return true;
        }
        match (&self.categories, category) {
            (None, _) => true,
            (Some(wanted), Some(category)) => wanted.iter().any(|w| w == category),
            (Some(_), None) => false,
        }
    }
}

/// The local subscribers of one topic.
#[derive(Default)]
struct Subscribers {
    /// What a delivery walks, in no particular order.
    list: Vec<Arc<Connection>>,
    /// Connection id → its index in `list`: removing one of 10,000 subscribers is a lookup
    /// instead of a scan through every connection's `Arc` (under the write lock that every
    /// delivery waits on; a reconnect storm removes them all). The profile is in
    /// `benchmarks/log/analysis-cpu-and-memory.md`, "Where the time goes".
    index: HashMap<u64, usize>,
}

impl Subscribers {
    fn iter(&self) -> std::slice::Iter<'_, Arc<Connection>> {
        self.list.iter()
    }
}

/// Topic → the local subscribers of that topic.
pub(crate) struct Fanout {
    topics: RwLock<HashMap<Topic, Subscribers>>,
    metrics: Arc<Metrics>,
}

impl Fanout {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Fanout {
            topics: RwLock::new(HashMap::new()),
            metrics,
        }
    }

    /// Hands `envelope` to every subscriber of its topic. Never blocks: a full queue applies the
    /// connection's slow-consumer policy. Returns how many queues took it.
    pub(crate) fn deliver(&self, envelope: &Arc<Envelope>) -> u64 {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let Some(subscribers) = topics.get(envelope.topic()) else {
            return 0;
        };
        self.push_to(subscribers.iter(), envelope)
    }

    /// Queues one `livepush.reset` with id `at` for every connection that subscribed any of
    /// `topics`, once per connection however many of them it holds.
    pub(crate) fn reset(&self, topics: &[Topic], at: EventId, data: &[u8]) {
        let Some(first) = topics.first() else {
            return;
        };
        let envelope = Arc::new(Envelope::new(
            at,
            Publication {
                trace: crate::trace::Trace::NONE,
                topic: first.clone(),
                event: crate::sse::RESET,
                category: None,
                data: bytes::Bytes::copy_from_slice(data),
                retain: None,
            },
        ));
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashSet::new();
        let subscribers = topics
            .iter()
            .filter_map(|t| map.get(t))
            .flat_map(Subscribers::iter)
            .filter(|sub| seen.insert(sub.id));
        self.push_to(subscribers, &envelope);
    }

    pub(crate) fn push_to<'a>(
        &self,
        subscribers: impl Iterator<Item = &'a Arc<Connection>>,
        envelope: &Arc<Envelope>,
    ) -> u64 {
        let (mut delivered, mut dropped) = (0u64, 0u64);
        let reset = *envelope.event() == sse::RESET;
        let category = envelope.category();
        for sub in subscribers {
            // A connection that was cut off ends as soon as its body is polled again; until then
            // (a client that stopped reading is not polled) nothing more is queued for it.
            if !sub.accepts(reset, category) || sub.cut_off.load(Ordering::Relaxed) {
                continue;
            }
            match sub.queue.push(envelope) {
                Pushed::Queued => delivered += 1,
                Pushed::Full => {
                    dropped += 1;
                    sub.missed.fetch_add(1, Ordering::Relaxed);
                    if sub.policy == SlowConsumerPolicy::Disconnect
                        && !sub.cut_off.swap(true, Ordering::Relaxed)
                    {
                        self.metrics.slow_consumer_disconnects.inc();
                        // The client replays from its Last-Event-ID: nothing queued will be
                        // sent, so free it now rather than when the connection ends (a client
                        // that stopped reading is closed by the server's write deadline, but
                        // hyper does not poll its body until then).
                        let left = sub.queue.close_and_clear();
                        self.metrics
                            .queued_bytes
                            .dec_by(i64::try_from(left).unwrap_or(i64::MAX));
                    }
                }
                Pushed::Closed => {}
            }
        }
        if delivered > 0 {
            self.metrics.delivered.inc_by(delivered);
            let bytes = delivered.saturating_mul(envelope.frame().len() as u64);
            self.metrics
                .queued_bytes
                .inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped);
        }
        delivered
    }

    /// Adds `sub` to each topic; `on_first` runs (under the lock, so it is ordered with
    /// `on_last`) for each topic that had no local subscriber before.
    pub(crate) fn add(
        &self,
        topics: &[Topic],
        sub: &Arc<Connection>,
        mut on_first: impl FnMut(&Topic),
    ) {
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for topic in topics {
            let subs = map.entry(topic.clone()).or_default();
            if subs.list.is_empty() {
                on_first(topic);
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = subs.index.entry(sub.id) {
                slot.insert(subs.list.len());
                subs.list.push(sub.clone());
            }
        }
        self.metrics.topics.set(map.len() as i64);
    }

    /// Removes connection `conn` from each topic; `on_last` runs for each topic left empty.
    pub(crate) fn remove(&self, topics: &[Topic], conn: u64, mut on_last: impl FnMut(&Topic)) {
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for topic in topics {
            if let Some(subs) = map.get_mut(topic) {
                if let Some(at) = subs.index.remove(&conn) {
                    subs.list.swap_remove(at);
                    if let Some(moved) = subs.list.get(at) {
                        subs.index.insert(moved.id, at);
                    }
                }
                if subs.list.is_empty() {
                    map.remove(topic);
                    on_last(topic);
                }
            }
        }
        self.metrics.topics.set(map.len() as i64);
    }

    /// Closes every queue, which ends every open stream once it has sent what was queued;
    /// returns the topics that were watched.
    pub(crate) fn close_all(&self) -> Vec<Topic> {
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let topics = map.keys().cloned().collect();
        for sub in map.values().flat_map(Subscribers::iter) {
            sub.queue.close();
        }
        map.clear();
        self.metrics.topics.set(0);
        topics
    }

    pub(crate) fn has_subscribers(&self, topic: &Topic) -> bool {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(topic)
    }

    pub(crate) fn topics(&self) -> Vec<Topic> {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    /// Local subscriber count of each topic.
    pub(crate) fn counts(&self) -> Vec<(Topic, usize)> {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(t, s)| (t.clone(), s.list.len())).collect()
    }
}

/// The hub's side of a broker: where events of watched topics are handed over.
#[derive(Clone)]
pub struct Delivery {
    fanout: Arc<Fanout>,
    metrics: Arc<Metrics>,
    /// Woken by [`Delivery::reconnected`]: the hub's retry buffer waits on it between attempts.
    reconnected: Arc<tokio::sync::Notify>,
    /// The recent-history cache (replay on): filled here, forgotten on every gap.
    recent: Option<Arc<Recent>>,
    /// The broker's kind, on delivery spans and the publish-to-queue histogram.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    broker: &'static str,
    /// That histogram's series for this broker, looked up once (on the first timed event, so a
    /// hub that never timed one renders no series), not per event.
    #[cfg(feature = "otel")]
    latency: std::sync::OnceLock<crate::metrics::TracedHistogram>,
}

impl Delivery {
    pub(crate) fn new(
        fanout: Arc<Fanout>,
        metrics: Arc<Metrics>,
        reconnected: Arc<tokio::sync::Notify>,
        recent: Option<Arc<Recent>>,
        broker: &'static str,
    ) -> Self {
        Delivery {
            fanout,
            metrics,
            reconnected,
            recent,
            broker,
            #[cfg(feature = "otel")]
            latency: std::sync::OnceLock::new(),
        }
    }

    /// Hands one event to every local subscriber of its topic. Call it in id order.
    pub fn deliver(&self, envelope: Arc<Envelope>) {
        // Recorded before it is queued: a stream that registers in between and reads the cache
        // finds it there, one that read the cache before gets it in its queue.
        if let Some(recent) = &self.recent {
            recent.record(&envelope);
        }
        #[cfg(feature = "otel")]
        let traced = crate::trace::Delivering::start(
            envelope.trace(),
            self.broker,
            envelope.topic().as_str(),
        );
        let _queued = self.fanout.deliver(&envelope);
        #[cfg(feature = "otel")]
        if let Some(traced) = traced {
            traced.finish(_queued, || {
                self.latency.get_or_init(|| {
                    let series = [("broker", self.broker)];
                    self.metrics.delivery_latency.get_or_create(&series).clone()
                })
            });
        }
    }

    /// Tells every local stream of `topics` that events may be missing before `at`: each gets
    /// one `livepush.reset` whose `id:` is `at`, and nothing else changes for other streams.
    /// Call it for every gap a broker detects (a connection lost without a complete catch-up,
    /// a server restarted empty, a subscription dropped by the server), in id order with
    /// [`Delivery::deliver`]: `at` is where the clients resume.
    pub fn reset(&self, topics: &[Topic], at: EventId, reason: &str) {
        if topics.is_empty() {
            return;
        }
        tracing::warn!(
            topics = topics.len(),
            %at,
            reason,
            "events may be missing on watched topics; their streams are told to reset"
        );
        self.metrics.broker_gaps.inc();
        self.metrics
            .recent_gaps
            .record(reason, topics.len(), at.get());
        if let Some(recent) = &self.recent {
            recent.forget(topics);
        }
        let data = serde_json::json!({ "reason": reason });
        self.fanout.reset(topics, at, data.to_string().as_bytes());
    }

    /// Records that the broker re-established its connection, and tells the hub, which then
    /// publishes what waits in its retry buffer at once.
    pub fn reconnected(&self) {
        self.metrics.broker_reconnects.inc();
        // What was missed was caught up or reset, but the cache is not trusted across it.
        if let Some(recent) = &self.recent {
            recent.forget_all();
        }
        self.reconnected.notify_waiters();
    }

    /// Counts a broker payload that was not a well-formed event and was dropped
    /// (`livepush_broker_malformed_payloads_total`), on this hub only.
    // Only the Redis broker decodes payloads from outside this process.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn malformed_payload(&self) {
        self.metrics.malformed_payloads.inc();
    }

    /// Wakes the hub's retry buffer without counting a reconnect (the broker's first
    /// connection: publications made before it wait in the buffer).
    // Only the Redis broker has a first connection to wait for.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn connected(&self) {
        if let Some(recent) = &self.recent {
            recent.forget_all();
        }
        self.reconnected.notify_waiters();
    }

    /// Whether any local subscriber listens on `topic`.
    pub fn is_watched(&self, topic: &Topic) -> bool {
        self.fanout.has_subscribers(topic)
    }

    /// Every topic with local subscribers (for re-subscribing after a reconnect).
    pub fn watched_topics(&self) -> Vec<Topic> {
        self.fanout.topics()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::{Context, Waker};

    use super::*;
    use crate::queue::Taken;

    fn connection(id: u64) -> Arc<Connection> {
        Arc::new(Connection::new(id, None, SlowConsumerPolicy::Notify, 16))
    }

    fn event(topic: &Topic, n: u64) -> Arc<Envelope> {
        let publication = Publication {
            trace: crate::trace::Trace::NONE,
            topic: topic.clone(),
            event: crate::EventName::from_static("e"),
            category: None,
            data: n.to_string().into(),
            retain: None,
        };
        Arc::new(Envelope::new(EventId::new(n), publication))
    }

    /// The ids of the events queued for `conn`.
    fn queued(conn: &Connection) -> Vec<u64> {
        let mut out = VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        match conn.queue.poll_take(&mut cx, &mut out, 64, |_| false) {
            Taken::Events(_) | Taken::Empty => out.iter().map(|e| e.id().get()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removing_subscribers_in_any_order_keeps_the_others_subscribed() {
        let fanout = Fanout::new(Arc::new(Metrics::new()));
        let topic = Topic::new("t").unwrap();
        let topics = [topic.clone()];
        let conns: Vec<_> = (1..=5).map(connection).collect();
        let mut firsts = 0;
        for conn in &conns {
            fanout.add(&topics, conn, |_| firsts += 1);
        }
        // added twice: still one subscription
        fanout.add(&topics, &conns[0], |_| firsts += 1);
        assert_eq!(firsts, 1);
        let mut lasts = 0;
        // the first, the last and a middle one: each moves another entry or none
        for id in [1, 5, 3] {
            fanout.remove(&topics, id, |_| lasts += 1);
        }
        fanout.remove(&topics, 3, |_| lasts += 1);
        assert_eq!(lasts, 0);
        fanout.deliver(&event(&topic, 7));
        let received: Vec<Vec<u64>> = conns.iter().map(|c| queued(c)).collect();
        assert_eq!(received, [vec![], vec![7], vec![], vec![7], vec![]]);
        assert_eq!(fanout.counts(), [(topic.clone(), 2)]);

        fanout.remove(&topics, 4, |_| lasts += 1);
        fanout.deliver(&event(&topic, 8));
        assert_eq!(queued(&conns[1]), [8]);
        assert!(queued(&conns[3]).is_empty());
        fanout.remove(&topics, 2, |_| lasts += 1);
        assert_eq!(lasts, 1);
        assert!(!fanout.has_subscribers(&topic));
    }
}

//! The in-process broker: no setup, one process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Broker, BrokerError, Delivery, History, Slot, DEDUPE_WINDOW};
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::state::Retain;
use crate::topic::Topic;

/// The embedded broker: events go straight from publishers to this process's subscribers, and a
/// ring buffer per topic keeps the last `replay` events for `Last-Event-ID` replay.
///
/// Ids start at the current Unix time in microseconds, so they keep rising across restarts of the
/// process: a client that reconnects with an id from before a restart is told its history is gone
/// (`livepush.reset`) instead of being served unrelated events.
pub struct MemoryBroker {
    replay: usize,
    ttl: Duration,
    state: Mutex<State>,
    delivery: OnceLock<Delivery>,
    slots: Mutex<HashMap<String, u32>>,
}

struct State {
    /// The last id issued.
    last: u64,
    /// Ids at or below this were issued before any retained topic state existed (or were
    /// forgotten with their topic): history cannot vouch for them.
    forgotten_through: u64,
    topics: HashMap<Topic, Ring>,
    /// Keys of [`Broker::publish_once`] seen within the dedupe window, with the id each got.
    dedupe: Dedupe,
    /// The current retained values (state topics), written under the same lock as ids.
    retained: Retained,
}

/// Retain key → the current value and when it expires (`None`: when replaced).
type Values = HashMap<String, (Option<Instant>, Arc<Envelope>)>;

/// Topic → its current values.
#[derive(Default)]
struct Retained {
    topics: HashMap<Topic, Values>,
    /// Retained publications since the last sweep of expired values.
    since_sweep: u64,
}

impl Retained {
    fn keep(&mut self, now: Instant, retain: &Retain, envelope: &Arc<Envelope>) {
        let expires = retain.time_to_live().map(|ttl| now + ttl);
        let values = self.topics.entry(envelope.topic().clone()).or_default();
        values.insert(retain.key_str().to_owned(), (expires, envelope.clone()));
        values.retain(|_, (expires, _)| live(*expires, now));
        self.since_sweep += 1;
        if self.topics.len() > SWEEP_ABOVE_TOPICS && self.since_sweep >= SWEEP_EVERY_EVENTS {
            self.since_sweep = 0;
            self.topics.retain(|_, values| {
                values.retain(|_, (expires, _)| live(*expires, now));
                !values.is_empty()
            });
        }
    }

    fn current(&mut self, now: Instant, topics: &[Topic]) -> Vec<Arc<Envelope>> {
        let mut out = Vec::new();
        for topic in topics {
            if let Some(values) = self.topics.get_mut(topic) {
                values.retain(|_, (expires, _)| live(*expires, now));
                out.extend(values.values().map(|(_, e)| e.clone()));
                if values.is_empty() {
                    self.topics.remove(topic);
                }
            }
        }
        out.sort_by_key(|e| e.id());
        out
    }
}

/// Whether a value that expires at `expires` is still current at `now`.
fn live(expires: Option<Instant>, now: Instant) -> bool {
    expires.is_none_or(|at| at > now)
}

/// The recent dedupe keys: bounded by [`DEDUPE_WINDOW`] and by [`DEDUPE_MAX_KEYS`] (oldest
/// forgotten first).
#[derive(Default)]
struct Dedupe {
    ids: HashMap<String, EventId>,
    order: VecDeque<(Instant, String)>,
}

/// Most dedupe keys remembered at once (about 100 bytes each).
const DEDUPE_MAX_KEYS: usize = 100_000;

impl Dedupe {
    fn get(&mut self, now: Instant, key: &str) -> Option<EventId> {
        while let Some((at, old)) = self.order.front() {
            if self.order.len() > DEDUPE_MAX_KEYS || now.duration_since(*at) > DEDUPE_WINDOW {
                self.ids.remove(old);
                self.order.pop_front();
            } else {
                break;
            }
        }
        self.ids.get(key).copied()
    }

    fn insert(&mut self, now: Instant, key: &str, id: EventId) {
        self.ids.insert(key.to_owned(), id);
        self.order.push_back((now, key.to_owned()));
    }
}

#[derive(Default)]
struct Ring {
    events: VecDeque<(Instant, Arc<Envelope>)>,
    /// The highest id dropped from this ring (by size or age).
    evicted_through: u64,
}

impl MemoryBroker {
    /// A broker that retains `replay` events per topic for `ttl` (0 turns replay off).
    pub fn new(replay: usize, ttl: Duration) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        MemoryBroker {
            replay,
            ttl,
            state: Mutex::new(State {
                last: start,
                forgotten_through: start,
                topics: HashMap::new(),
                dedupe: Dedupe::default(),
                retained: Retained::default(),
            }),
            delivery: OnceLock::new(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Assigns the next id, retains and delivers, under the caller's lock.
    fn publish_locked(&self, state: &mut State, publication: &Publication) -> EventId {
        let now = Instant::now();
        // Id assignment, retention and delivery happen under one lock, so every subscriber sees
        // events in id order and history never misses an event that live delivery skipped.
        state.last += 1;
        let id = EventId::new(state.last);
        let envelope = Arc::new(Envelope::new(id, publication.clone()));
        if let Some(retain) = &publication.retain {
            state.retained.keep(now, retain, &envelope);
        }
        if self.replay > 0 {
            let ring = state.topics.entry(envelope.topic().clone()).or_default();
            ring.events.push_back((now, envelope.clone()));
            ring.prune(now, self.ttl, self.replay);
            if state.topics.len() > SWEEP_ABOVE_TOPICS && id.get() % SWEEP_EVERY_EVENTS == 0 {
                sweep(state, now, self.ttl);
            }
        }
        if let Some(delivery) = self.delivery.get() {
            delivery.deliver(envelope);
        }
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every write is one step),
        // so a poisoned lock is recovered rather than taking the hub down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ring {
    fn prune(&mut self, now: Instant, ttl: Duration, keep: usize) {
        while let Some((at, env)) = self.events.front() {
            if self.events.len() > keep || now.duration_since(*at) > ttl {
                self.evicted_through = self.evicted_through.max(env.id().get());
                self.events.pop_front();
            } else {
                break;
            }
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn history_is_local(&self) -> bool {
        true
    }

    fn retains(&self) -> bool {
        true
    }

    async fn retained(&self, topics: &[Topic]) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        Ok(self.lock().retained.current(Instant::now(), topics))
    }

    fn start(&self, delivery: Delivery) -> Result<(), BrokerError> {
        let _ = self.delivery.set(delivery);
        Ok(())
    }

    async fn publish(&self, publication: &Publication) -> Result<EventId, BrokerError> {
        Ok(self.publish_locked(&mut self.lock(), publication))
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(id) = state.dedupe.get(now, key) {
            return Ok(id);
        }
        let id = self.publish_locked(&mut state, publication);
        state.dedupe.insert(now, key, id);
        Ok(id)
    }

    fn watch(&self, _topic: &Topic) {}

    fn unwatch(&self, _topic: &Topic) {}

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        let now = Instant::now();
        let mut state = self.lock();
        let after = after.get();
        let mut complete = self.replay > 0 && after <= state.last;
        let mut events = Vec::new();
        let forgotten = state.forgotten_through;
        for topic in topics {
            match state.topics.get_mut(topic) {
                Some(ring) => {
                    ring.prune(now, self.ttl, self.replay);
                    complete &= after >= ring.evicted_through;
                    events.extend(
                        ring.events
                            .iter()
                            .filter(|(_, e)| e.id().get() > after)
                            .map(|(_, e)| e.clone()),
                    );
                }
                None => complete &= after >= forgotten,
            }
        }
        events.sort_by_key(|e| e.id());
        Ok(History {
            events,
            complete,
            last: EventId::new(state.last),
        })
    }

    async fn position(&self) -> Result<EventId, BrokerError> {
        Ok(EventId::new(self.lock().last))
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let held = slots.entry(key.to_owned()).or_insert(0);
        if *held >= limit {
            return Ok(Slot::Full);
        }
        *held += 1;
        Ok(Slot::Granted)
    }

    async fn release_slot(&self, key: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = slots.get_mut(key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                slots.remove(key);
            }
        }
    }
}

/// Above this many retained topics, expired ones are swept (see [`sweep`]).
const SWEEP_ABOVE_TOPICS: usize = 1024;
/// How often the sweep runs then, in published events: its cost (a pass over every topic)
/// spread thin.
const SWEEP_EVERY_EVENTS: u64 = 1024;

/// Forgets topics whose retained events all expired, so one-off topics do not pile up.
fn sweep(state: &mut State, now: Instant, ttl: Duration) {
    let mut forgotten = state.forgotten_through;
    state.topics.retain(|_, ring| {
        ring.prune(now, ttl, usize::MAX);
        if ring.events.is_empty() {
            forgotten = forgotten.max(ring.evicted_through);
            false
        } else {
            true
        }
    });
    state.forgotten_through = forgotten;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn publication(topic: &str) -> Publication {
        Publication {
            trace: crate::trace::Trace::NONE,
            topic: Topic::new(topic).unwrap(),
            event: crate::EventName::from_static("e"),
            category: None,
            data: Bytes::from_static(b"{}"),
            retain: None,
        }
    }

    #[tokio::test]
    async fn history_returns_events_after_the_id_across_topics_in_order() {
        let broker = MemoryBroker::new(10, Duration::from_secs(60));
        let a = broker.publish(&publication("a")).await.unwrap();
        let b = broker.publish(&publication("b")).await.unwrap();
        let c = broker.publish(&publication("a")).await.unwrap();
        broker.publish(&publication("other")).await.unwrap();
        let topics = [Topic::new("a").unwrap(), Topic::new("b").unwrap()];
        let h = broker.history(&topics, a).await.unwrap();
        assert!(h.complete);
        assert_eq!(h.events.iter().map(|e| e.id()).collect::<Vec<_>>(), [b, c]);
    }

    #[tokio::test]
    async fn history_says_incomplete_when_the_ring_no_longer_reaches_back() {
        let broker = MemoryBroker::new(2, Duration::from_secs(60));
        let first = broker.publish(&publication("a")).await.unwrap();
        for _ in 0..3 {
            broker.publish(&publication("a")).await.unwrap();
        }
        let topics = [Topic::new("a").unwrap()];
        let h = broker.history(&topics, first).await.unwrap();
        assert!(!h.complete);
        assert_eq!(h.events.len(), 2);
        // a client that resumes from the reset is owed the two retained events, no more
        assert_eq!(h.reset_id().get(), h.events[0].id().get() - 1);
        // an id from before this process started, or from the future, is not vouched for
        assert!(
            !broker
                .history(&topics, EventId::new(1))
                .await
                .unwrap()
                .complete
        );
        let ahead = broker
            .history(&topics, EventId::new(u64::MAX))
            .await
            .unwrap();
        assert!(!ahead.complete);
        // the reset brings a client that is ahead back to the broker's own sequence
        assert_eq!(ahead.reset_id(), ahead.last);
        let resumed = broker.history(&topics, ahead.reset_id()).await.unwrap();
        assert!(
            resumed.complete,
            "resuming from a reset does not reset again"
        );
    }

    #[tokio::test]
    async fn a_second_publication_with_the_same_key_is_not_published_and_gets_the_first_id() {
        let broker = MemoryBroker::new(10, Duration::from_secs(60));
        let first = broker.publish_once(&publication("a"), "k1").await.unwrap();
        let again = broker.publish_once(&publication("a"), "k1").await.unwrap();
        let other = broker.publish_once(&publication("a"), "k2").await.unwrap();
        assert_eq!(first, again);
        assert!(other > first);
        let h = broker
            .history(&[Topic::new("a").unwrap()], EventId::new(first.get() - 1))
            .await
            .unwrap();
        assert_eq!(h.events.len(), 2, "the repeated key was not retained twice");
    }

    fn retained(topic: &str, key: &str, ttl: Option<Duration>) -> Publication {
        let mut retain = Retain::key(key);
        if let Some(ttl) = ttl {
            retain = retain.ttl(ttl);
        }
        Publication {
            retain: Some(retain),
            ..publication(topic)
        }
    }

    #[tokio::test]
    async fn keeps_the_last_retained_value_per_topic_and_key_until_it_expires() {
        let broker = MemoryBroker::new(0, Duration::from_secs(1));
        let a = Topic::new("a").unwrap();
        broker.publish(&retained("a", "", None)).await.unwrap();
        let newest = broker.publish(&retained("a", "", None)).await.unwrap();
        broker.publish(&publication("a")).await.unwrap();
        let other_key = broker.publish(&retained("a", "k", None)).await.unwrap();
        broker
            .publish(&retained("a", "gone", Some(Duration::from_millis(1))))
            .await
            .unwrap();
        broker.publish(&retained("b", "", None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ids: Vec<EventId> = broker
            .retained(std::slice::from_ref(&a))
            .await
            .unwrap()
            .iter()
            .map(|e| e.id())
            .collect();
        assert_eq!(
            ids,
            [newest, other_key],
            "in id order, the expired one gone"
        );
    }

    #[tokio::test]
    async fn slots_are_capped_and_given_back() {
        let broker = MemoryBroker::new(0, Duration::from_secs(1));
        assert_eq!(broker.acquire_slot("k", 1).await.unwrap(), Slot::Granted);
        assert_eq!(broker.acquire_slot("k", 1).await.unwrap(), Slot::Full);
        broker.release_slot("k").await;
        assert_eq!(broker.acquire_slot("k", 1).await.unwrap(), Slot::Granted);
    }
}

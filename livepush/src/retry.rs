//! The retry buffer: publications the broker could not take, kept in order until it can.
//!
//! A publish that fails on the broker (down, timed out, out of memory, a read-only replica, an
//! authentication error) is not lost: it waits here and one background task publishes it, in
//! order, once the broker answers again. Later publications queue behind it while it waits, so
//! what one process publishes keeps its order. The buffer is bounded by count, bytes and age;
//! what does not fit, or waits too long, is dropped oldest first, and the topics it was for get a
//! gap marker, a `livepush.reset` published through the broker before anything else once it is
//! back, so the subscribers of those topics in every process are told (DESIGN.md, decision 11).
//! The buffer lives in the process: a process that dies with publications in it loses them;
//! the transactional outbox is the answer to that.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{Broker, BrokerError};
use crate::envelope::Publication;
use crate::metrics::Metrics;
use crate::topic::Topic;

/// First and longest wait between two attempts while the broker keeps failing.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How much the buffer holds at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Publications; 0 turns the buffer off (a failed publish is then an error, as without it).
    pub(crate) events: usize,
    /// Payload bytes.
    pub(crate) bytes: usize,
    /// How long a publication may wait before it is given up.
    pub(crate) age: Duration,
}

/// Why a topic's subscribers are told to reset; the `reason` of the gap marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    Overflow,
    Expired,
}

impl Loss {
    fn reason(self) -> &'static str {
        match self {
            Loss::Overflow => "retry_buffer_overflow",
            Loss::Expired => "retry_buffer_expired",
        }
    }
}

/// One buffered publication.
struct Entry {
    /// Unique per buffer: the drain task takes an entry out only if it is still the one it
    /// published (it may have been dropped for space meanwhile).
    seq: u64,
    since: Instant,
    publication: Publication,
}

impl Entry {
    fn size(&self) -> usize {
        self.publication.data.len()
    }
}

/// What waits for one lane: a partition of a partitioned broker (Redis Cluster), or the one
/// lane of a broker with one sequence. Lanes drain independently, so a partition whose shard
/// is down holds back its own publications only; order is kept per lane, which is all the
/// order a partitioned broker has (its ids order events within a partition).
#[derive(Default)]
struct Lane {
    queue: VecDeque<Entry>,
    /// Topics that lost publications, with the first reason and how many: each becomes one gap
    /// marker, published before the queue.
    gaps: BTreeMap<Topic, (Loss, u64)>,
}

#[derive(Default)]
struct State {
    /// Lanes with something waiting, or whose drain task runs (a lane is removed when its task
    /// ends).
    lanes: HashMap<u32, Lane>,
    /// Publications in all queues, and their payload bytes: the limits bound the whole buffer.
    events: usize,
    bytes: usize,
    next_seq: u64,
}

/// What the drain task publishes next.
enum Job {
    Marker(Topic, Publication),
    Entry(u64, Publication),
}

pub(crate) struct RetryBuffer {
    limits: Limits,
    state: Mutex<State>,
    /// Lanes whose drain task runs; written under the `state` lock, read without it so that a
    /// publish while nothing waits takes no lock.
    waiting: AtomicUsize,
    /// Woken when the broker reconnects: the drain task then tries at once instead of waiting
    /// out its backoff.
    reconnected: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// The lane of `topic`: its partition on a partitioned broker, else 0.
fn lane_of(broker: &Arc<dyn Broker>, topic: &Topic) -> u32 {
    broker.partitioned().map_or(0, |p| p.partition_of(topic))
}

/// Whether `lane` may be drained: the broker is ready for that partition (a partitioned
/// broker), or ready at all.
async fn lane_ready(broker: &Arc<dyn Broker>, lane: u32) -> Result<(), BrokerError> {
    match broker.partitioned() {
        Some(partitioned) => partitioned.partition_ready(lane).await,
        None => broker.ready().await,
    }
}

impl RetryBuffer {
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>, reconnected: Arc<Notify>) -> Self {
        RetryBuffer {
            limits,
            state: Mutex::new(State::default()),
            waiting: AtomicUsize::new(0),
            reconnected,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change of the state is one step under the lock: a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn enabled(&self) -> bool {
        self.limits.events > 0
    }

    /// Whether nothing waits: neither publications nor gap markers.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publications waiting (gap markers included).
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state
            .lanes
            .values()
            .map(|l| l.queue.len() + l.gaps.len())
            .sum()
    }

    /// Keeps `publication` for later unless nothing waits in its lane: then it is handed back,
    /// and the caller publishes it directly. Publishing directly while something waits would
    /// overtake it.
    pub(crate) fn queue_if_waiting(
        self: &Arc<Self>,
        publication: Publication,
        broker: &Arc<dyn Broker>,
    ) -> Option<Publication> {
        // Nothing waits in the common case: no lock. A publication that raced with the first
        // failure may overtake it, like any two concurrent publishes.
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Some(publication);
        }
        let lane = lane_of(broker, &publication.topic);
        let mut state = self.lock();
        match state.lanes.get(&lane) {
            Some(l) if !(l.queue.is_empty() && l.gaps.is_empty()) => {}
            _ => return Some(publication),
        }
        self.push_locked(&mut state, lane, publication, broker);
        None
    }

    /// Keeps a publication the broker refused, to publish it once the broker answers again.
    pub(crate) fn push(
        self: &Arc<Self>,
        publication: Publication,
        error: &BrokerError,
        broker: &Arc<dyn Broker>,
    ) {
        let lane = lane_of(broker, &publication.topic);
        let mut state = self.lock();
        if state
            .lanes
            .get(&lane)
            .is_none_or(|l| l.queue.is_empty() && l.gaps.is_empty())
        {
            tracing::warn!(%error, lane, "publishing failed; publications wait in the retry buffer until the broker answers");
        }
        self.push_locked(&mut state, lane, publication, broker);
    }

    fn push_locked(
        self: &Arc<Self>,
        state: &mut State,
        lane: u32,
        publication: Publication,
        broker: &Arc<dyn Broker>,
    ) {
        let entry = Entry {
            seq: state.next_seq,
            since: Instant::now(),
            publication,
        };
        state.next_seq += 1;
        state.bytes += entry.size();
        state.events += 1;
        let start = !state.lanes.contains_key(&lane);
        state.lanes.entry(lane).or_default().queue.push_back(entry);
        let mut dropped = 0;
        while state.events > self.limits.events || state.bytes > self.limits.bytes {
            // The oldest publication of all lanes goes first.
            let oldest = state
                .lanes
                .iter()
                .filter_map(|(&l, lane)| lane.queue.front().map(|e| (e.seq, l)))
                .min();
            let Some((_, l)) = oldest else {
                break;
            };
            let Some(lane) = state.lanes.get_mut(&l) else {
                break;
            };
            let Some(oldest) = lane.queue.pop_front() else {
                break;
            };
            lose(lane, oldest.publication.topic.clone(), Loss::Overflow);
            state.bytes -= oldest.size();
            state.events -= 1;
            dropped += 1;
        }
        if dropped > 0 {
            self.metrics.events_given_up.inc_by(dropped);
            tracing::warn!(
                dropped,
                limit_events = self.limits.events,
                limit_bytes = self.limits.bytes,
                "retry buffer full: the oldest publications were given up; their topics' subscribers will be told to reset"
            );
        }
        self.metrics.retry_buffer_events.set(state.events as i64);
        if start {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            let buffer = self.clone();
            let broker = broker.clone();
            tokio::spawn(async move { buffer.drain(lane, broker).await });
        }
    }

    /// Publishes what waits in `lane`, gap markers first, then the queue in order; waits and
    /// retries while the broker fails. Ends when nothing is left.
    async fn drain(self: Arc<Self>, lane: u32, broker: Arc<dyn Broker>) {
        let mut backoff = BACKOFF_MIN;
        let mut published = 0u64;
        let mut failing = false;
        loop {
            if failing {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = self.reconnected.notified() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                // Resume only once the broker delivers every watched topic (of this partition)
                // again, so what is published next is not missed by this process's own
                // subscribers.
                if lane_ready(&broker, lane).await.is_err() {
                    self.expire();
                    continue;
                }
                failing = false;
            }
            self.expire();
            let Some(job) = self.next_job(lane) else {
                break;
            };
            let publication = match &job {
                Job::Marker(_, p) | Job::Entry(_, p) => p,
            };
            match broker.publish(publication).await {
                Ok(_) => {
                    self.done(lane, job);
                    published += 1;
                    backoff = BACKOFF_MIN;
                }
                Err(error) => {
                    tracing::debug!(%error, lane, "retrying a buffered publication later");
                    failing = true;
                }
            }
        }
        if published > 0 {
            tracing::info!(
                published,
                lane,
                "retry buffer drained: buffered publications published late, in order"
            );
        }
    }

    /// Takes the next job of `lane`, or ends the lane when there is none (under the same lock,
    /// so a publication queued right after starts a new task).
    fn next_job(&self, lane: u32) -> Option<Job> {
        let mut state = self.lock();
        let l = state.lanes.get(&lane)?;
        if let Some((topic, (loss, lost))) = l.gaps.iter().next() {
            let data = serde_json::json!({ "reason": loss.reason(), "lost": lost });
            let marker = Publication {
                trace: crate::trace::Trace::NONE,
                topic: topic.clone(),
                event: crate::sse::RESET,
                category: None,
                data: Bytes::from(data.to_string()),
                retain: None,
            };
            return Some(Job::Marker(topic.clone(), marker));
        }
        match l.queue.front() {
            Some(entry) => Some(Job::Entry(entry.seq, entry.publication.clone())),
            None => {
                state.lanes.remove(&lane);
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                None
            }
        }
    }

    /// Takes a published job out of `lane`.
    fn done(&self, lane: u32, job: Job) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(l) = state.lanes.get_mut(&lane) else {
            return;
        };
        match job {
            Job::Marker(topic, _) => {
                l.gaps.remove(&topic);
            }
            Job::Entry(seq, _) => {
                if l.queue.front().is_some_and(|e| e.seq == seq) {
                    if let Some(entry) = l.queue.pop_front() {
                        state.bytes -= entry.size();
                        state.events -= 1;
                    }
                    self.metrics.events_retried.inc();
                }
            }
        }
        self.metrics.retry_buffer_events.set(state.events as i64);
    }

    /// Gives up publications older than the age limit, in every lane.
    fn expire(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        let mut dropped = 0;
        for lane in state.lanes.values_mut() {
            while let Some(oldest) = lane.queue.front() {
                if oldest.since.elapsed() <= self.limits.age {
                    break;
                }
                if let Some(oldest) = lane.queue.pop_front() {
                    state.bytes -= oldest.size();
                    state.events -= 1;
                    lose(lane, oldest.publication.topic, Loss::Expired);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.metrics.events_given_up.inc_by(dropped);
            self.metrics.retry_buffer_events.set(state.events as i64);
            tracing::warn!(
                dropped,
                max_age = ?self.limits.age,
                "buffered publications waited too long and were given up; their topics' subscribers will be told to reset"
            );
        }
    }
}

fn lose(lane: &mut Lane, topic: Topic, loss: Loss) {
    lane.gaps.entry(topic).or_insert((loss, 0)).1 += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Delivery, History};
    use crate::event::EventId;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A broker that fails while `down` is set and records what it published.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        published: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl Broker for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn start(&self, _: Delivery) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn publish(&self, p: &Publication) -> Result<EventId, BrokerError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(BrokerError::Unavailable("down".into()));
            }
            let mut published = self.published.lock().unwrap();
            published.push((p.topic.to_string(), String::from_utf8_lossy(&p.data).into()));
            Ok(EventId::new(published.len() as u64))
        }
        fn watch(&self, _: &Topic) {}
        fn unwatch(&self, _: &Topic) {}
        async fn history(&self, _: &[Topic], _: EventId) -> Result<History, BrokerError> {
            Ok(History::default())
        }
        async fn ready(&self) -> Result<(), BrokerError> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(BrokerError::Unavailable("down".into())),
                false => Ok(()),
            }
        }
    }

    fn publication(topic: &str, n: u32) -> Publication {
        Publication {
            trace: crate::trace::Trace::NONE,
            topic: Topic::new(topic).unwrap(),
            event: crate::EventName::from_static("e"),
            category: None,
            data: Bytes::from(n.to_string()),
            retain: None,
        }
    }

    fn setup(events: usize, age: Duration) -> (Arc<RetryBuffer>, Arc<Flaky>, Arc<dyn Broker>) {
        let limits = Limits {
            events,
            bytes: 1 << 20,
            age,
        };
        let buffer = Arc::new(RetryBuffer::new(
            limits,
            Arc::new(Metrics::new()),
            Arc::new(Notify::new()),
        ));
        let flaky = Arc::new(Flaky::default());
        flaky.down.store(true, Ordering::SeqCst);
        let broker: Arc<dyn Broker> = flaky.clone();
        (buffer, flaky, broker)
    }

    async fn drained(buffer: &RetryBuffer) {
        for _ in 0..200 {
            if buffer.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the buffer did not drain");
    }

    #[tokio::test]
    async fn publishes_what_waited_in_order_once_the_broker_answers() {
        let (buffer, flaky, broker) = setup(10, Duration::from_secs(30));
        let error = BrokerError::Unavailable("down".into());
        buffer.push(publication("a", 1), &error, &broker);
        for n in 2..=4 {
            assert!(buffer
                .queue_if_waiting(publication("a", n), &broker)
                .is_none());
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            buffer.len(),
            4,
            "nothing is given up while the broker is down"
        );
        flaky.down.store(false, Ordering::SeqCst);
        drained(&buffer).await;
        let published = flaky.published.lock().unwrap().clone();
        let data: Vec<_> = published.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(data, ["1", "2", "3", "4"]);
        assert!(
            buffer
                .queue_if_waiting(publication("a", 5), &broker)
                .is_some(),
            "an empty buffer hands publications back for a direct publish"
        );
    }

    #[tokio::test]
    async fn an_overflow_publishes_a_reset_for_the_topics_that_lost_events_first() {
        let (buffer, flaky, broker) = setup(2, Duration::from_secs(30));
        let error = BrokerError::Unavailable("down".into());
        buffer.push(publication("a", 1), &error, &broker);
        buffer.queue_if_waiting(publication("a", 2), &broker);
        buffer.queue_if_waiting(publication("b", 3), &broker);
        buffer.queue_if_waiting(publication("b", 4), &broker);
        flaky.down.store(false, Ordering::SeqCst);
        drained(&buffer).await;
        let published = flaky.published.lock().unwrap().clone();
        assert_eq!(published.len(), 3, "{published:?}");
        assert_eq!(published[0].0, "a");
        assert!(
            published[0].1.contains("retry_buffer_overflow")
                && published[0].1.contains("\"lost\":2"),
            "{published:?}"
        );
        assert_eq!(published[1], ("b".to_owned(), "3".to_owned()));
        assert_eq!(published[2], ("b".to_owned(), "4".to_owned()));
    }

    #[tokio::test]
    async fn publications_that_wait_too_long_are_given_up_with_a_reset() {
        let (buffer, flaky, broker) = setup(10, Duration::from_millis(50));
        let error = BrokerError::Unavailable("down".into());
        buffer.push(publication("a", 1), &error, &broker);
        tokio::time::sleep(Duration::from_millis(200)).await;
        flaky.down.store(false, Ordering::SeqCst);
        drained(&buffer).await;
        let published = flaky.published.lock().unwrap().clone();
        assert_eq!(published.len(), 1, "{published:?}");
        assert!(published[0].1.contains("retry_buffer_expired"));
    }

    /// Two partitions, `a…` topics in partition 0, the rest in 1; partition 0 fails while
    /// `down` is set (a dead shard).
    #[derive(Default)]
    struct Shards {
        down: AtomicBool,
        published: Mutex<Vec<String>>,
    }

    fn partition(topic: &Topic) -> u32 {
        u32::from(!topic.as_str().starts_with('a'))
    }

    #[async_trait]
    impl Broker for Shards {
        fn kind(&self) -> &'static str {
            "shards"
        }
        fn start(&self, _: Delivery) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn publish(&self, p: &Publication) -> Result<EventId, BrokerError> {
            if partition(&p.topic) == 0 && self.down.load(Ordering::SeqCst) {
                return Err(BrokerError::Unavailable("shard down".into()));
            }
            let mut published = self.published.lock().unwrap();
            published.push(String::from_utf8_lossy(&p.data).into());
            Ok(EventId::new(published.len() as u64))
        }
        fn watch(&self, _: &Topic) {}
        fn unwatch(&self, _: &Topic) {}
        async fn history(&self, _: &[Topic], _: EventId) -> Result<History, BrokerError> {
            Ok(History::default())
        }
        async fn ready(&self) -> Result<(), BrokerError> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(BrokerError::Unavailable("a shard is down".into())),
                false => Ok(()),
            }
        }
        fn partitioned(&self) -> Option<&dyn crate::broker::Partitioned> {
            Some(self)
        }
    }

    #[async_trait]
    impl crate::broker::Partitioned for Shards {
        fn partitions(&self) -> u32 {
            2
        }
        fn partition_of(&self, topic: &Topic) -> u32 {
            partition(topic)
        }
        async fn positions(&self, partitions: &[u32]) -> Result<Vec<EventId>, BrokerError> {
            Ok(vec![EventId::new(0); partitions.len()])
        }
        async fn partition_ready(&self, partition: u32) -> Result<(), BrokerError> {
            match partition == 0 && self.down.load(Ordering::SeqCst) {
                true => Err(BrokerError::Unavailable("shard down".into())),
                false => Ok(()),
            }
        }
        async fn partition_history(
            &self,
            _: u32,
            _: &[Topic],
            _: EventId,
        ) -> Result<History, BrokerError> {
            Ok(History::default())
        }
    }

    #[tokio::test]
    async fn a_dead_partition_holds_back_only_its_own_publications() {
        let buffer = Arc::new(RetryBuffer::new(
            Limits {
                events: 10,
                bytes: 1 << 20,
                age: Duration::from_secs(30),
            },
            Arc::new(Metrics::new()),
            Arc::new(Notify::new()),
        ));
        let shards = Arc::new(Shards::default());
        shards.down.store(true, Ordering::SeqCst);
        let broker: Arc<dyn Broker> = shards.clone();
        let error = BrokerError::Unavailable("shard down".into());
        buffer.push(publication("a", 1), &error, &broker);
        assert!(
            buffer
                .queue_if_waiting(publication("a", 2), &broker)
                .is_none(),
            "behind the waiting publication of its partition"
        );
        // The other partition is not held back: handed back for a direct publish...
        let free = buffer.queue_if_waiting(publication("b", 3), &broker);
        assert!(free.is_some(), "a healthy partition publishes directly");
        // ...and one it buffered drains while the dead partition still waits.
        buffer.push(publication("b", 4), &error, &broker);
        for _ in 0..200 {
            if shards.published.lock().unwrap().contains(&"4".to_owned()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*shards.published.lock().unwrap(), ["4"]);
        assert_eq!(buffer.len(), 2, "partition 0 still holds 1 and 2");
        shards.down.store(false, Ordering::SeqCst);
        drained(&buffer).await;
        assert_eq!(*shards.published.lock().unwrap(), ["4", "1", "2"]);
    }
}

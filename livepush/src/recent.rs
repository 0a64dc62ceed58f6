//! The recent-history cache: per watched topic, the events this process was handed lately, so
//! that a reconnect storm (every client of a process resuming with its `Last-Event-ID` within
//! a second, after a deploy) is answered from memory instead of with one broker read per client.
//!
//! A topic's log is trusted only for what this process has seen *continuously*:
//! - it is filled by the live delivery path (every event the broker hands over for a watched
//!   topic, [`Recent::record`]), in id order;
//! - it starts covering history only once a complete broker history read, made while the log
//!   was already collecting, vouches for everything between a client's position and the live
//!   events ([`Recent::install`]): the read gives `(after, last]`, the log everything handed
//!   over since before the read, so together `(after, newest]` with no hole;
//! - it is forgotten on any gap: a reset the broker reports, a broker reconnect, the topic no
//!   longer (or newly) watched, an event out of id order. A forgotten log starts over with the
//!   next broker read.
//!
//! Bounded per topic by count and age: what falls out moves the covered position up, and a
//! client further behind is answered by the broker as before.
//!
//! The hub keeps one only for brokers whose history costs a round trip (Redis): the in-memory
//! broker's history is this process's memory already ([`Broker::history_is_local`](crate::broker::Broker::history_is_local)).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::event::EventId;
use crate::topic::Topic;

/// Most events kept per topic (at most the replay setting).
pub(crate) const MAX_EVENTS: usize = 1024;

/// Longest an event is kept (at most the replay TTL): a cache for reconnects, not a second
/// retention.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);

/// Identifies one incarnation of a topic's log: a read started against one incarnation must
/// not vouch for a later one (the topic was forgotten meanwhile: a gap).
pub(crate) type Epoch = u64;

/// The cache; one per hub, shared by its [`Delivery`](crate::fanout::Delivery) (which fills
/// and invalidates it) and the core (which reads and seeds it).
#[derive(Debug)]
pub(crate) struct Recent {
    state: Mutex<State>,
    keep: usize,
    max_age: Duration,
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<Topic, Log>,
    /// The newest id known to be issued (recorded, or named by a broker read): an `after`
    /// above it is not an id the cache can vouch for (a broker restarted empty, a bogus id).
    known: EventId,
    next_epoch: Epoch,
}

#[derive(Debug)]
struct Log {
    epoch: Epoch,
    /// `Some(from)`: every event of the topic with an id above `from` that exists is in
    /// `events` (up to the newest handed over). `None`: collecting, not yet vouched for.
    from: Option<EventId>,
    /// The highest id dropped for space or age while collecting: a read must reach past it.
    dropped_through: EventId,
    events: VecDeque<(Instant, Arc<Envelope>)>,
}

impl Log {
    fn newest(&self) -> Option<EventId> {
        self.events.back().map(|(_, e)| e.id())
    }

    fn prune(&mut self, now: Instant, keep: usize, max_age: Duration) {
        while let Some((at, event)) = self.events.front() {
            if self.events.len() <= keep && now.duration_since(*at) <= max_age {
                break;
            }
            let id = event.id();
            self.dropped_through = self.dropped_through.max(id);
            if let Some(from) = &mut self.from {
                *from = (*from).max(id);
            }
            self.events.pop_front();
        }
    }
}

/// What the cache answers for a covered request.
#[derive(Debug)]
pub(crate) struct Cached {
    /// The events after the requested id, in id order.
    pub(crate) events: Vec<Arc<Envelope>>,
    /// The newest id known to be issued.
    pub(crate) last: EventId,
}

impl Recent {
    /// A cache of at most `keep` events per topic, each for at most `max_age`.
    pub(crate) fn new(keep: usize, max_age: Duration) -> Self {
        Recent {
            state: Mutex::new(State::default()),
            keep: keep.max(1),
            max_age,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one step under the lock: a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An event handed to the local subscribers of its topic (called in id order per topic).
    pub(crate) fn record(&self, envelope: &Arc<Envelope>) {
        let mut state = self.lock();
        let id = envelope.id();
        state.known = state.known.max(id);
        let Some(log) = state.logs.get_mut(envelope.topic()) else {
            return;
        };
        if log.newest().is_some_and(|newest| id <= newest) {
            // Not in id order: nothing proves the log whole any more.
            state.logs.remove(envelope.topic());
            return;
        }
        let now = Instant::now();
        log.events.push_back((now, envelope.clone()));
        log.prune(now, self.keep, self.max_age);
    }

    /// `topics` may have missed events, or are no longer (or newly) delivered here: their logs
    /// are dropped.
    pub(crate) fn forget(&self, topics: &[Topic]) {
        let mut state = self.lock();
        if state.logs.is_empty() {
            return;
        }
        for topic in topics {
            state.logs.remove(topic);
        }
    }

    /// Drops every log (a broker reconnect).
    pub(crate) fn forget_all(&self) {
        self.lock().logs.clear();
    }

    /// The events of `topics` after `after` when every topic's log vouches for them.
    pub(crate) fn read(&self, topics: &[Topic], after: EventId) -> Option<Cached> {
        let now = Instant::now();
        let mut state = self.lock();
        if after > state.known {
            return None;
        }
        let mut events = Vec::new();
        for topic in topics {
            let log = state.logs.get_mut(topic)?;
            log.prune(now, self.keep, self.max_age);
            if log.from? > after {
                return None;
            }
            let start = log.events.partition_point(|(_, e)| e.id() <= after);
            events.extend(log.events.range(start..).map(|(_, e)| e.clone()));
        }
        if topics.len() > 1 {
            events.sort_by_key(|e| e.id());
        }
        Some(Cached {
            events,
            last: state.known,
        })
    }

    /// Starts collecting for `topics` that have no log, before a broker read: returns the
    /// epoch of each topic's log, to hand to [`Recent::install`] with the read's result.
    pub(crate) fn begin(&self, topics: &[Topic]) -> Vec<Epoch> {
        let mut guard = self.lock();
        let state = &mut *guard;
        topics
            .iter()
            .map(|topic| {
                let next = &mut state.next_epoch;
                state
                    .logs
                    .entry(topic.clone())
                    .or_insert_with(|| {
                        *next += 1;
                        Log {
                            epoch: *next,
                            from: None,
                            dropped_through: EventId::new(0),
                            events: VecDeque::new(),
                        }
                    })
                    .epoch
            })
            .collect()
    }

    /// A complete broker history of `topics` after `after`, read after [`Recent::begin`]
    /// returned `epochs` and while the topics were delivered here: `events` are all the events
    /// in `(after, last]`. Each log still of its epoch now covers from `after` (or further back
    /// than it did).
    pub(crate) fn install(
        &self,
        topics: &[Topic],
        epochs: &[Epoch],
        after: EventId,
        last: EventId,
        events: &[Arc<Envelope>],
    ) {
        let now = Instant::now();
        let mut state = self.lock();
        state.known = state.known.max(last);
        for (topic, &epoch) in topics.iter().zip(epochs) {
            let Some(log) = state.logs.get_mut(topic) else {
                continue;
            };
            if log.epoch != epoch {
                continue;
            }
            // The read reaches up to `last`; the log must hold everything after that.
            let reaches = match log.from {
                None => log.dropped_through <= last,
                Some(from) => from <= last,
            };
            if !reaches || log.from.is_some_and(|from| from <= after) {
                continue;
            }
            let oldest = log.events.front().map(|(_, e)| e.id());
            let older = events
                .iter()
                .filter(|e| e.topic() == topic && oldest.is_none_or(|o| e.id() < o));
            let mut merged: VecDeque<_> = older.map(|e| (now, e.clone())).collect();
            merged.extend(log.events.drain(..));
            log.events = merged;
            log.from = Some(after);
            log.prune(now, self.keep, self.max_age);
        }
    }

    /// Drops the logs of `topics` still of `epochs` that never came to cover anything (their
    /// read failed or was abandoned).
    pub(crate) fn abandon(&self, topics: &[Topic], epochs: &[Epoch]) {
        let mut state = self.lock();
        for (topic, &epoch) in topics.iter().zip(epochs) {
            if state
                .logs
                .get(topic)
                .is_some_and(|log| log.epoch == epoch && log.from.is_none())
            {
                state.logs.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Publication;

    fn event(topic: &str, n: u64) -> Arc<Envelope> {
        let publication = Publication {
            trace: crate::trace::Trace::NONE,
            topic: Topic::new(topic).unwrap(),
            event: crate::EventName::from_static("e"),
            category: None,
            data: n.to_string().into(),
            retain: None,
        };
        Arc::new(Envelope::new(EventId::new(n), publication))
    }

    fn ids(cached: Option<Cached>) -> Option<Vec<u64>> {
        cached.map(|c| c.events.iter().map(|e| e.id().get()).collect())
    }

    fn t(name: &str) -> Vec<Topic> {
        vec![Topic::new(name).unwrap()]
    }

    #[test]
    fn covers_from_a_complete_read_plus_what_was_collected() {
        let recent = Recent::new(100, MAX_AGE);
        recent.record(&event("a", 1));
        assert_eq!(ids(recent.read(&t("a"), EventId::new(1))), None, "no log");
        let epochs = recent.begin(&t("a"));
        // delivered while the read runs: one the read also returns, one after it
        recent.record(&event("a", 3));
        recent.record(&event("a", 4));
        assert_eq!(
            ids(recent.read(&t("a"), EventId::new(1))),
            None,
            "collecting"
        );
        let history = [event("a", 2), event("a", 3)];
        recent.install(&t("a"), &epochs, EventId::new(1), EventId::new(3), &history);
        assert_eq!(
            ids(recent.read(&t("a"), EventId::new(1))),
            Some(vec![2, 3, 4])
        );
        assert_eq!(ids(recent.read(&t("a"), EventId::new(3))), Some(vec![4]));
        assert_eq!(ids(recent.read(&t("a"), EventId::new(4))), Some(vec![]));
        assert_eq!(ids(recent.read(&t("a"), EventId::new(0))), None, "before");
        assert_eq!(
            ids(recent.read(&t("a"), EventId::new(9))),
            None,
            "never issued"
        );
        recent.record(&event("a", 5));
        assert_eq!(ids(recent.read(&t("a"), EventId::new(3))), Some(vec![4, 5]));
    }

    #[test]
    fn any_gap_forgets() {
        let recent = Recent::new(100, MAX_AGE);
        let epochs = recent.begin(&t("a"));
        recent.forget(&t("a"));
        // a read that began before the gap vouches for nothing after it
        let fresh = recent.begin(&t("a"));
        recent.install(&t("a"), &epochs, EventId::new(1), EventId::new(1), &[]);
        assert_eq!(ids(recent.read(&t("a"), EventId::new(1))), None);
        recent.install(&t("a"), &fresh, EventId::new(1), EventId::new(1), &[]);
        assert_eq!(ids(recent.read(&t("a"), EventId::new(1))), Some(vec![]));
        recent.record(&event("a", 5));
        recent.record(&event("a", 4)); // out of order
        assert_eq!(ids(recent.read(&t("a"), EventId::new(1))), None);
        let epochs = recent.begin(&t("a"));
        recent.install(&t("a"), &epochs, EventId::new(5), EventId::new(5), &[]);
        recent.forget_all();
        assert_eq!(ids(recent.read(&t("a"), EventId::new(5))), None);
    }

    #[test]
    fn what_falls_out_moves_the_covered_position() {
        let recent = Recent::new(2, MAX_AGE);
        let epochs = recent.begin(&t("a"));
        recent.install(&t("a"), &epochs, EventId::new(0), EventId::new(0), &[]);
        for n in 1..=3 {
            recent.record(&event("a", n));
        }
        assert_eq!(ids(recent.read(&t("a"), EventId::new(0))), None);
        assert_eq!(ids(recent.read(&t("a"), EventId::new(1))), Some(vec![2, 3]));
        // collecting past the cap: a read that does not reach the dropped events cannot vouch
        let b = t("b");
        let epochs = recent.begin(&b);
        for n in 4..=7 {
            recent.record(&event("b", n));
        }
        let history = [event("b", 4), event("b", 5)];
        recent.install(&b, &epochs, EventId::new(0), EventId::new(4), &history[..1]);
        assert_eq!(ids(recent.read(&b, EventId::new(4))), None);
        recent.install(&b, &epochs, EventId::new(0), EventId::new(5), &history);
        assert_eq!(ids(recent.read(&b, EventId::new(4))), None);
        assert_eq!(ids(recent.read(&b, EventId::new(5))), Some(vec![6, 7]));
    }

    #[test]
    fn merges_topics_in_id_order_and_extends_backwards() {
        let recent = Recent::new(100, MAX_AGE);
        let ab = vec![Topic::new("a").unwrap(), Topic::new("b").unwrap()];
        let epochs = recent.begin(&ab);
        recent.install(&ab, &epochs, EventId::new(5), EventId::new(5), &[]);
        recent.record(&event("b", 6));
        recent.record(&event("a", 7));
        recent.record(&event("b", 8));
        assert_eq!(ids(recent.read(&ab, EventId::new(5))), Some(vec![6, 7, 8]));
        assert_eq!(ids(recent.read(&ab, EventId::new(2))), None);
        // a read further back, made while the log was whole, extends it
        let epochs = recent.begin(&ab);
        let older = [event("a", 3), event("b", 4), event("b", 6)];
        recent.install(&ab, &epochs, EventId::new(2), EventId::new(8), &older);
        assert_eq!(
            ids(recent.read(&ab, EventId::new(2))),
            Some(vec![3, 4, 6, 7, 8])
        );
    }
}

//! Catch-up reads: the history a resuming stream is owed, from the recent-history cache when it
//! vouches for it, else from the broker, with identical concurrent broker reads coalesced.
//!
//! A reconnect storm (every client of a process resuming at once, most with the same
//! `Last-Event-ID`) then costs the broker about one history read per topic set, not one per
//! client: the first read seeds the cache ([`Recent::install`]), the clients that arrive while it
//! runs wait for it, and those after it are answered from memory.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{watch, Semaphore};

use crate::broker::{Broker, BrokerError, History};
use crate::event::EventId;
use crate::recent::{Epoch, Recent};
use crate::topic::Topic;

/// Most broker history reads in flight at once per process. A reconnect storm on many topics
/// (or from many positions the cache cannot cover) then queues here, in the process, instead
/// of as thousands of scripts pipelined on the broker's one command connection, where every
/// publish waited behind them until it timed out, and the timeouts took the broker for down
/// (every stream opened meanwhile told to reset).
const MAX_BROKER_READS: usize = 16;

/// The history reader of one hub.
pub(crate) struct Catchup {
    recent: Arc<Recent>,
    /// Broker reads in progress: a request they will cover waits for them.
    flights: Mutex<Vec<Flight>>,
    /// Permits for broker reads ([`MAX_BROKER_READS`]).
    reads: Semaphore,
}

struct Flight {
    id: u64,
    /// Sorted.
    topics: Vec<Topic>,
    after: EventId,
    /// Closed (the sender dropped) when the read ends, however it ends.
    done: watch::Receiver<()>,
}

/// Ends a flight when dropped: it leaves the list, its waiters wake, and the logs it started
/// and never filled are dropped.
struct Leader<'a> {
    catchup: &'a Catchup,
    id: u64,
    topics: &'a [Topic],
    epochs: Vec<Epoch>,
    _done: watch::Sender<()>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.catchup.recent.abandon(self.topics, &self.epochs);
        let mut flights = self.catchup.lock();
        flights.retain(|f| f.id != self.id);
    }
}

impl Catchup {
    pub(crate) fn new(recent: Arc<Recent>) -> Self {
        Catchup {
            recent,
            flights: Mutex::new(Vec::new()),
            reads: Semaphore::new(MAX_BROKER_READS),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Flight>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Retained events of `topics` after `after`, as [`Broker::history`] answers them. Called,
    /// like it, once the stream is registered and its topics delivered here.
    pub(crate) async fn history(
        &self,
        broker: &dyn Broker,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        let mut key = topics.to_vec();
        key.sort();
        key.dedup();
        // One lock for the look at the cache, the look for a read to wait for and the start of
        // our own: requests arriving together cannot all start reads. Wait at most twice: a
        // read that ended without seeding (incomplete history, an error) does not hold later
        // requests back for long.
        let mut waits = 0;
        let leader = loop {
            let mut done = {
                let mut flights = self.lock();
                if let Some(cached) = self.recent.read(topics, after) {
                    return Ok(History {
                        events: cached.events,
                        complete: true,
                        last: cached.last,
                    });
                }
                let joinable = flights
                    .iter()
                    .find(|f| f.topics == key && f.after <= after)
                    .map(|f| f.done.clone());
                match joinable.filter(|_| waits < 2) {
                    Some(done) => done,
                    None => {
                        let (sender, done) = watch::channel(());
                        let id = flights.iter().map(|f| f.id).max().unwrap_or(0) + 1;
                        flights.push(Flight {
                            id,
                            topics: key,
                            after,
                            done,
                        });
                        break Leader {
                            catchup: self,
                            id,
                            topics,
                            epochs: self.recent.begin(topics),
                            _done: sender,
                        };
                    }
                }
            };
            waits += 1;
            // Ends with an error when the leader is done (its sender dropped).
            let _ = done.changed().await;
        };
        // Never closed. Requests for what this read covers wait on its flight meanwhile.
        let permit = self.reads.acquire().await;
        let history = broker.history(topics, after).await;
        drop(permit);
        if let Ok(history) = &history {
            if history.complete {
                self.recent
                    .install(topics, &leader.epochs, after, history.last, &history.events);
            }
        }
        drop(leader);
        history
    }
}

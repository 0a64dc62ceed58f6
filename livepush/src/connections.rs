//! Connection admission: what one SSE stream takes from the hub, as guards that give it back.
//!
//! A stream takes three things, in this order, and each is a value that gives back what it took
//! when it is dropped, on every path (a refused subscription, a stream that ends, a client that
//! goes away):
//! - an [`Admission`]: one of the process's `max_connections`, and a connection id;
//! - a [`KeySlot`]: one of the `max_connections_per_key` slots of its cap key, shared by every
//!   instance through the broker (only with a cap key);
//! - a [`Registration`]: its place in the fan-out under each of its topics, and the broker's
//!   watch of the topics it is the first local subscriber of.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::broker::{Broker, Slot};
use crate::error::SubscribeError;
use crate::fanout::{Connection, Fanout};
use crate::metrics::Metrics;
use crate::presence::Presences;
use crate::recent::Recent;
use crate::topic::Topic;

/// The process-wide side of admission: the cap, the count, connection ids and the closing flag.
pub(crate) struct Connections {
    /// Open streams (admitted and not yet dropped).
    open: AtomicUsize,
    /// The id the next admitted stream gets.
    next_id: AtomicU64,
    /// Set once by [`Connections::close`]; never cleared.
    closing: AtomicBool,
    max: usize,
    /// Seconds a refused client is told to wait (`Retry-After`).
    retry_after: u64,
    metrics: Arc<Metrics>,
}

impl Connections {
    pub(crate) fn new(max: usize, retry_after: u64, metrics: Arc<Metrics>) -> Self {
        Connections {
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            max,
            retry_after,
            metrics,
        }
    }

    /// Takes one of the process's connections for a stream of `topics`, or refuses with 429.
    pub(crate) fn admit(self: &Arc<Self>, topics: &[Topic]) -> Result<Admission, SubscribeError> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(SubscribeError::TooManyConnections {
                retry_after: self.retry_after,
            });
        }
        self.metrics.connections.inc();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            connections: self.clone(),
            id,
            span: tracing::debug_span!("livepush.connection", conn = id, topics = ?topics),
        })
    }

    /// Open streams.
    pub(crate) fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Sets the closing flag; true the first time.
    pub(crate) fn close(&self) -> bool {
        !self.closing.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Seconds a refused client is told to wait.
    pub(crate) fn retry_after(&self) -> u64 {
        self.retry_after
    }
}

/// One admitted stream: holds one of the process's connections until dropped.
pub(crate) struct Admission {
    connections: Arc<Connections>,
    id: u64,
    /// `livepush.connection{conn, topics}`: the parent of everything logged about this stream.
    /// Disabled (no allocation) unless a subscriber wants debug spans of livepush.
    span: tracing::Span,
}

impl Admission {
    /// The connection id, unique in this process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
        self.connections.metrics.connections.dec();
        tracing::debug!(parent: &self.span, "stream closed");
    }
}

/// One connection slot of a cap key; released through the broker when dropped.
pub(crate) struct KeySlot {
    broker: Arc<dyn Broker>,
    key: String,
}

impl KeySlot {
    /// Takes a slot of `key` (at most `limit` across instances). `Ok(None)`: the broker could not
    /// say, and the stream is admitted without one (fail-open).
    pub(crate) async fn acquire(
        broker: &Arc<dyn Broker>,
        key: String,
        limit: u32,
        retry_after: u64,
    ) -> Result<Option<KeySlot>, SubscribeError> {
        match broker.acquire_slot(&key, limit).await {
            Ok(Slot::Granted) => Ok(Some(KeySlot {
                broker: broker.clone(),
                key,
            })),
            Ok(Slot::Full) => Err(SubscribeError::KeyCapReached { retry_after }),
            Err(error) => {
                tracing::warn!(%error, key, "connection cap unavailable; admitting (fail-open)");
                Ok(None)
            }
        }
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let key = std::mem::take(&mut self.key);
        let broker = self.broker.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { broker.release_slot(&key).await });
            }
            Err(_) => tracing::warn!(
                key,
                "no runtime to give back a connection slot; it expires with its TTL"
            ),
        }
    }
}

/// A connection listed in the fan-out under each of its topics; removed when dropped.
pub(crate) struct Registration {
    fanout: Arc<Fanout>,
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    recent: Option<Arc<Recent>>,
    /// With an occupancy hook: told of the topics this process starts and stops holding.
    occupancy: Option<Arc<Presences>>,
    topics: Vec<Topic>,
    id: u64,
}

impl Registration {
    /// Lists `connection` under each of `topics`; the broker watches the topics that had no
    /// local subscriber before.
    pub(crate) fn new(
        fanout: &Arc<Fanout>,
        broker: &Arc<dyn Broker>,
        metrics: &Arc<Metrics>,
        topics: Vec<Topic>,
        connection: &Arc<Connection>,
        recent: Option<&Arc<Recent>>,
        occupancy: Option<&Arc<Presences>>,
    ) -> Self {
        // A topic newly watched, or no longer watched, has no continuous past in this process:
        // its recent-history log starts over.
        fanout.add(&topics, connection, |t| {
            if let Some(recent) = recent {
                recent.forget(std::slice::from_ref(t));
            }
            if let Some(presences) = occupancy {
                presences.locally_occupied(t, true);
            }
            broker.watch(t)
        });
        metrics.subscriptions.inc_by(topics.len() as i64);
        Registration {
            fanout: fanout.clone(),
            broker: broker.clone(),
            metrics: metrics.clone(),
            recent: recent.cloned(),
            occupancy: occupancy.cloned(),
            topics,
            id: connection.id,
        }
    }

    /// The topics, validated.
    pub(crate) fn topics(&self) -> &[Topic] {
        &self.topics
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (broker, recent, occupancy) = (&self.broker, &self.recent, &self.occupancy);
        self.fanout.remove(&self.topics, self.id, |t| {
            if let Some(recent) = recent {
                recent.forget(std::slice::from_ref(t));
            }
            if let Some(presences) = occupancy {
                presences.locally_occupied(t, false);
            }
            broker.unwatch(t)
        });
        self.metrics.subscriptions.dec_by(self.topics.len() as i64);
    }
}

//! The seam between the hub and whatever carries events between processes.
//!
//! A [`Broker`] assigns ids, retains events for replay, and carries every publication to every
//! process that has local subscribers of its topic. The hub keeps the local side: one queue per
//! connection, fed from one shared subscription per topic ([`Delivery`]). The shipped brokers:
//! [`MemoryBroker`] (one process, the default) and, with the `redis` feature, `RedisBroker` and
//! `RedisClusterBroker` (one id sequence per partition: [`Partitioned`]).

use std::sync::Arc;

use async_trait::async_trait;

use crate::event::EventId;
use crate::topic::Topic;

mod error;
mod memory;
#[cfg(feature = "nats")]
pub mod nats;
pub(crate) mod partitioned;
mod presence;
#[cfg(feature = "redis")]
pub mod redis;

pub use crate::envelope::{Envelope, Publication};
pub use crate::fanout::Delivery;
pub use crate::trace::Trace;
pub use error::{BrokerError, Cause};
pub use memory::MemoryBroker;
pub use partitioned::Partitioned;
pub use presence::{
    LocalPresence, Member, Occupancy, Presence, PresenceCount, PresenceStore, MAINTAIN_EVERY,
};

/// How long the shipped brokers remember a dedupe key of [`Broker::publish_once`]: a second
/// publication with the same key within this window is not published again. The outbox relay
/// relies on it: a relay that crashed after publishing a row and before marking it publishes the
/// row again when it (or another relay) takes over, and subscribers still see it once, with the
/// id of the first publication. A row republished after the window reaches subscribers twice, with
/// two ids (at least once).
pub const DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// What a broker still holds of the past, for a client that reconnects with `Last-Event-ID`.
#[derive(Debug, Default)]
pub struct History {
    /// The retained events with ids above the requested one, ordered by id.
    pub events: Vec<Arc<Envelope>>,
    /// False when some events after the requested id are no longer retained (or the id is not
    /// one this broker issued): the client is then sent `livepush.reset` before the events.
    pub complete: bool,
    /// The newest id the broker had issued when the history was read. Every event published
    /// later has a higher id and reaches the subscriber live, so this is where a client resumes
    /// after a reset (see [`History::reset_id`]).
    pub last: EventId,
}

impl History {
    /// The id a `livepush.reset` sent with this history carries: just below the first retained
    /// event that follows the reset, or [`History::last`] when none does. A client that
    /// reconnects with it is owed exactly what came after, so a reset is not repeated, and an id
    /// the broker never issued (far ahead of its sequence) is left behind for good.
    pub fn reset_id(&self) -> EventId {
        match self.events.first() {
            Some(first) => EventId::new(first.id().get().saturating_sub(1).min(self.last.get())),
            None => self.last,
        }
    }

    /// Hands a catch-up to `delivery` in order: a `livepush.reset` for the local streams of
    /// `topics` first when the history is not complete (with `reason`), then the events.
    /// Returns how many events were delivered.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) fn deliver(self, delivery: &Delivery, topics: &[Topic], reason: &str) -> usize {
        if !self.complete {
            delivery.reset(topics, self.reset_id(), reason);
        }
        let replayed = self.events.len();
        for envelope in self.events {
            delivery.deliver(envelope);
        }
        replayed
    }
}

/// Whether a connection slot of a cap key was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Slot {
    /// The connection may proceed; release the slot when it ends.
    Granted,
    /// The key holds its maximum number of connections.
    Full,
}

/// Carries events between the publishers and the subscribers of all processes.
///
/// Implementations must deliver events of one topic in id order, and ids must order events across
/// topics (one sequence per broker), so that `Last-Event-ID` means the same on every topic.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and health output (`"memory"`, `"redis"`; the default `"custom"`).
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Called once by [`HubBuilder::build`](crate::HubBuilder::build) before any other method:
    /// events of watched topics go to `delivery`. An error (such as no Tokio runtime to run a
    /// background connection on) fails the build, instead of giving a hub that never delivers.
    fn start(&self, delivery: Delivery) -> Result<(), BrokerError>;

    /// Assigns the next id, retains the event if replay is on, and delivers it to every process
    /// that watches its topic. On an error the hub keeps the publication in its retry buffer and
    /// calls this again, in order, once [`Broker::ready`] succeeds: an error must mean "not
    /// published" or "not known to be published", never "published and lost".
    async fn publish(&self, publication: &Publication) -> Result<EventId, BrokerError>;

    /// Like [`Broker::publish`], for a publication whose identity is `key` (the outbox relay
    /// uses `outbox:<outbox id>:<row id>`): when a publication with the same key was published
    /// within [`DEDUPE_WINDOW`], nothing is published and the id it got then is returned, so a
    /// row relayed twice reaches subscribers once. The check and the publication are one atomic
    /// step. The default publishes every time (no dedupe): a broker of your own that cannot
    /// dedupe gives the relay's subscribers at least once instead of once.
    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        let _ = key;
        self.publish(publication).await
    }

    /// The first local subscriber of `topic` arrived. Must not block.
    fn watch(&self, topic: &Topic);

    /// The last local subscriber of `topic` left. Must not block.
    fn unwatch(&self, topic: &Topic);

    /// Resolves once events of `topics` published from now on reach the [`Delivery`] of this
    /// process: for a broker that subscribes to a server in the background (Redis), once that
    /// subscription is confirmed. An SSE response is sent only after this, so an event published
    /// right after a client sees the response is not missed. The default suits a broker that
    /// delivers in-process: ready at once.
    async fn subscribed(&self, _topics: &[Topic]) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Retained events of `topics` with ids above `after`, in id order. The hub calls it only
    /// after [`Broker::subscribed`] succeeded for `topics`, so that no event falls between the
    /// history read and live delivery.
    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError>;

    /// The newest id this broker has issued (the position a stream opened with it as
    /// `Last-Event-ID` resumes from): what a list endpoint sends as its cursor. The default
    /// answers an error, and a cursor is then left out.
    async fn position(&self) -> Result<EventId, BrokerError> {
        Err(BrokerError::Unavailable(
            format!("the {} broker does not report its position", self.kind()).into(),
        ))
    }

    /// Whether the broker can publish right now and delivers every watched topic to this
    /// process (for `/health/ready`, and before the hub retries buffered publications). The
    /// default suits a broker that is always ready: `Ok`.
    async fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Whether this broker keeps retained publications ([`Publication::retain`]) and answers
    /// them from [`Broker::retained`]. The hub refuses a retained publication on a broker that
    /// does not, before the broker sees it. The default: `false`.
    fn retains(&self) -> bool {
        false
    }

    /// The current retained values of `topics` (at most one per topic and retain key), each
    /// with the id it was published with. A broker that [retains](Broker::retains) stores a
    /// retained publication in the same atomic step that assigns its id and delivers it, so
    /// that a value read here and the live events that follow are ordered by id. The hub calls
    /// it after [`Broker::subscribed`] succeeded for `topics`, so nothing published after the
    /// read is missed. The default: none.
    async fn retained(&self, topics: &[Topic]) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        let _ = topics;
        Ok(Vec::new())
    }

    /// A broker with one id sequence per partition (Redis Cluster) answers its partitioning
    /// here; the hub then writes each connection's position in the partitions of its topics as
    /// its `id:` line (see [`Partitioned`]). The default, one sequence: `None`.
    fn partitioned(&self) -> Option<&dyn Partitioned> {
        None
    }

    /// Whether [`Broker::history`] answers from this process's memory without a round trip (the
    /// in-memory broker). The hub then keeps no recent-history cache of its own for reconnect
    /// storms: it would only copy what the broker already holds. The default: `false`.
    fn history_is_local(&self) -> bool {
        false
    }

    /// Takes one of at most `limit` connection slots of `key`, shared by all processes. The
    /// default grants every slot: a broker without shared state enforces no per-key cap.
    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        let _ = (key, limit);
        Ok(Slot::Granted)
    }

    /// Gives back a slot taken with [`Broker::acquire_slot`]. The default does nothing.
    async fn release_slot(&self, key: &str) {
        let _ = key;
    }

    /// How many processes of the deployment have local subscribers of each of `topics`, where
    /// the broker can say in one round trip (the admin page's deployment column; Redis and
    /// Sentinel: the channel's subscriber count, `PUBSUB NUMSUB`). `None` when it cannot, or
    /// cannot now: the default.
    async fn watching_processes(&self, topics: &[Topic]) -> Option<Vec<u64>> {
        let _ = topics;
        None
    }

    /// The presence store shared by every process on this broker (members of topics, and their
    /// occupancy), see `docs/presence.md`. The default, `None`: the hub keeps presence in this
    /// process ([`LocalPresence`]), which is the whole answer for a one-process broker.
    fn presence(&self) -> Option<Arc<dyn PresenceStore>> {
        None
    }
}

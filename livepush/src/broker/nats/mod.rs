//! The NATS JetStream engine (feature `nats`, `NATS_URL`): one stream holds every topic's
//! events; its sequence is the event id, so ids order events across all topics and
//! `Last-Event-ID` replay is exact across them.
//!
//! With `?partitions=N` (N > 1) the topics are spread over N streams (`subject.rs`), each its own
//! sequence and its own Raft group, so that their leaders can sit on different servers of a
//! JetStream cluster. The broker is then [`Partitioned`] as the Redis Cluster engine is: the
//! core keeps a connection's position in each partition of its topics. Everything below holds
//! per stream.
//!
//! - **Publish**: a JetStream publish to the topic's subject (`<prefix>.t.<topic>`), acknowledged
//!   with the sequence it got. `publish_once` sends the key as `Nats-Msg-Id`, and the stream's
//!   duplicate window ([`DEDUPE_WINDOW`](crate::broker::DEDUPE_WINDOW)) drops a repeat.
//! - **Live**: the stream republishes each stored event to `<prefix>.live.<topic>` with its
//!   sequence in the headers. One NATS connection per process subscribes (core NATS, not a
//!   consumer) the live subject of each topic with local subscribers, and drops it with the
//!   last one (`live.rs`). Gaps (a reconnect, a slow-consumer drop, a sequence that jumps, a
//!   recreated stream) are caught up from the stream or turned into `livepush.reset`.
//! - **History**: direct gets of each topic's retained events (`history.rs`).
//! - **Stream**: created if missing, checked if present (`stream.rs`); a mismatch keeps the
//!   broker not ready, with the differences in `/health/ready` and the log.
//!
//! - **Connection slots**: per-key caps shared by all instances in a KV bucket, one
//!   compare-and-set entry per cap key with leased members (`slots.rs`).
//! - **State topics**: the current retained values, one compare-and-set KV entry per topic
//!   written after the publish is acknowledged (`state.rs`).
//! - **Presence**: members and occupancy per topic, and a lease per instance, in a KV bucket
//!   (`presence.rs`; `docs/presence.md`).
//!
//! `docs/nats.md` has the setup and the fault table.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::stream::{Config, Stream};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};

use crate::broker::{Broker, BrokerError, Cause, Delivery, History, Partitioned, Slot};
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;

mod address;
mod bucket;
mod history;
mod live;
mod payload;
mod presence;
mod slots;
mod state;
mod stream;
mod subject;

use address::Address;
use subject::Names;

/// How long `subscribed` waits for a topic's live subject to be confirmed by the server.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The NATS JetStream broker. See the module documentation.
pub struct NatsBroker {
    shared: std::sync::Arc<Shared>,
    /// The connection task's start-up, taken by [`Broker::start`].
    setup: Mutex<Option<live::Setup>>,
    /// Members and occupancy, shared through a KV bucket.
    presence: Arc<presence::NatsPresence>,
}

/// What the broker and its connection task share.
struct Shared {
    names: Names,
    /// The stream of each partition, as livepush needs it.
    stream_configs: Vec<Config>,
    replay: usize,
    /// Set once the connection task connected: the streams by partition.
    js: OnceLock<(async_nats::Client, Context, Vec<Stream<()>>)>,
    /// The stream exists as livepush needs it and the connection is up.
    up: AtomicBool,
    /// Why the broker is not up (a stream mismatch, the server unreachable), for `ready`.
    down_because: Mutex<String>,
    /// Topics whose live subject the server confirmed subscribed.
    subscribed: Mutex<HashSet<Topic>>,
    subscribed_changed: Notify,
    /// Topics whose streams were opened before their subscription was confirmed (the hub opens
    /// them anyway): what was published in between is unknown, so they are reset once it is.
    opened_blind: Mutex<HashSet<Topic>>,
    delivery: OnceLock<Delivery>,
    commands: mpsc::UnboundedSender<live::Input>,
    /// Connection slots of cap keys, shared through a KV bucket.
    slots: slots::Slots,
    /// The current values of state topics, in a KV bucket.
    state: state::State,
}

impl NatsBroker {
    /// A broker for `url` (see `docs/nats.md` for the URL and its options) retaining `replay`
    /// events per topic for `replay_ttl` (the hub's [`Config::replay`](crate::Config::replay)
    /// and [`Config::replay_ttl`](crate::Config::replay_ttl)). It connects in the background
    /// once the hub starts it.
    pub fn new(url: &str, replay: usize, replay_ttl: Duration) -> Result<Self, BrokerError> {
        let address = Address::parse(url)?;
        let stream_configs = (0..address.names.partitions())
            .map(|p| {
                let (storage, replicas) = (address.storage, address.replicas);
                stream::wanted(&address.names, p, storage, replicas, replay, replay_ttl)
            })
            .collect();
        let (commands, inputs) = mpsc::unbounded_channel();
        let shared = std::sync::Arc::new(Shared {
            names: address.names.clone(),
            stream_configs,
            replay,
            js: OnceLock::new(),
            up: AtomicBool::new(false),
            down_because: Mutex::new("NATS is not connected yet".to_owned()),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            opened_blind: Mutex::new(HashSet::new()),
            delivery: OnceLock::new(),
            commands,
            slots: slots::Slots::new(&address.names.stream, address.storage, address.replicas),
            state: state::State::new(&address.names.stream, address.storage, address.replicas),
        });
        let presence = Arc::new(presence::NatsPresence::new(
            shared.clone(),
            &address.names.stream,
            address.storage,
            address.replicas,
        ));
        let setup = live::Setup { address, inputs };
        Ok(NatsBroker {
            shared,
            setup: Mutex::new(Some(setup)),
            presence,
        })
    }

    /// Sets how long a connection slot of a cap key
    /// ([`max_connections_per_key`](crate::HubBuilder::max_connections_per_key)) outlives an
    /// instance that stopped refreshing it (it crashed, or lost NATS): its slots are free after
    /// this long. Each instance refreshes its own every third of it. Default 30 s, at least
    /// 300 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use livepush::broker::nats::NatsBroker;
    /// use livepush::Hub;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let broker = NatsBroker::new("nats://127.0.0.1:4222", 1000, Duration::from_secs(3600))
    ///     .unwrap()
    ///     .slot_lease(Duration::from_secs(10));
    /// let hub = Hub::builder().broker(broker).max_connections_per_key(3).build().unwrap();
    /// # drop(hub);
    /// # }
    /// ```
    pub fn slot_lease(self, lease: Duration) -> Self {
        self.shared.slots.set_lease(lease);
        self
    }
}

impl Shared {
    fn down(&self) -> BrokerError {
        let why = self.down_because.lock().unwrap_or_else(|p| p.into_inner());
        BrokerError::Unavailable(Cause::new(why.clone()))
    }

    /// The JetStream context and the streams by partition, while up.
    #[allow(clippy::type_complexity)]
    fn jetstream(&self) -> Result<&(async_nats::Client, Context, Vec<Stream<()>>), BrokerError> {
        match (self.up.load(Ordering::Acquire), self.js.get()) {
            (true, Some(js)) => Ok(js),
            _ => Err(self.down()),
        }
    }

    fn set_down(&self, why: String) {
        self.up.store(false, Ordering::Release);
        *self.down_because.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    fn subscribed(&self) -> std::sync::MutexGuard<'_, HashSet<Topic>> {
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn confirm(&self, topic: Topic) {
        self.subscribed().insert(topic);
        self.subscribed_changed.notify_waiters();
    }

    async fn publish(
        &self,
        publication: &Publication,
        key: Option<&str>,
    ) -> Result<EventId, BrokerError> {
        let (_, js, _) = self.jetstream()?;
        let unavailable = |e: &dyn std::fmt::Display| {
            BrokerError::Unavailable(Cause::new(format!("NATS publish: {e}")))
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert(NATS_MESSAGE_ID, key);
        }
        let marked = publication
            .retain
            .as_ref()
            .map(|retain| state::Marked::new(retain, &mut headers));
        let subject = self.names.stored(&publication.topic);
        let payload = payload::encode(publication);
        let ack = js
            .publish_with_headers(subject, headers, payload.clone())
            .await
            .map_err(|e| unavailable(&e))?
            .await
            .map_err(|e| unavailable(&e))?;
        if let Some(marked) = marked {
            // the event is published (an error now would make the hub publish it again): a
            // value the bucket did not take is logged; the topic's next value replaces it
            let kept = self
                .state
                .keep(js, &publication.topic, marked, ack.sequence, &payload)
                .await;
            if let Err(error) = kept {
                tracing::error!(%error, topic = %publication.topic, id = ack.sequence,
                    "a retained event was published but not stored as the current value");
            }
        }
        // a duplicate's ack carries the sequence of the first publication
        Ok(EventId::new(ack.sequence))
    }

    async fn wait_subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        let wait = async {
            loop {
                let changed = self.subscribed_changed.notified();
                if topics.iter().all(|t| self.subscribed().contains(t)) {
                    return;
                }
                changed.await;
            }
        };
        let waited = tokio::time::timeout(SUBSCRIBE_WAIT, wait).await;
        if waited.is_err() {
            let subscribed = self.subscribed();
            let mut blind = self.opened_blind.lock().unwrap_or_else(|p| p.into_inner());
            blind.extend(topics.iter().filter(|t| !subscribed.contains(*t)).cloned());
        }
        waited.map_err(|e| {
            BrokerError::Unavailable(Cause::with_source(
                "NATS subscription not confirmed in time",
                e,
            ))
        })
    }

    /// The history of `topics`, which all lie in partition `p`.
    async fn history(
        &self,
        p: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        if self.replay == 0 {
            return Ok(History::default());
        }
        let stream = self.stream(p)?;
        let delivery = self.delivery.get();
        history::read(
            stream,
            &self.names,
            topics,
            after,
            self.replay.max(1),
            delivery,
        )
        .await
    }

    /// Partition `p`'s stream, while up.
    fn stream(&self, p: u32) -> Result<&Stream<()>, BrokerError> {
        let (_, _, streams) = self.jetstream()?;
        streams
            .get(p as usize)
            .ok_or_else(|| BrokerError::Protocol(Cause::new(format!("no NATS partition {p}"))))
    }

    /// The newest sequence of partition `p`'s stream.
    async fn position(&self, p: u32) -> Result<EventId, BrokerError> {
        let info = self.stream(p)?.get_info().await.map_err(stream_info)?;
        Ok(EventId::new(info.state.last_sequence))
    }

    /// Ready when connected, every watched topic (of partition `only`, or all) subscribed, and
    /// the streams (of `only`, or all) answering.
    async fn ready(&self, only: Option<u32>) -> Result<(), BrokerError> {
        let (client, _, streams) = self.jetstream()?;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(BrokerError::Unavailable(
                "NATS is not connected (reconnecting)".into(),
            ));
        }
        if let Some(delivery) = self.delivery.get() {
            let subscribed = self.subscribed();
            let missing = delivery
                .watched_topics()
                .iter()
                .filter(|t| only.is_none_or(|p| self.names.partition_of(t) == p))
                .filter(|t| !subscribed.contains(*t))
                .count();
            if missing > 0 {
                return Err(BrokerError::Unavailable(
                    format!("{missing} watched NATS subjects are not subscribed yet").into(),
                ));
            }
        }
        // the streams answer (their leaders are elected, JetStream is enabled for the account),
        // asked concurrently
        let asked = (streams.iter().enumerate())
            .filter(|(p, _)| only.is_none_or(|only| only as usize == *p))
            .map(|(_, stream)| stream.get_info());
        futures_util::future::try_join_all(asked)
            .await
            .map(drop)
            .map_err(stream_info)
    }
}

fn stream_info(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(Cause::new(format!("NATS stream info: {e}")))
}

#[async_trait]
impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn start(&self, delivery: Delivery) -> Result<(), BrokerError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            let message = "the NATS broker needs a Tokio runtime; build the hub inside one";
            BrokerError::Unavailable(Cause::with_source(message, e))
        })?;
        let _ = self.shared.delivery.set(delivery.clone());
        let setup = self.setup.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(setup) = setup {
            rt.spawn(live::run(self.shared.clone(), setup, delivery));
            rt.spawn(slots::refresh_loop(std::sync::Arc::downgrade(&self.shared)));
        }
        Ok(())
    }

    async fn publish(&self, publication: &Publication) -> Result<EventId, BrokerError> {
        self.shared.publish(publication, None).await
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        self.shared.publish(publication, Some(key)).await
    }

    fn watch(&self, topic: &Topic) {
        let _ = self
            .shared
            .commands
            .send(live::Input::Reconcile(topic.clone()));
    }

    fn unwatch(&self, topic: &Topic) {
        let _ = self
            .shared
            .commands
            .send(live::Input::Reconcile(topic.clone()));
    }

    async fn subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        self.shared.wait_subscribed(topics).await
    }

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        // The hub asks `partition_history` per partition; this serves callers of the trait that
        // do not know about partitions, when all topics lie in one partition.
        let names = &self.shared.names;
        let mut parts: Vec<u32> = topics.iter().map(|t| names.partition_of(t)).collect();
        parts.sort_unstable();
        parts.dedup();
        match parts.as_slice() {
            [] => Ok(History::default()),
            [p] => self.shared.history(*p, topics, after).await,
            _ => Err(BrokerError::Protocol(
                "topics of several NATS partitions: read history per partition".into(),
            )),
        }
    }

    async fn position(&self) -> Result<EventId, BrokerError> {
        if self.shared.names.partitions() > 1 {
            return Err(BrokerError::Protocol(
                "NATS with partitions has one position per partition: use Partitioned::positions"
                    .into(),
            ));
        }
        self.shared.position(0).await
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.shared.ready(None).await
    }

    fn partitioned(&self) -> Option<&dyn Partitioned> {
        (self.shared.names.partitions() > 1).then_some(self as &dyn Partitioned)
    }

    fn retains(&self) -> bool {
        true
    }

    async fn retained(&self, topics: &[Topic]) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        let (_, js, streams) = self.shared.jetstream()?;
        let delivery = self.shared.delivery.get();
        let names = &self.shared.names;
        self.shared
            .state
            .read(js, streams, names, topics, delivery)
            .await
    }

    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        let (_, js, _) = self.shared.jetstream()?;
        self.shared.slots.acquire(js, key, limit).await
    }

    fn presence(&self) -> Option<Arc<dyn crate::broker::PresenceStore>> {
        Some(self.presence.clone())
    }

    async fn release_slot(&self, key: &str) {
        let js = self.shared.jetstream().ok().map(|(_, js, _)| js);
        self.shared.slots.release(js, key).await
    }
}

/// With `?partitions=N` (N > 1): each partition is a stream of its own.
#[async_trait]
impl Partitioned for NatsBroker {
    fn partitions(&self) -> u32 {
        self.shared.names.partitions()
    }

    fn partition_of(&self, topic: &Topic) -> u32 {
        self.shared.names.partition_of(topic)
    }

    async fn positions(&self, partitions: &[u32]) -> Result<Vec<EventId>, BrokerError> {
        let reads = partitions.iter().map(|&p| self.shared.position(p));
        futures_util::future::try_join_all(reads).await
    }

    async fn partition_ready(&self, partition: u32) -> Result<(), BrokerError> {
        self.shared.ready(Some(partition)).await
    }

    async fn partition_history(
        &self,
        partition: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        self.shared.history(partition, topics, after).await
    }
}

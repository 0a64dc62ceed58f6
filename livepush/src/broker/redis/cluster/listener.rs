//! The cluster's connection task: both cluster connections, the shard channel subscriptions,
//! and the partitions in doubt.
//!
//! Per partition it remembers the newest id delivered to this process. When something says
//! that a partition's live messages may have been lost (a node connection dropped, a
//! `sunsubscribe` nobody asked for after a slot moved or a failover, a failed `SSUBSCRIBE`), the
//! partition is *in doubt*: its live messages are set aside (history will bring them back), its
//! channels are subscribed again explicitly, and once that is confirmed its streams are read
//! after the remembered id and delivered in order, or, where the history cannot vouch for it,
//! its local streams get `livepush.reset`. Other partitions keep flowing meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::Instant;

use super::by_partition;
use super::layout::Layout;
use crate::broker::redis::engine::{Command, Engine, Shard};
use crate::broker::redis::link::{self, Conns, Link, Part, Resume, Task};
use crate::broker::redis::payload::decode_live;
use crate::broker::redis::target::ClusterTarget;
use crate::broker::redis::version;
use crate::broker::Delivery;
use crate::event::EventId;
use crate::topic::Topic;
/// How often the pub/sub connection is asked to answer (one PING per watched partition): a node
/// that hangs without closing its connections (`DEBUG SLEEP`, a stopped process, a frozen VM)
/// sends no `Disconnection` and no `sunsubscribe`, its shard channels just fall silent.
const HEALTH_PERIOD: Duration = Duration::from_secs(1);
/// How long a health PING, and each partition's re-subscription and catch-up, may take before
/// the node counts as hung (below `redis-rs`' response timeout times its retries).
const HANG_TIMEOUT: Duration = Duration::from_millis(1500);

pub(super) struct Listener {
    /// Per partition, what this process delivered of its sequence.
    parts: Vec<Part>,
    /// Partitions whose live messages may have been lost: set aside until caught up.
    doubt: BTreeSet<u32>,
    /// When the next connection or catch-up attempt is due.
    next_try: Instant,
    engine: Arc<Engine<Layout>>,
    commands: UnboundedReceiver<Command>,
    /// The pub/sub link (while connected), unsubscribes in flight, the backoff.
    conns: Conns<ClusterConnection>,
    target: ClusterTarget,
    ever_connected: bool,
}

impl Listener {
    pub(super) fn new(
        engine: Arc<Engine<Layout>>,
        commands: UnboundedReceiver<Command>,
        target: ClusterTarget,
    ) -> Self {
        Listener {
            parts: vec![Part::default(); engine.shard.count() as usize],
            doubt: BTreeSet::new(),
            next_try: Instant::now(),
            engine,
            commands,
            conns: Conns::default(),
            target,
            ever_connected: false,
        }
    }

    pub(super) async fn run(mut self, delivery: Delivery) {
        let mut health = Instant::now() + HEALTH_PERIOD;
        loop {
            let due = Instant::now() >= self.next_try;
            if due && self.conns.link.is_none() {
                self.connect(&delivery).await;
            } else if due && !self.doubt.is_empty() {
                self.resync(&delivery).await;
            }
            let waiting = self.conns.link.is_none() || !self.doubt.is_empty();
            let retry = self.next_try.max(Instant::now() + Duration::from_millis(1));
            let linked = self.conns.link.is_some();
            tokio::select! {
                biased;
                wake = link::next_wake(&mut self.conns.link, &mut self.commands) => {
                    if !link::handle(&mut self, wake, &delivery).await {
                        break;
                    }
                }
                () = tokio::time::sleep_until(retry), if waiting => {}
                // A command failed, or it is time: do the nodes still answer?
                () = self.engine.check.notified(), if linked => self.health(&delivery).await,
                () = tokio::time::sleep_until(health), if linked => {
                    health = Instant::now() + HEALTH_PERIOD;
                    self.health(&delivery).await;
                }
            }
        }
        tracing::debug!("Redis Cluster listener stopped");
    }

    fn failed(&mut self, error: &RedisError) {
        self.next_try = Instant::now() + self.conns.attempts.failed(&self.target.describe(), error);
    }

    /// Asks the master of each watched partition (not in doubt) for a PING on the pub/sub
    /// connection, within [`HANG_TIMEOUT`]. A partition whose node does not answer may lose
    /// messages of its shard channels meanwhile (or its node is about to be replaced by its
    /// replica): it goes in doubt, as after a dropped node connection, and is re-subscribed and
    /// caught up (or reset) once its node answers. Publishes to a hung node fail on the command
    /// connection's response timeout and wait in the hub's retry buffer.
    async fn health(&mut self, delivery: &Delivery) {
        let Some(link) = &self.conns.link else {
            return;
        };
        let sub = link.sub.clone();
        let watched: Vec<u32> = self
            .watched_partitions(delivery)
            .into_keys()
            .filter(|p| !self.doubt.contains(p))
            .collect();
        let pings = watched.iter().map(|&p| {
            let mut sub = sub.clone();
            let slot = self.engine.shard.slot_of(p);
            async move { tokio::time::timeout(HANG_TIMEOUT, ping_slot(&mut sub, slot)).await }
        });
        let answers = futures_util::future::join_all(pings).await;
        for (p, answer) in watched.into_iter().zip(answers) {
            let failure = match answer {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no PING answer within {HANG_TIMEOUT:?}"),
            };
            tracing::warn!(error = %failure, partition = p, "a Redis Cluster node stopped answering; catching up");
            self.suspect(p);
        }
    }

    fn on_message(&mut self, data: &[Value], delivery: &Delivery) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = data else {
            return;
        };
        let Some((topic, p)) = self.engine.shard.topic_of_channel(channel) else {
            return;
        };
        if self.doubt.contains(&p) {
            return; // the catch-up reads it from the stream
        }
        let Some(envelope) = decode_live(topic, channel, payload, delivery) else {
            return;
        };
        self.parts[p as usize].deliver(envelope, delivery);
    }

    fn on_unsubscribe(&mut self, data: &[Value], delivery: &Delivery) {
        let Some(Value::BulkString(channel)) = data.first() else {
            return;
        };
        let Some((topic, p)) = self.engine.shard.topic_of_channel(channel) else {
            return;
        };
        if self.conns.unsubscribing.confirms(&topic) {
            return;
        }
        if delivery.is_watched(&topic) {
            // Redis ends the shard subscriptions of a slot that moves to another node (and of
            // a master that became a replica): nobody asked for it.
            tracing::warn!(%topic, partition = p, "Redis Cluster ended a shard subscription; re-subscribing");
            self.suspect(p);
        }
    }

    /// Puts partition `p` in doubt: its topics count as unsubscribed until the catch-up.
    fn suspect(&mut self, p: u32) {
        if self.doubt.insert(p) {
            let layout = &self.engine.shard;
            self.engine
                .subscribed()
                .retain(|t| layout.partition_of(t) != p);
        }
    }

    fn watched_partitions(&self, delivery: &Delivery) -> HashMap<u32, Vec<Topic>> {
        by_partition(&self.engine.shard, &delivery.watched_topics())
    }

    fn lost(&mut self, why: &str) {
        self.conns.lose(&self.engine, &self.target.describe(), why);
        self.doubt.clear();
        self.next_try = Instant::now();
    }

    async fn connect(&mut self, delivery: &Delivery) {
        match self.try_connect(delivery).await {
            Ok(()) => self.conns.attempts.recovered(&self.target.describe()),
            Err(error) => self.failed(&error),
        }
    }

    async fn try_connect(&mut self, delivery: &Delivery) -> Result<(), RedisError> {
        let mut conn = self.target.client(None)?.get_async_connection().await?;
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let mut sub = self
            .target
            .client(Some(push_tx))?
            .get_async_connection()
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        version::check_cluster(&mut conn).await?;
        let by = self.watched_partitions(delivery);
        for (&p, topics) in &by {
            self.subscribe(&mut sub, p, topics).await?;
        }
        let why = Resume {
            first: !self.ever_connected,
            unconfirmed: self.engine.unconfirmed.swap(false, Ordering::AcqRel),
        };
        for (&p, topics) in &by {
            self.resume(&mut conn, p, topics, delivery, why).await?;
        }
        self.engine.established(conn, by.into_values().flatten());
        self.conns.link = Some(Link { sub, pushes });
        self.doubt.clear();
        if self.ever_connected {
            delivery.reconnected();
            tracing::info!(server = %self.target.describe(), "Redis Cluster reconnected; shard channels re-subscribed");
        } else {
            tracing::info!(server = %self.target.describe(), partitions = self.parts.len(), "Redis Cluster connected");
            delivery.connected();
        }
        self.ever_connected = true;
        Ok(())
    }

    /// One SSUBSCRIBE for the channels of `topics`, all in partition `p` (one slot).
    async fn subscribe(
        &self,
        sub: &mut ClusterConnection,
        p: u32,
        topics: &[Topic],
    ) -> Result<(), RedisError> {
        let channels: Vec<String> = topics
            .iter()
            .map(|t| self.engine.shard.channel(p, t))
            .collect();
        sub.ssubscribe(&channels).await
    }

    /// Re-subscribes and catches up every partition in doubt.
    async fn resync(&mut self, delivery: &Delivery) {
        let Some(conn) = self.engine.current_conn() else {
            return;
        };
        let by = self.watched_partitions(delivery);
        let unconfirmed = self.engine.unconfirmed.swap(false, Ordering::AcqRel);
        let why = Resume {
            first: false,
            unconfirmed,
        };
        let mut failure = None;
        for p in self.doubt.clone() {
            let topics = by.get(&p).cloned().unwrap_or_default();
            let step = async {
                let Some(link) = &mut self.conns.link else {
                    return Ok(());
                };
                if !topics.is_empty() {
                    let mut sub = link.sub.clone();
                    self.subscribe(&mut sub, p, &topics).await?;
                }
                let mut conn = conn.clone();
                self.resume(&mut conn, p, &topics, delivery, why).await
            };
            // A hung node must not hold back the partitions of the others.
            let result = match tokio::time::timeout(HANG_TIMEOUT, step).await {
                Ok(result) => result,
                Err(_) => Err(RedisError::from((
                    ErrorKind::Io,
                    "the partition's node did not answer in time",
                ))),
            };
            match result {
                Ok(()) => {
                    self.doubt.remove(&p);
                    self.engine.confirm(topics);
                    tracing::info!(
                        partition = p,
                        "Redis Cluster partition re-subscribed and caught up"
                    );
                }
                Err(error) => failure = Some(error),
            }
        }
        if let Some(error) = failure {
            if unconfirmed {
                self.engine.unconfirmed.store(true, Ordering::Release);
            }
            self.failed(&error);
            return;
        }
        self.conns.attempts.recovered(&self.target.describe());
        delivery.reconnected();
    }

    /// Catches partition `p` up after (re)subscribing the channels of `topics` (see
    /// `link::resume`).
    async fn resume(
        &mut self,
        conn: &mut ClusterConnection,
        p: u32,
        topics: &[Topic],
        delivery: &Delivery,
        why: Resume,
    ) -> Result<(), RedisError> {
        let part = &mut self.parts[p as usize];
        link::resume(&self.engine, conn, p, topics, part, delivery, why).await
    }

    /// A partition watched again after a while: a catch-up after a later gap starts from its
    /// current position, not from what this process delivered of it long ago (or never).
    async fn refresh_base(&mut self, p: u32) {
        let Some(mut conn) = self.engine.current_conn() else {
            return;
        };
        let read = self.engine.read_history(&mut conn, p, &[], EventId::new(0));
        match read.await {
            Ok(position) => self.parts[p as usize].at_least(position.last),
            Err(error) => {
                tracing::warn!(%error, partition = p, "could not read the partition's position; catching up");
                self.suspect(p);
            }
        }
    }
}

impl Task for Listener {
    fn on_push(&mut self, push: PushInfo, delivery: &Delivery) {
        match push.kind {
            PushKind::SMessage => self.on_message(&push.data, delivery),
            PushKind::SUnsubscribe => self.on_unsubscribe(&push.data, delivery),
            PushKind::Disconnection => {
                // A node connection dropped (redis-rs reconnects it and re-subscribes on its
                // own, without saying when): whatever it carried may be lost meanwhile.
                tracing::warn!("a Redis Cluster node connection dropped; catching up");
                let watched = self.watched_partitions(delivery);
                for p in watched.into_keys() {
                    self.suspect(p);
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self) {
        self.lost("the pub/sub cluster connection closed");
    }

    async fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) {
        let p = self.engine.shard.partition_of(topic);
        if self.doubt.contains(&p) {
            return; // the catch-up subscribes whatever is watched then
        }
        let Some(link) = &mut self.conns.link else {
            return;
        };
        let mut sub = link.sub.clone();
        let wanted = delivery.is_watched(topic);
        let (have, fresh) = {
            let subscribed = self.engine.subscribed();
            let layout = &self.engine.shard;
            (
                subscribed.contains(topic),
                !subscribed.iter().any(|t| layout.partition_of(t) == p),
            )
        };
        if wanted == have {
            return;
        }
        let channel = self.engine.shard.channel(p, topic);
        if wanted {
            match sub.ssubscribe(&channel).await {
                Ok(()) => {
                    if fresh {
                        self.refresh_base(p).await;
                    }
                    self.engine.confirm([topic.clone()]);
                }
                Err(error) => {
                    tracing::warn!(%error, %topic, "SSUBSCRIBE failed; retrying the partition");
                    self.suspect(p);
                }
            }
        } else {
            self.engine.subscribed().remove(topic);
            self.conns.unsubscribing.sent(topic);
            if let Err(error) = sub.sunsubscribe(&channel).await {
                tracing::warn!(%error, %topic, "SUNSUBSCRIBE failed");
                self.conns.unsubscribing.failed(topic);
            }
        }
    }
}

/// One PING to the master of `slot`.
async fn ping_slot(conn: &mut ClusterConnection, slot: u16) -> Result<(), RedisError> {
    conn.route_command(
        redis::cmd("PING"),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        ))),
    )
    .await
    .map(drop)
}

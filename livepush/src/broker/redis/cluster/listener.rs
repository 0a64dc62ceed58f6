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

use super::super::listener::{jitter, Failures};
use super::super::{decode, describe};
use super::{Inner, Target};
use crate::broker::Delivery;
use crate::event::EventId;
use crate::topic::Topic;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const GAP: &str = "broker_gap";
/// How often the pub/sub connection is asked to answer (one PING per watched partition): a node
/// that hangs without closing its connections (`DEBUG SLEEP`, a stopped process, a frozen VM)
/// sends no `Disconnection` and no `sunsubscribe`, its shard channels just fall silent.
const HEALTH_PERIOD: Duration = Duration::from_secs(1);
/// How long a health PING, and each partition's re-subscription and catch-up, may take before
/// the node counts as hung (below `redis-rs`' response timeout times its retries).
const HANG_TIMEOUT: Duration = Duration::from_millis(1500);

pub(super) enum Command {
    Reconcile(Topic),
}

struct Link {
    sub: ClusterConnection,
    pushes: UnboundedReceiver<PushInfo>,
}

#[derive(Clone, Copy, Default)]
struct Part {
    /// The newest id of the partition delivered here (or reset to); where a catch-up starts.
    delivered: Option<EventId>,
    /// After a catch-up: live messages at or below were delivered from history already.
    skip: Option<EventId>,
}

pub(super) struct Listener {
    inner: Arc<Inner>,
    target: Target,
    commands: UnboundedReceiver<Command>,
    link: Option<Link>,
    parts: Vec<Part>,
    doubt: BTreeSet<u32>,
    /// SUNSUBSCRIBEs sent whose confirmation has not arrived yet.
    unsubscribing: HashMap<Topic, u32>,
    ever_connected: bool,
    backoff: Duration,
    next_try: Instant,
    failures: Failures,
}

impl Listener {
    pub(super) fn new(
        inner: Arc<Inner>,
        target: Target,
        commands: UnboundedReceiver<Command>,
    ) -> Self {
        let count = inner.layout.count() as usize;
        Listener {
            inner,
            target,
            commands,
            link: None,
            parts: vec![Part::default(); count],
            doubt: BTreeSet::new(),
            unsubscribing: HashMap::new(),
            ever_connected: false,
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
            failures: Failures::default(),
        }
    }

    pub(super) async fn run(mut self, delivery: Delivery) {
        let mut health = Instant::now() + HEALTH_PERIOD;
        loop {
            let due = Instant::now() >= self.next_try;
            if due && self.link.is_none() {
                self.connect(&delivery).await;
            } else if due && !self.doubt.is_empty() {
                self.resync(&delivery).await;
            }
            let waiting = self.link.is_none() || !self.doubt.is_empty();
            let retry = self.next_try.max(Instant::now() + Duration::from_millis(1));
            let linked = self.link.is_some();
            tokio::select! {
                biased;
                push = next_push(&mut self.link) => match push {
                    Some(push) => self.on_push(push, &delivery),
                    None => self.lost("the pub/sub cluster connection closed"),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Reconcile(topic)) => self.reconcile(&topic, &delivery).await,
                    None => break,
                },
                () = tokio::time::sleep_until(retry), if waiting => {}
                // A command failed, or it is time: do the nodes still answer?
                () = self.inner.check.notified(), if linked => self.health(&delivery).await,
                () = tokio::time::sleep_until(health), if linked => {
                    health = Instant::now() + HEALTH_PERIOD;
                    self.health(&delivery).await;
                }
            }
        }
        tracing::debug!("Redis Cluster listener stopped");
    }

    fn failed(&mut self, error: &RedisError) {
        self.failures.failed(&self.target.describe(), error);
        self.next_try = Instant::now() + jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Asks the master of each watched partition (not in doubt) for a PING on the pub/sub
    /// connection, within [`HANG_TIMEOUT`]. A partition whose node does not answer may lose
    /// messages of its shard channels meanwhile (or its node is about to be replaced by its
    /// replica): it goes in doubt, as after a dropped node connection, and is re-subscribed and
    /// caught up (or reset) once its node answers. Publishes to a hung node fail on the command
    /// connection's response timeout and wait in the hub's retry buffer.
    async fn health(&mut self, delivery: &Delivery) {
        let Some(link) = &self.link else {
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
            let slot = self.inner.layout.slot_of(p);
            async move { tokio::time::timeout(HANG_TIMEOUT, ping_slot(&mut sub, slot)).await }
        });
        let answers = futures_util::future::join_all(pings).await;
        for (p, answer) in watched.into_iter().zip(answers) {
            let failure = match answer {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => describe(&error),
                Err(_) => format!("no PING answer within {HANG_TIMEOUT:?}"),
            };
            tracing::warn!(error = %failure, partition = p, "a Redis Cluster node stopped answering; catching up");
            self.suspect(p);
        }
    }

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

    fn on_message(&mut self, data: &[Value], delivery: &Delivery) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = data else {
            return;
        };
        let Some((topic, p)) = self.inner.layout.topic_of_channel(channel) else {
            return;
        };
        if self.doubt.contains(&p) {
            return; // the catch-up reads it from the stream
        }
        let Some(envelope) = decode(topic, payload) else {
            tracing::warn!(channel = %String::from_utf8_lossy(channel), "ignoring a message in an unknown format");
            return;
        };
        let id = envelope.id();
        let part = &mut self.parts[p as usize];
        if let Some(skip) = part.skip {
            if id <= skip {
                return;
            }
            part.skip = None;
        }
        part.delivered = Some(part.delivered.map_or(id, |d| d.max(id)));
        delivery.deliver(Arc::new(envelope));
    }

    fn on_unsubscribe(&mut self, data: &[Value], delivery: &Delivery) {
        let Some(Value::BulkString(channel)) = data.first() else {
            return;
        };
        let Some((topic, p)) = self.inner.layout.topic_of_channel(channel) else {
            return;
        };
        if let Some(pending) = self.unsubscribing.get_mut(&topic) {
            *pending -= 1;
            if *pending == 0 {
                self.unsubscribing.remove(&topic);
            }
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
            let layout = &self.inner.layout;
            self.inner
                .subscribed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| layout.partition_of(t) != p);
        }
    }

    fn watched_partitions(&self, delivery: &Delivery) -> HashMap<u32, Vec<Topic>> {
        self.inner.topics_by_partition(&delivery.watched_topics())
    }

    fn lost(&mut self, why: &str) {
        if self.link.take().is_some() {
            tracing::warn!(server = %self.target.describe(), why, "Redis Cluster connection lost; reconnecting");
        }
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.up.store(false, Ordering::Release);
        self.inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.unsubscribing.clear();
        self.doubt.clear();
        self.backoff = BACKOFF_MIN;
        self.next_try = Instant::now();
    }

    async fn connect(&mut self, delivery: &Delivery) {
        match self.try_connect(delivery).await {
            Ok(()) => {
                self.backoff = BACKOFF_MIN;
                self.failures.recovered(&self.target.describe());
            }
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
        let by = self.watched_partitions(delivery);
        for (&p, topics) in &by {
            self.subscribe(&mut sub, p, topics).await?;
        }
        let unconfirmed = self.inner.unconfirmed.swap(false, Ordering::AcqRel);
        let first = !self.ever_connected;
        for (&p, topics) in &by {
            self.resume(&mut conn, p, topics, delivery, first, unconfirmed)
                .await?;
        }
        {
            let mut subscribed = self
                .inner
                .subscribed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            subscribed.clear();
            subscribed.extend(by.into_values().flatten());
        }
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        self.link = Some(Link { sub, pushes });
        self.doubt.clear();
        self.inner.ever_up.store(true, Ordering::Release);
        self.inner.up.store(true, Ordering::Release);
        self.inner.subscribed_changed.notify_waiters();
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
            .map(|t| self.inner.layout.channel(p, t))
            .collect();
        sub.ssubscribe(&channels).await
    }

    /// Re-subscribes and catches up every partition in doubt.
    async fn resync(&mut self, delivery: &Delivery) {
        let Some(conn) = self
            .inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let by = self.watched_partitions(delivery);
        let unconfirmed = self.inner.unconfirmed.swap(false, Ordering::AcqRel);
        let mut failure = None;
        for p in self.doubt.clone() {
            let topics = by.get(&p).cloned().unwrap_or_default();
            let step = async {
                let Some(link) = &mut self.link else {
                    return Ok(());
                };
                if !topics.is_empty() {
                    let mut sub = link.sub.clone();
                    self.subscribe(&mut sub, p, &topics).await?;
                }
                let mut conn = conn.clone();
                self.resume(&mut conn, p, &topics, delivery, false, unconfirmed)
                    .await
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
                    self.inner
                        .subscribed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(topics);
                    self.inner.subscribed_changed.notify_waiters();
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
                self.inner.unconfirmed.store(true, Ordering::Release);
            }
            self.failed(&error);
            return;
        }
        self.backoff = BACKOFF_MIN;
        self.failures.recovered(&self.target.describe());
        delivery.reconnected();
    }

    /// After (re)subscribing the channels of `topics` (partition `p`): delivers from the streams
    /// what this process missed, in order, or resets their local streams where nothing proves
    /// the catch-up complete. `first`: the first connection of this process, where nothing was
    /// delivered yet and nothing can have been missed (unless a stream opened unconfirmed).
    async fn resume(
        &mut self,
        conn: &mut ClusterConnection,
        p: u32,
        topics: &[Topic],
        delivery: &Delivery,
        first: bool,
        unconfirmed: bool,
    ) -> Result<(), RedisError> {
        let part = self.parts[p as usize];
        let replaying = self.inner.replay > 0 && !topics.is_empty();
        let history = match part.delivered {
            Some(after) if replaying => self.inner.read_history(conn, p, topics, after).await?,
            previous => {
                let mut position = self
                    .inner
                    .read_history(conn, p, &[], EventId::new(0))
                    .await?;
                // Nothing can be replayed: after a gap that is a reset; at the first
                // connection only for streams that opened unconfirmed.
                position.complete = previous.is_none() && first && !unconfirmed;
                position
            }
        };
        let last = history.last;
        let replayed = history.deliver(delivery, topics, GAP);
        if replayed > 0 {
            tracing::info!(
                replayed,
                partition = p,
                "delivered what was published while the partition was unreachable"
            );
        }
        let through = part.delivered.map_or(last, |d| d.max(last));
        self.parts[p as usize] = Part {
            delivered: Some(through),
            skip: Some(through),
        };
        Ok(())
    }

    /// Subscribes or unsubscribes `topic` to match whether it has local subscribers now.
    async fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) {
        let p = self.inner.layout.partition_of(topic);
        if self.doubt.contains(&p) {
            return; // the catch-up subscribes whatever is watched then
        }
        let Some(link) = &mut self.link else {
            return;
        };
        let mut sub = link.sub.clone();
        let wanted = delivery.is_watched(topic);
        let (have, fresh) = {
            let subscribed = self
                .inner
                .subscribed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let layout = &self.inner.layout;
            (
                subscribed.contains(topic),
                !subscribed.iter().any(|t| layout.partition_of(t) == p),
            )
        };
        if wanted == have {
            return;
        }
        let channel = self.inner.layout.channel(p, topic);
        if wanted {
            match sub.ssubscribe(&channel).await {
                Ok(()) => {
                    if fresh {
                        self.refresh_base(p).await;
                    }
                    self.inner
                        .subscribed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(topic.clone());
                    self.inner.subscribed_changed.notify_waiters();
                }
                Err(error) => {
                    tracing::warn!(error = %describe(&error), %topic, "SSUBSCRIBE failed; retrying the partition");
                    self.suspect(p);
                }
            }
        } else {
            self.inner
                .subscribed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(topic);
            *self.unsubscribing.entry(topic.clone()).or_insert(0) += 1;
            if let Err(error) = sub.sunsubscribe(&channel).await {
                tracing::warn!(error = %describe(&error), %topic, "SUNSUBSCRIBE failed");
                self.unsubscribing.remove(topic);
            }
        }
    }

    /// A partition watched again after a while: a catch-up after a later gap starts from its
    /// current position, not from what this process delivered of it long ago (or never).
    async fn refresh_base(&mut self, p: u32) {
        let Some(mut conn) = self
            .inner
            .conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        match self
            .inner
            .read_history(&mut conn, p, &[], EventId::new(0))
            .await
        {
            Ok(position) => {
                let part = &mut self.parts[p as usize];
                part.delivered = Some(
                    part.delivered
                        .map_or(position.last, |d| d.max(position.last)),
                );
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), partition = p, "could not read the partition's position; catching up");
                self.suspect(p);
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

async fn next_push(link: &mut Option<Link>) -> Option<PushInfo> {
    match link {
        Some(link) => link.pushes.recv().await,
        None => std::future::pending().await,
    }
}

//! What both topologies of the Redis engine share: the state a broker and its connection task
//! share ([`Engine`]), the commands on it (publish, history, readiness, caps), and the
//! [`Broker`](crate::broker::Broker) impl every Redis broker has ([`redis_broker!`]).
//!
//! A topology is a [`Shard`]: how it names keys and channels per partition (one server: one
//! partition, 0), the connection type commands run on, and what a failed command says about
//! that connection.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, Script};
use tokio::sync::{mpsc, Notify};

use super::scripts::{self, Scripts};
use super::slots::{self, SlotStore, Slots};
use crate::broker::{BrokerError, Cause, Delivery, History};
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;

/// How long a history read waits for the topics' channels to be subscribed (live first, history
/// second) before it gives up and the client is told to reset.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// Safety margin when judging whether an id is younger than the retention time (clock steps,
/// ids running ahead of the clock under extreme load): errs towards a reset.
const AGE_MARGIN: Duration = Duration::from_secs(2);

/// The default lease of a connection slot: a crashed instance's slots are free after this long.
const DEFAULT_SLOT_LEASE: Duration = Duration::from_secs(30);

/// What a failed command says about the connection it ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The server answered but must be left (a read-only replica after a failover, an
    /// authentication error): reconnect even if PING works.
    Leave,
    /// The connection may be gone: the broker is down until the connection task checked it.
    Down,
    /// A node may be gone; the client library reconnects nodes itself, so the broker stays up
    /// and the connection task re-checks the subscriptions.
    Check,
    /// The command failed, the connection is fine.
    Command,
}

/// A topology of the Redis engine: where it keeps each partition's keys, and its connections.
pub(super) trait Shard: Send + Sync + 'static {
    /// A command connection (cheap to clone: it shares one multiplexed connection per node).
    type Conn: ConnectionLike + Clone + Send + Sync + 'static;
    /// What logs and errors call the server.
    const NAME: &'static str;
    /// What the channels are called in readiness answers.
    const CHANNELS: &'static str;
    /// Cap keys one refresh script may name (they must lie in one slot on a cluster).
    const REFRESH_BATCH: usize;
    /// The partition of `topic` (0 on one server).
    fn partition_of(&self, topic: &Topic) -> u32;
    /// The start of partition `p`'s key and channel names: the prefix, and on a cluster the
    /// partition's hash tag, so that all of them lie in one slot.
    fn base(&self, p: u32) -> String;
    /// The prefix alone, for keys spread by their own names (caps, the deployment's readiness
    /// key).
    fn prefix(&self) -> &str;

    /// The last id issued in partition `p`.
    fn seq(&self, p: u32) -> String {
        format!("{}seq", self.base(p))
    }
    /// The first id issued by partition `p`'s dataset.
    fn epoch(&self, p: u32) -> String {
        format!("{}epoch", self.base(p))
    }
    /// The stream of `topic` (in partition `p`).
    fn stream(&self, p: u32, topic: &Topic) -> String {
        format!("{}stream:{topic}", self.base(p))
    }
    /// The channel of `topic` (in partition `p`).
    fn channel(&self, p: u32, topic: &Topic) -> String {
        format!("{}topic:{topic}", self.base(p))
    }
    /// The hash of `topic`'s retained values (in partition `p`), one field per retain key.
    fn state(&self, p: u32, topic: &Topic) -> String {
        format!("{}state:{topic}", self.base(p))
    }
    /// The dedupe key of a `publish_once`.
    fn once(&self, p: u32, key: &str) -> String {
        format!("{}once:{key}", self.base(p))
    }
    /// The sorted set of cap key `key` (in its own slot on a cluster).
    fn slots(&self, key: &str) -> String {
        format!("{}slots:{key}", self.prefix())
    }
    /// The key a readiness check writes: one in partition `p`'s slot (only that slot's master
    /// takes the write), or the deployment's.
    fn ready(&self, p: Option<u32>) -> String {
        match p {
            Some(p) => format!("{}ready", self.base(p)),
            None => format!("{}ready", self.prefix()),
        }
    }
    /// What a failed command says about its connection.
    fn fault(e: &RedisError) -> Fault;
}

/// What a broker asks of its connection task. `watch` and `unwatch` only say "look at this
/// topic again": the task compares the hub's current local subscribers with what is
/// subscribed, so a quick leave-then-join never unsubscribes a channel that is wanted again.
pub(super) enum Command {
    Reconcile(Topic),
}

/// What a Redis broker holds: the engine it shares with its connection task `L`, the task's
/// command sender, and the task itself until the hub starts the broker.
pub(super) struct Handle<S: Shard, L> {
    pub(super) engine: Arc<Engine<S>>,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// Taken by `Broker::start`, which spawns it.
    pub(super) listener: Mutex<Option<L>>,
}

impl<S: Shard, L> Handle<S, L> {
    /// An engine for `shard` and its connection task, made by `listener` from the engine and
    /// the receiving end of the commands.
    pub(super) fn new(
        shard: S,
        replay: usize,
        ttl: Duration,
        scripts: Scripts,
        listener: impl FnOnce(Arc<Engine<S>>, mpsc::UnboundedReceiver<Command>) -> L,
    ) -> Self {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine::new(shard, replay, ttl, scripts));
        let listener = listener(engine.clone(), command_rx);
        Handle {
            engine,
            commands,
            listener: Mutex::new(Some(listener)),
        }
    }
}

/// What a Redis broker's methods and its background tasks share.
pub(super) struct Engine<S: Shard> {
    pub(super) shard: S,
    pub(super) replay: usize,
    ttl: Duration,
    /// The command connection (publish, history, caps) while connected; the connection task
    /// replaces it on every reconnect.
    conn: RwLock<Option<S::Conn>>,
    scripts: Scripts,
    /// Connected: the connections answered and every watched channel was subscribed since the
    /// last failure. While false, publishing and caps fail at once instead of waiting for a
    /// connection attempt.
    up: AtomicBool,
    /// Whether the broker was ever connected.
    ever_up: AtomicBool,
    /// Wakes the connection task to check the connections now (after a failed command).
    pub(super) check: Notify,
    /// Set with `check` on [`Fault::Leave`]: the connection task reconnects even if PING works.
    pub(super) reconnect: AtomicBool,
    /// A stream was opened without a confirmed subscription since the last connection: the next
    /// one cannot prove that stream missed nothing.
    pub(super) unconfirmed: AtomicBool,
    /// The hub's side, for readiness (every watched topic subscribed).
    delivery: OnceLock<Delivery>,
    /// Topics whose channel is confirmed subscribed (and, on a cluster, whose partition is not
    /// in doubt).
    subscribed: Mutex<HashSet<Topic>>,
    /// Signalled when `subscribed` grows.
    subscribed_changed: Notify,
    caps: Slots,
}

impl<S: Shard> Engine<S> {
    fn new(shard: S, replay: usize, ttl: Duration, scripts: Scripts) -> Self {
        Engine {
            shard,
            replay,
            ttl,
            conn: RwLock::new(None),
            scripts,
            up: AtomicBool::new(false),
            ever_up: AtomicBool::new(false),
            check: Notify::new(),
            reconnect: AtomicBool::new(false),
            unconfirmed: AtomicBool::new(false),
            delivery: OnceLock::new(),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            caps: Slots::new(DEFAULT_SLOT_LEASE),
        }
    }

    pub(super) fn caps(&self) -> &Slots {
        &self.caps
    }

    fn not_connected() -> BrokerError {
        BrokerError::Unavailable(format!("{} is not connected (reconnecting)", S::NAME).into())
    }

    fn is_up(&self) -> Result<(), BrokerError> {
        match self.up.load(Ordering::Acquire) {
            true => Ok(()),
            false => Err(Self::not_connected()),
        }
    }

    /// The command connection, while connected.
    pub(super) fn conn(&self) -> Result<S::Conn, BrokerError> {
        self.is_up()?;
        self.current_conn().ok_or_else(Self::not_connected)
    }

    /// The command connection the connection task installed, up or not.
    pub(super) fn current_conn(&self) -> Option<S::Conn> {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Maps a Redis error; a connection failure wakes the connection task (and, on one server,
    /// marks the broker down until it checked).
    pub(super) fn fail(&self, e: RedisError) -> BrokerError {
        let fault = S::fault(&e);
        if fault == Fault::Command {
            return BrokerError::Protocol(Cause::of(e));
        }
        if fault == Fault::Leave {
            self.reconnect.store(true, Ordering::Release);
        }
        if fault != Fault::Check && self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, "Redis command failed; checking the connection");
        }
        self.check.notify_one();
        BrokerError::Unavailable(Cause::of(e))
    }

    /// A connection was set up: `conn` takes commands and the channels of `topics` (every
    /// watched topic) are subscribed.
    pub(super) fn established(&self, conn: S::Conn, topics: impl IntoIterator<Item = Topic>) {
        {
            let mut subscribed = self.subscribed();
            subscribed.clear();
            subscribed.extend(topics);
        }
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        self.reconnect.store(false, Ordering::Release);
        self.ever_up.store(true, Ordering::Release);
        self.up.store(true, Ordering::Release);
        self.subscribed_changed.notify_waiters();
    }

    /// The connection is lost: no commands, no subscriptions until the next one.
    pub(super) fn lost(&self) {
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.up.store(false, Ordering::Release);
        self.subscribed().clear();
    }

    /// A slow answer, not a lost connection: up again.
    pub(super) fn answers(&self) {
        self.up.store(true, Ordering::Release);
    }

    /// The channels confirmed subscribed, as topics.
    pub(super) fn subscribed(&self) -> std::sync::MutexGuard<'_, HashSet<Topic>> {
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channels of `topics` are subscribed now: wakes history reads waiting for them.
    pub(super) fn confirm(&self, topics: impl IntoIterator<Item = Topic>) {
        self.subscribed().extend(topics);
        self.subscribed_changed.notify_waiters();
    }

    /// Watched topics (of partition `p`, or of all) whose channel is not subscribed (yet).
    fn unsubscribed(&self, p: Option<u32>) -> usize {
        let Some(delivery) = self.delivery.get() else {
            return 0;
        };
        let watched = delivery.watched_topics();
        let subscribed = self.subscribed();
        watched
            .iter()
            .filter(|t| p.is_none_or(|p| self.shard.partition_of(t) == p))
            .filter(|t| !subscribed.contains(*t))
            .count()
    }

    /// Waits until the channels of `topics` are subscribed, so that history read afterwards and
    /// live messages overlap instead of leaving a gap.
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
        tokio::time::timeout(SUBSCRIBE_WAIT, wait)
            .await
            .map_err(|elapsed| {
                let message = format!("{} subscription not confirmed in time", S::NAME);
                BrokerError::Unavailable(Cause::with_source(message, elapsed))
            })
    }

    /// Retained events of `topics` (all in partition `p`) after `after`, in id order, read in
    /// one script on `conn` (the connection task reads on the connection it is setting up,
    /// before the broker is up).
    pub(super) async fn read_history(
        &self,
        conn: &mut S::Conn,
        p: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, RedisError> {
        let horizon = self.ttl.saturating_sub(AGE_MARGIN).as_micros() as u64;
        let mut invocation = self.scripts.history.prepare_invoke();
        invocation.key(self.shard.seq(p)).key(self.shard.epoch(p));
        for topic in topics {
            invocation.key(self.shard.stream(p, topic));
        }
        invocation.arg(after.get()).arg(horizon);
        let reply = invocation.invoke_async(conn).await?;
        scripts::parse_history(topics, reply, self.delivery.get())
    }

    /// History for the broker's callers: empty with replay off, else read on the command
    /// connection (once `subscribed` confirmed the channels: anything published after the read
    /// arrives live, and the stream dedupes the overlap by id).
    pub(super) async fn history(
        &self,
        p: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        if self.replay == 0 {
            return Ok(History::default());
        }
        let mut conn = self.conn()?;
        self.read_history(&mut conn, p, topics, after)
            .await
            .map_err(|e| self.fail(e))
    }

    /// The current retained values of `topics`: one script per partition of them (its keys
    /// lie in one slot), in id order within each.
    pub(super) async fn retained(
        &self,
        topics: &[Topic],
    ) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        let mut parts: Vec<(u32, Vec<Topic>)> = Vec::new();
        for topic in topics {
            let p = self.shard.partition_of(topic);
            match parts.iter_mut().find(|(q, _)| *q == p) {
                Some((_, of)) => of.push(topic.clone()),
                None => parts.push((p, vec![topic.clone()])),
            }
        }
        let mut values = Vec::new();
        for (p, of) in parts {
            let mut conn = self.conn()?;
            let mut invocation = self.scripts.state.prepare_invoke();
            for topic in &of {
                invocation.key(self.shard.state(p, topic));
            }
            let raw: Vec<redis::Value> = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail(e))?;
            let parsed = scripts::parse_events(&of, &raw, self.delivery.get())
                .map_err(|e| BrokerError::Protocol(Cause::of(e)))?;
            values.extend(parsed);
        }
        values.sort_by_key(|e| e.id());
        Ok(values)
    }

    /// One publish script call; with `once`, deduped by that key (see `Broker::publish_once`).
    pub(super) async fn publish(
        &self,
        publication: &Publication,
        once: Option<&str>,
    ) -> Result<EventId, BrokerError> {
        let mut conn = self.conn()?;
        let shard = &self.shard;
        let retain = publication.retain.as_ref();
        let p = shard.partition_of(&publication.topic);
        let mut invocation = self.scripts.publish.prepare_invoke();
        invocation
            .key(shard.seq(p))
            .key(shard.epoch(p))
            .key(shard.stream(p, &publication.topic))
            .key(shard.state(p, &publication.topic));
        if let Some(key) = once {
            invocation.key(shard.once(p, key));
        }
        // The event comes back to this process through its own subscription, like to every other
        // instance: one path, one order.
        let id: String = invocation
            .arg(shard.channel(p, &publication.topic))
            .arg(&*publication.trace.event_line(&publication.event))
            .arg(publication.category.as_deref().unwrap_or(""))
            .arg(publication.data.as_ref())
            .arg(self.replay)
            .arg(self.ttl.as_secs().max(1))
            .arg(self.ttl.as_micros() as u64)
            .arg(crate::broker::DEDUPE_WINDOW.as_secs())
            .arg(if retain.is_some() { "1" } else { "0" })
            .arg(retain.map_or("", |r| r.key_str()))
            .arg(retain.map_or(0, |r| r.ttl_millis()))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        id.parse().map_err(|e| {
            let message = format!("publish script returned {id:?}");
            BrokerError::Protocol(Cause::with_source(message, e))
        })
    }

    /// Readiness (of partition `p`, or of all): connected, every watched channel subscribed, and
    /// a short-lived write answered. A write, not a PING: out of memory, a read-only replica, a
    /// revoked permission or (on a cluster) a node that lost the slot fail publishes while PING
    /// still answers; only the master of the key's slot takes it.
    pub(super) async fn ready(&self, p: Option<u32>) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let missing = self.unsubscribed(p);
        if missing > 0 {
            let of = p.map(|p| format!(" of partition {p}")).unwrap_or_default();
            return Err(BrokerError::Unavailable(
                format!(
                    "{missing} watched {}{of} are not subscribed yet",
                    S::CHANNELS
                )
                .into(),
            ));
        }
        redis::cmd("SET")
            .arg(self.shard.ready(p))
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))
    }

    /// `Broker::subscribed`: waits for the subscription of `topics`, and remembers when it could
    /// not be confirmed.
    pub(super) async fn confirmed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        // Down after having been up: do not wait for a subscription that cannot come (the
        // connection task subscribes every watched topic again when it reconnects). Not
        // connected yet (the process just started): the first connection is a moment away.
        let waited = match self.is_up() {
            Err(down) if self.ever_up.load(Ordering::Acquire) => Err(down),
            _ => self.wait_subscribed(topics).await,
        };
        if waited.is_err() {
            // The hub opens the stream anyway (fail-open): what other instances publish before
            // the subscription exists is missed, so the next connection resets it.
            self.unconfirmed.store(true, Ordering::Release);
        }
        waited
    }

    /// `Broker::start`: spawns the connection task `run` (once) and the lease refresh.
    pub(super) fn start<F>(
        self: &Arc<Self>,
        delivery: Delivery,
        run: Option<F>,
    ) -> Result<(), BrokerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            let message = format!(
                "the {} broker needs a Tokio runtime; build the hub inside one",
                S::NAME
            );
            BrokerError::Unavailable(Cause::with_source(message, e))
        })?;
        let _ = self.delivery.set(delivery);
        if let Some(run) = run {
            rt.spawn(run);
            rt.spawn(slots::refresh_loop(Arc::downgrade(self)));
        }
        Ok(())
    }
}

impl<S: Shard> SlotStore for Engine<S> {
    type Conn = S::Conn;
    const REFRESH_BATCH: usize = S::REFRESH_BATCH;

    fn slots(&self) -> &Slots {
        &self.caps
    }

    fn connected(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn slot_conn(&self) -> Result<S::Conn, BrokerError> {
        self.conn()
    }

    fn slot_key(&self, key: &str) -> String {
        self.shard.slots(key)
    }

    fn slot_scripts(&self) -> (&Script, &Script) {
        (&self.scripts.acquire_slot, &self.scripts.refresh_slots)
    }

    fn slot_fail(&self, e: RedisError) -> BrokerError {
        self.fail(e)
    }
}

/// The [`Broker`](crate::broker::Broker) impl of a Redis broker type with a field `handle` (a
/// [`Handle`]): the methods both topologies share, then `$own`, those they do not (at least
/// `kind` and `history`).
macro_rules! redis_broker {
    ($broker:ty, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::broker::Broker for $broker {
            $($own)*

            fn start(&self, delivery: $crate::broker::Delivery) -> Result<(), $crate::broker::BrokerError> {
                let listener = self
                    .handle
                    .listener
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let run = listener.map(|listener| listener.run(delivery.clone()));
                self.handle.engine.start(delivery, run)
            }

            async fn publish(
                &self,
                publication: &$crate::envelope::Publication,
            ) -> Result<$crate::event::EventId, $crate::broker::BrokerError> {
                self.handle.engine.publish(publication, None).await
            }

            async fn publish_once(
                &self,
                publication: &$crate::envelope::Publication,
                key: &str,
            ) -> Result<$crate::event::EventId, $crate::broker::BrokerError> {
                self.handle.engine.publish(publication, Some(key)).await
            }

            fn watch(&self, topic: &$crate::topic::Topic) {
                let _ = self.handle.commands.send($crate::broker::redis::engine::Command::Reconcile(topic.clone()));
            }

            fn unwatch(&self, topic: &$crate::topic::Topic) {
                let _ = self.handle.commands.send($crate::broker::redis::engine::Command::Reconcile(topic.clone()));
            }

            async fn subscribed(&self, topics: &[$crate::topic::Topic]) -> Result<(), $crate::broker::BrokerError> {
                self.handle.engine.confirmed(topics).await
            }

            fn retains(&self) -> bool {
                true
            }

            async fn retained(
                &self,
                topics: &[$crate::topic::Topic],
            ) -> Result<Vec<std::sync::Arc<$crate::envelope::Envelope>>, $crate::broker::BrokerError> {
                self.handle.engine.retained(topics).await
            }

            async fn ready(&self) -> Result<(), $crate::broker::BrokerError> {
                self.handle.engine.ready(None).await
            }

            async fn acquire_slot(
                &self,
                key: &str,
                limit: u32,
            ) -> Result<$crate::broker::Slot, $crate::broker::BrokerError> {
                self.handle.engine.caps().acquire(&*self.handle.engine, key, limit).await
            }

            async fn release_slot(&self, key: &str) {
                self.handle.engine.caps().release(&*self.handle.engine, key).await;
            }
        }
    };
}
pub(super) use redis_broker;

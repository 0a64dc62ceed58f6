//! The Redis broker: pub/sub between instances, Redis Streams for replay, sorted sets for caps.
//!
//! # What lives in Redis (all names start with the prefix, default `livepush:`)
//! | name | type | what |
//! | --- | --- | --- |
//! | `{prefix}seq` | string | the last id issued |
//! | `{prefix}epoch` | string | the first id issued by this Redis dataset |
//! | `{prefix}topic:{topic}` | pub/sub channel | live events of a topic |
//! | `{prefix}stream:{topic}` | stream (`MAXLEN ~ replay`, key TTL `replay_ttl`) | retained events |
//! | `{prefix}slots:{key}` | sorted set (member → lease expiry, ms) | connection slots of a cap key |
//! | `{prefix}ready` | string, 10 s TTL | written by `/health/ready` to prove that writes work |
//! | `{prefix}once:{key}` | string, TTL [`DEDUPE_WINDOW`](super::DEDUPE_WINDOW) | the id of a `publish_once` (outbox rows) |
//!
//! # Wire format
//! A published event travels as one string, the same on the channel and in the stream entry
//! (field `p`): `{id}\n{event}\n{category}\n{data}`: the decimal id, the event name, the
//! category (empty when none), and the compact JSON payload as published. Event and category
//! names never hold a newline (see [`EventName`](crate::EventName)); the payload is
//! everything after the third newline, so it may hold any byte. The topic is the channel name (or
//! stream key) without its prefix.
//!
//! # Commands per operation
//! - publish: one EVALSHA (TIME, GET, SET, [XADD, XTRIM, EXPIRE], PUBLISH);
//! - first local subscriber of a topic: one SUBSCRIBE; last one gone: one UNSUBSCRIBE; any further
//!   subscriber of a topic this process already watches: nothing;
//! - replay (`Last-Event-ID`): one EVALSHA for all topics (GET ×2, TIME, per topic EXISTS,
//!   XINFO STREAM, XRANGE);
//! - capped connection: one EVALSHA to acquire (TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, PEXPIRE), one
//!   ZREM to release, and one EVALSHA per lease period for all slots this process holds.
//! - readiness (`/health/ready`): one SET with a 10 s expiry;
//! - reconnect: per attempt, two connections (HELLO 3, PING), one SUBSCRIBE for all watched
//!   channels, and one history EVALSHA that delivers what was published while the connection
//!   was down (replay on) or names the position the watched streams are reset to.
//!
//! # Faults and what subscribers see
//! The listener owns both connections and reconnects them itself, with a backoff of 50 to
//! 500 ms, for ever, logging every failed attempt's cause (rate-limited, never the password):
//! `redis-rs`' `ConnectionManager` keeps a failed connection after an authentication error and
//! never tries again, and it is bound to one server, where Sentinel names a new master after a
//! failover. After any reconnect the events of watched topics published meanwhile are read
//! from the streams and delivered in order; when that cannot be proven complete (replay off,
//! Redis restarted empty, trimmed or expired streams, writes lost in a failover), the local
//! streams of those topics get `livepush.reset` instead of a silent gap. A subscription the
//! server drops (an `UNSUBSCRIBE` nobody asked for) is handled like a lost connection.

pub mod cluster;
mod listener;
mod scripts;
mod slots;
mod target;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use tokio::sync::{mpsc, Notify};

use super::{Broker, BrokerError, Delivery, History, Slot};
use crate::config::Config;
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;
pub use cluster::RedisClusterBroker;
use listener::{Command, Listener};
use scripts::Scripts;
use slots::{SlotStore, Slots};
use target::Target;

/// How long a history read waits for the topics' channels to be subscribed (live first, history
/// second) before it gives up and the client is told to reset.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// Safety margin when judging whether an id is younger than the retention time (clock steps,
/// ids running ahead of the clock under extreme load): errs towards a reset.
const AGE_MARGIN: Duration = Duration::from_secs(2);

/// The default lease of a connection slot: a crashed instance's slots are free after this long.
const DEFAULT_SLOT_LEASE: Duration = Duration::from_secs(30);

/// Carries events between instances through Redis.
///
/// Built by the hub when a Redis URL is configured ([`HubBuilder::redis`](crate::HubBuilder::redis),
/// `REDIS_URL`). Each process holds two connections whatever the number of clients: one for
/// commands (publish, history, caps) and one pub/sub connection that subscribes the channel of a
/// topic when its first local subscriber arrives and unsubscribes it when the last one leaves.
///
/// It connects in the background and reconnects with backoff: the application starts while Redis
/// is down, publishing fails fast (the hub keeps publications in its retry buffer),
/// `/health/ready` answers 503, and once Redis is back every watched channel is subscribed again
/// and, with replay on, the events published while the connection was down are delivered from
/// the streams, in order, once; where that cannot be proven complete, the affected streams get
/// `livepush.reset`. With a `redis+sentinel://` URL it asks the sentinels for the master before
/// every connection attempt, so it follows a failover.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hub = livepush::Hub::builder()
///     .redis("redis://127.0.0.1:6379/")
///     .redis_prefix("myapp:")
///     .replay(1000, std::time::Duration::from_secs(3600))
///     .build()
///     .unwrap();
/// # drop(hub);
/// # }
/// ```
pub struct RedisBroker {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedSender<Command>,
    /// Taken by [`Broker::start`], which spawns the listener.
    listener: Mutex<Option<Listener>>,
}

/// What the broker's methods and its background tasks share.
pub(crate) struct Inner {
    keys: Keys,
    replay: usize,
    ttl: Duration,
    /// The command connection (publish, history, caps) while connected; the listener replaces
    /// it on every reconnect. Cloning it is cheap and shares the one connection.
    conn: RwLock<Option<MultiplexedConnection>>,
    scripts: Scripts,
    /// Both connections answered and every watched channel was subscribed since the last
    /// failure. While false, publishing and caps fail at once instead of waiting for a
    /// connection attempt.
    up: AtomicBool,
    /// Wakes the listener to check the connections now (after a failed command).
    check: Notify,
    /// Set with `check` when the server answered but must be left (a read-only replica after a
    /// failover, an authentication error): the listener reconnects even if PING works.
    reconnect: AtomicBool,
    /// The hub's side, for readiness (every watched topic subscribed).
    delivery: OnceLock<Delivery>,
    /// Whether the broker was ever connected.
    ever_up: AtomicBool,
    /// A stream was opened without a confirmed subscription since the last connection: the next
    /// one cannot prove that stream missed nothing.
    unconfirmed: AtomicBool,
    /// Channels confirmed subscribed on the pub/sub connection, as topics.
    subscribed: Mutex<HashSet<Topic>>,
    /// Signalled when `subscribed` grows.
    subscribed_changed: Notify,
    slots: Slots,
}

/// Names of keys and channels under the prefix.
#[derive(Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn seq(&self) -> String {
        format!("{}seq", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    fn stream(&self, topic: &Topic) -> String {
        format!("{}stream:{}", self.prefix, topic)
    }
    fn channel(&self, topic: &Topic) -> String {
        format!("{}topic:{}", self.prefix, topic)
    }
    fn slots(&self, key: &str) -> String {
        format!("{}slots:{}", self.prefix, key)
    }
    fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }
    /// The topic of a channel name, if it is one of ours.
    fn topic_of_channel(&self, channel: &[u8]) -> Option<Topic> {
        let name = std::str::from_utf8(channel).ok()?;
        let topic = name.strip_prefix(&self.prefix)?.strip_prefix("topic:")?;
        Topic::new(topic).ok()
    }
}

impl RedisBroker {
    /// A broker for the Redis at `url` (`redis://`, `rediss://` or `redis+sentinel://`), with the
    /// prefix, replay and TTL of `config`.
    ///
    /// Does not connect: connections are made in the background once the hub starts the broker,
    /// so this succeeds while Redis is down. Fails only on a URL that cannot be parsed (the
    /// error never repeats the URL, which may hold a password). Must be called inside a Tokio
    /// runtime.
    pub fn new(url: &str, config: &Config) -> Result<Self, BrokerError> {
        let target = Target::parse(url)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            keys: Keys {
                prefix: config.redis_prefix.clone(),
            },
            replay: config.replay,
            ttl: config.replay_ttl,
            conn: RwLock::new(None),
            scripts: Scripts::new(),
            up: AtomicBool::new(false),
            check: Notify::new(),
            reconnect: AtomicBool::new(false),
            delivery: OnceLock::new(),
            ever_up: AtomicBool::new(false),
            unconfirmed: AtomicBool::new(false),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            slots: Slots::new(DEFAULT_SLOT_LEASE),
        });
        let listener = Listener::new(inner.clone(), target, command_rx);
        Ok(RedisBroker {
            inner,
            commands,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// How long a connection slot stays taken without being refreshed: the time after which the
    /// slots of a crashed instance are free again (default 30 s; refreshed every third of it).
    /// Use it with [`HubBuilder::broker`](crate::HubBuilder::broker).
    pub fn slot_lease(self, lease: Duration) -> Self {
        self.inner.slots.set_lease(lease);
        self
    }
}

impl RedisBroker {
    /// One publish script call; with `once`, deduped by that key (see `Broker::publish_once`).
    async fn publish_with(
        &self,
        publication: &Publication,
        once: Option<&str>,
    ) -> Result<EventId, BrokerError> {
        let inner = &self.inner;
        let mut conn = inner.conn()?;
        let ttl_secs = inner.ttl.as_secs().max(1);
        let mut invocation = inner.scripts.publish.prepare_invoke();
        invocation
            .key(inner.keys.seq())
            .key(inner.keys.epoch())
            .key(inner.keys.stream(&publication.topic));
        if let Some(key) = once {
            invocation.key(format!("{}once:{key}", inner.keys.prefix));
        }
        // The event comes back to this process through its own subscription, like to every other
        // instance: one path, one order.
        let id: String = invocation
            .arg(inner.keys.channel(&publication.topic))
            .arg(&publication.event)
            .arg(publication.category.as_deref().unwrap_or(""))
            .arg(publication.data.as_ref())
            .arg(inner.replay)
            .arg(ttl_secs)
            .arg(inner.ttl.as_micros() as u64)
            .arg(super::DEDUPE_WINDOW.as_secs())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| inner.fail(e))?;
        id.parse()
            .map_err(|_| BrokerError::Protocol(format!("publish script returned {id:?}")))
    }
}

/// What a failed command says about the connection it ran on.
fn needs_reconnect(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::ReadOnly)
    ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

fn needs_check(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout() || e.is_connection_dropped()
}

/// A Redis error as text for logs and health output: its category and the server's words.
pub(super) fn describe(e: &RedisError) -> String {
    e.to_string()
}

impl SlotStore for Inner {
    type Conn = MultiplexedConnection;
    /// Most cap keys refreshed by one script call.
    const REFRESH_BATCH: usize = 500;

    fn slots(&self) -> &Slots {
        &self.slots
    }

    fn connected(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn slot_conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        self.conn()
    }

    fn slot_key(&self, key: &str) -> String {
        self.keys.slots(key)
    }

    fn slot_scripts(&self) -> (&redis::Script, &redis::Script) {
        (&self.scripts.acquire_slot, &self.scripts.refresh_slots)
    }

    fn slot_fail(&self, e: RedisError) -> BrokerError {
        self.fail(e)
    }
}

impl Inner {
    fn is_up(&self) -> Result<(), BrokerError> {
        if self.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "Redis is not connected (reconnecting)".into(),
            ))
        }
    }

    /// The command connection, while connected.
    fn conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        self.is_up()?;
        self.conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| BrokerError::Unavailable("Redis is not connected (reconnecting)".into()))
    }

    /// Maps a Redis error; a connection failure marks the broker down and wakes the listener.
    fn fail(&self, e: RedisError) -> BrokerError {
        let reconnect = needs_reconnect(&e);
        if reconnect || needs_check(&e) {
            if reconnect {
                self.reconnect.store(true, Ordering::Release);
            }
            if self.up.swap(false, Ordering::AcqRel) {
                tracing::warn!(error = %describe(&e), "Redis command failed; checking the connection");
            }
            self.check.notify_one();
            BrokerError::Unavailable(describe(&e))
        } else {
            BrokerError::Protocol(describe(&e))
        }
    }

    /// Why `/health/ready` must not say ready, if anything: a watched topic whose channel is
    /// not subscribed (yet) on the pub/sub connection.
    fn unsubscribed_topics(&self) -> usize {
        let Some(delivery) = self.delivery.get() else {
            return 0;
        };
        let watched = delivery.watched_topics();
        let subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
        watched.iter().filter(|t| !subscribed.contains(*t)).count()
    }

    /// Waits until the channels of `topics` are subscribed, so that history read afterwards and
    /// live messages overlap instead of leaving a gap.
    async fn wait_subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        let wait = async {
            loop {
                let changed = self.subscribed_changed.notified();
                {
                    let subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
                    if topics.iter().all(|t| subscribed.contains(t)) {
                        return;
                    }
                }
                changed.await;
            }
        };
        tokio::time::timeout(SUBSCRIBE_WAIT, wait)
            .await
            .map_err(|_| {
                BrokerError::Unavailable("pub/sub subscription not confirmed in time".into())
            })
    }

    /// Retained events of `topics` after `after`, in id order, read in one script on `conn`
    /// (the listener reads on the connection it is setting up, before the broker is up).
    async fn read_history(
        &self,
        conn: &mut MultiplexedConnection,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, RedisError> {
        let horizon = self.ttl.saturating_sub(AGE_MARGIN).as_micros() as u64;
        let mut invocation = self.scripts.history.prepare_invoke();
        invocation.key(self.keys.seq()).key(self.keys.epoch());
        for topic in topics {
            invocation.key(self.keys.stream(topic));
        }
        invocation.arg(after.get()).arg(horizon);
        scripts::parse_history(topics, invocation.invoke_async(conn).await?)
    }
}

/// Encodes nothing: the publish script builds the payload. Decodes `{id}\n{event}\n{category}\n{data}`.
///
/// Another producer may write to the same channels, so nothing is trusted: the event and
/// category names are validated like ours ([`crate::EventName`]), and a payload that is not
/// well formed is dropped and counted (`livepush_broker_malformed_payloads_total`), never
/// written to a stream.
pub(crate) fn decode(topic: Topic, payload: &[u8]) -> Option<Envelope> {
    let envelope = decode_checked(topic, payload);
    if envelope.is_none() {
        crate::metrics::MALFORMED_PAYLOADS.inc();
    }
    envelope
}

fn decode_checked(topic: Topic, payload: &[u8]) -> Option<Envelope> {
    let mut parts = payload.splitn(4, |&b| b == b'\n');
    let id = std::str::from_utf8(parts.next()?)
        .ok()?
        .parse::<EventId>()
        .ok()?;
    let event = crate::event::EventName::new(std::str::from_utf8(parts.next()?).ok()?).ok()?;
    let category = std::str::from_utf8(parts.next()?).ok()?;
    let data = Bytes::copy_from_slice(parts.next()?);
    if !category.is_empty() {
        crate::event::validate_name(category).ok()?;
    }
    let category = (!category.is_empty()).then(|| category.to_owned());
    Some(Envelope::new(
        id,
        Publication {
            topic,
            event,
            category,
            data,
        },
    ))
}

#[async_trait]
impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn start(&self, delivery: Delivery) -> Result<(), BrokerError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            BrokerError::Unavailable(
                "the Redis broker needs a Tokio runtime; build the hub inside one".into(),
            )
        })?;
        let _ = self.inner.delivery.set(delivery.clone());
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(listener) = listener {
            rt.spawn(listener.run(delivery));
            rt.spawn(slots::refresh_loop(Arc::downgrade(&self.inner)));
        }
        Ok(())
    }

    async fn publish(&self, publication: &Publication) -> Result<EventId, BrokerError> {
        self.publish_with(publication, None).await
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        self.publish_with(publication, Some(key)).await
    }

    fn watch(&self, topic: &Topic) {
        let _ = self.commands.send(Command::Reconcile(topic.clone()));
    }

    fn unwatch(&self, topic: &Topic) {
        let _ = self.commands.send(Command::Reconcile(topic.clone()));
    }

    async fn subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        let inner = &self.inner;
        // Down after having been up: do not wait for a subscription that cannot come (the
        // listener subscribes every watched topic again when it reconnects). Not connected yet
        // (the process just started): the first connection is a moment away, wait for it.
        let waited = match inner.is_up() {
            Err(down) if inner.ever_up.load(Ordering::Acquire) => Err(down),
            _ => inner.wait_subscribed(topics).await,
        };
        if waited.is_err() {
            // The hub opens the stream anyway (fail-open): what other instances publish before
            // the subscription exists is missed, so the next connection resets it.
            inner.unconfirmed.store(true, Ordering::Release);
        }
        waited
    }

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        if self.inner.replay == 0 {
            return Ok(History::default());
        }
        let mut conn = self.inner.conn()?;
        // Called once `subscribed` confirmed the channels: anything published after the read
        // below arrives live, and the stream dedupes the overlap by id.
        self.inner
            .read_history(&mut conn, topics, after)
            .await
            .map_err(|e| self.inner.fail(e))
    }

    async fn position(&self) -> Result<EventId, BrokerError> {
        let mut conn = self.inner.conn()?;
        // Before the first publish the key is missing: position 0, below every issued id.
        let seq: Option<String> = redis::cmd("GET")
            .arg(self.inner.keys.seq())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.inner.fail(e))?;
        seq.as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|_| BrokerError::Protocol(format!("{} holds {seq:?}", self.inner.keys.seq())))
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        let mut conn = self.inner.conn()?;
        let missing = self.inner.unsubscribed_topics();
        if missing > 0 {
            return Err(BrokerError::Unavailable(format!(
                "{missing} watched channels are not subscribed yet"
            )));
        }
        // A write, not a PING: out of memory, a read-only replica or a revoked permission fail
        // publishes while PING still answers.
        redis::cmd("SET")
            .arg(self.inner.keys.ready())
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.inner.fail(e))
    }

    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        self.inner.slots.acquire(&*self.inner, key, limit).await
    }

    async fn release_slot(&self, key: &str) {
        self.inner.slots.release(&*self.inner, key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_wire_format() {
        let topic = Topic::new("t").unwrap();
        let e = decode(topic.clone(), b"42\ncreated\n\n{\"a\":\"x\ny\"}").unwrap();
        assert_eq!(e.id(), EventId::new(42));
        assert_eq!(e.event(), "created");
        assert_eq!(e.category(), None);
        assert_eq!(e.data().as_ref(), b"{\"a\":\"x\ny\"}");
        let e = decode(topic.clone(), b"7\ne\nbilling\n{}").unwrap();
        assert_eq!(e.category(), Some("billing"));
        for bad in [
            &b""[..],
            b"x\ne\n\n{}",
            b"1\ne\n",
            b"-1\ne\n\n{}",
            b"1\ne\rid: 9\n\n{}",
            b"1\n\n\n{}",
            b"1\ne\nbad category\n{}",
            b"1\ne\xff\n\n{}",
        ] {
            assert!(decode(topic.clone(), bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn maps_channels_back_to_topics() {
        let keys = Keys {
            prefix: "app:".into(),
        };
        let topic = Topic::new("user:7").unwrap();
        assert_eq!(keys.channel(&topic), "app:topic:user:7");
        assert_eq!(keys.topic_of_channel(b"app:topic:user:7"), Some(topic));
        assert_eq!(keys.topic_of_channel(b"other:topic:user:7"), None);
        assert_eq!(keys.topic_of_channel(b"app:stream:x"), None);
    }
}

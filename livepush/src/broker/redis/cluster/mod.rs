//! The Redis broker on a Redis Cluster (Redis ≥ 7): partitions, sharded pub/sub, one sequence
//! per partition.
//!
//! # What lives in Redis (all names start with the prefix, default `livepush:`)
//! Topics map to `P` partitions (default 16, `?partitions=N` in the URL); partition `p` has a
//! hash tag `{tag}` chosen so that the partitions spread over the slot space (see
//! `docs/multi-instance.md`). Per partition, in its one slot:
//! | name | type | what |
//! | --- | --- | --- |
//! | `{prefix}{tag}seq` | string | the last id issued in the partition |
//! | `{prefix}{tag}epoch` | string | the first id issued by this partition's dataset |
//! | `{prefix}{tag}topic:{topic}` | shard channel (`SPUBLISH`/`SSUBSCRIBE`) | live events of a topic |
//! | `{prefix}{tag}stream:{topic}` | stream (`MAXLEN ~ replay`, key TTL) | retained events |
//! | `{prefix}{tag}once:{key}` | string | the id of a `publish_once` |
//! | `{prefix}{tag}ready` | string (10 s TTL) | written by the retry buffer's readiness check of the partition |
//!
//! and, spread by their own names, `{prefix}slots:{key}` (connection caps) and `{prefix}ready`.
//! Payloads, ids (Redis-clock microseconds, per partition) and the history rules are those of
//! the single-Redis broker: the same Lua scripts run, with `SPUBLISH` for `PUBLISH`.
//!
//! # Commands per operation
//! - publish: one EVALSHA on the shard of the topic's partition (never a cluster-wide PUBLISH,
//!   which Redis Cluster copies to every node);
//! - first local subscriber of a topic: one SSUBSCRIBE on its shard; last one gone: one
//!   SUNSUBSCRIBE;
//! - replay: one history EVALSHA per partition of the connection's topics;
//! - a new connection whose topics span several partitions and that has no `Last-Event-ID`:
//!   one position read per partition (its `id:` line names every partition);
//! - caps: as on one Redis, except that the lease refresh is one EVALSHA per cap key (the keys
//!   lie in different slots).
//!
//! # Connections
//! Two `redis-rs` cluster connections per process: one for commands, one for sharded pub/sub
//! with a RESP3 push sender. `redis-rs` opens one multiplexed connection per node of each
//! (masters, and replicas it learns from the slot map, which stay idle), follows `MOVED`/`ASK`,
//! refreshes the slot map and reconnects nodes, and re-subscribes tracked shard channels after
//! a reconnect or a topology change. It does not tell when it did so, nor whether messages
//! were lost meanwhile, so the listener treats every sign of it as a possible gap of its own:
//! a `Disconnection` push (a node connection dropped) puts every watched partition in doubt, a
//! `sunsubscribe` nobody asked for (Redis sends one for each channel of a slot that moved
//! away, or on a failover) puts that channel's partition in doubt. A partition in doubt is
//! subscribed again explicitly (`SSUBSCRIBE` is idempotent; `redis-rs` routes it to the slot's
//! current owner, following `MOVED`), and once that is confirmed its streams are read from the
//! last id this process delivered: what was missed is delivered in order, and where the
//! history cannot prove it complete the partition's local streams get `livepush.reset`.

mod layout;
mod listener;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, RedisError, Script};
use tokio::sync::{mpsc, Notify};

use super::describe;
use super::scripts;
use super::slots::{self, SlotStore, Slots};
use crate::broker::{Broker, BrokerError, Delivery, History, Partitioned, Slot};
use crate::config::Config;
use crate::envelope::Publication;
use crate::event::EventId;
use crate::topic::Topic;
use layout::Layout;
use listener::{Command, Listener};

/// Partitions when the URL names none: enough to spread over a few masters evenly, few enough
/// that a connection's `id:` line stays short.
pub const DEFAULT_PARTITIONS: u32 = 16;

const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);
const AGE_MARGIN: Duration = Duration::from_secs(2);
const DEFAULT_SLOT_LEASE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// `redis-rs` retries a command after MOVED/ASK, a lost node or CLUSTERDOWN; a few tries cover
/// a redirect and a slot-map refresh, and a failover (seconds) is left to the hub's retry
/// buffer instead of holding the publisher.
const RETRIES: u32 = 3;

/// Carries events between instances through a Redis Cluster (`redis+cluster://` URLs).
///
/// Built by the hub for `REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...][?partitions=N]`
/// or [`HubBuilder::redis_cluster`](crate::HubBuilder::redis_cluster). Same features as
/// [`RedisBroker`](super::RedisBroker): fan-out between instances, replay, per-key caps,
/// fail-open with the retry buffer, reconnects, and never a silent gap; see the
/// [module documentation](self) for the layout and for how subscriptions follow failovers and
/// slot moves, and `docs/multi-instance.md` for the `id:` lines of connections whose topics span
/// several partitions.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hub = livepush::Hub::builder()
///     .redis_cluster(["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"])
///     .replay(1000, std::time::Duration::from_secs(3600))
///     .build()
///     .unwrap();
/// # drop(hub);
/// # }
/// ```
pub struct RedisClusterBroker {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedSender<Command>,
    listener: Mutex<Option<Listener>>,
}

/// Seeds and credentials of the cluster.
pub(super) struct Target {
    nodes: Vec<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Result<(Target, u32), BrokerError> {
        let invalid =
            |what: &str| BrokerError::InvalidAddress(format!("invalid Redis URL: {what}"));
        if url.starts_with("rediss+cluster://") {
            // redis-rs speaks TLS to cluster nodes only with one of its TLS features, which
            // livepush does not enable (it would bring a second TLS stack); refused here
            // rather than failing at every connection attempt.
            return Err(invalid(
                "rediss+cluster:// (TLS to a Redis Cluster) is not supported yet; use redis+cluster:// on a private network or a TLS tunnel",
            ));
        }
        let rest = url
            .strip_prefix("redis+cluster://")
            .ok_or_else(|| invalid("expected redis+cluster://"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| invalid("a part is not valid percent-encoded UTF-8"))
        };
        let (mut username, mut password) = (None, None);
        if let Some(credentials) = credentials {
            let (user, pass) = credentials.split_once(':').unwrap_or((credentials, ""));
            let (user, pass) = (decode(user)?, decode(pass)?);
            username = (!user.is_empty()).then_some(user);
            password = (!pass.is_empty()).then_some(pass);
        }
        let mut nodes = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid("each cluster node needs host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("a cluster node port is not a number"))?;
            if name.is_empty() || name.contains('/') {
                return Err(invalid("a cluster node host is empty or malformed"));
            }
            nodes.push(format!("redis://{name}:{port}"));
        }
        if nodes.is_empty() {
            return Err(invalid("redis+cluster:// needs at least one host:port"));
        }
        let mut partitions = DEFAULT_PARTITIONS;
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            match key {
                "partitions" => {
                    partitions = value
                        .parse()
                        .map_err(|_| invalid("partitions must be a number"))?
                }
                _ => {
                    return Err(invalid(
                        "unknown redis+cluster:// parameter (only partitions is known)",
                    ))
                }
            }
        }
        Ok((
            Target {
                nodes,
                username,
                password,
            },
            partitions,
        ))
    }

    /// A cluster client; with `push`, RESP3 pushes (shard messages) go there.
    fn client(
        &self,
        push: Option<mpsc::UnboundedSender<PushInfo>>,
    ) -> Result<ClusterClient, RedisError> {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RETRIES);
        if let Some(user) = &self.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password);
        }
        if let Some(push) = push {
            builder = builder.push_sender(push);
        }
        builder.build()
    }

    fn describe(&self) -> String {
        let hosts: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.trim_start_matches("redis://"))
            .collect();
        format!("cluster {}", hosts.join(","))
    }
}

pub(super) struct Inner {
    layout: Layout,
    replay: usize,
    ttl: Duration,
    conn: RwLock<Option<ClusterConnection>>,
    publish: Script,
    history: Script,
    acquire_slot: Script,
    refresh_slot: Script,
    /// Connected: both cluster connections answered once.
    up: AtomicBool,
    ever_up: AtomicBool,
    /// A stream opened without a confirmed subscription (see the single-Redis broker).
    unconfirmed: AtomicBool,
    check: Notify,
    delivery: OnceLock<Delivery>,
    /// Topics whose shard channel is subscribed and whose partition is not in doubt.
    subscribed: Mutex<HashSet<Topic>>,
    subscribed_changed: Notify,
    caps: Slots,
}

impl RedisClusterBroker {
    /// A broker for `url` (`redis+cluster://…`) with the prefix, replay and TTL of `config`.
    /// Connects in the background once the hub starts it.
    pub fn new(url: &str, config: &Config) -> Result<Self, BrokerError> {
        let (target, partitions) = Target::parse(url)?;
        let layout = Layout::new(&config.redis_prefix, partitions)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            layout,
            replay: config.replay,
            ttl: config.replay_ttl,
            conn: RwLock::new(None),
            publish: Script::new(
                &scripts::PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"),
            ),
            history: Script::new(scripts::HISTORY),
            acquire_slot: Script::new(scripts::ACQUIRE_SLOT),
            refresh_slot: Script::new(scripts::REFRESH_SLOTS),
            up: AtomicBool::new(false),
            ever_up: AtomicBool::new(false),
            unconfirmed: AtomicBool::new(false),
            check: Notify::new(),
            delivery: OnceLock::new(),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            caps: Slots::new(DEFAULT_SLOT_LEASE),
        });
        let listener = Listener::new(inner.clone(), target, command_rx);
        Ok(RedisClusterBroker {
            inner,
            commands,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// How long a connection slot stays taken without being refreshed (default 30 s).
    pub fn slot_lease(self, lease: Duration) -> Self {
        self.inner.caps.set_lease(lease);
        self
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_cluster_error()
}

impl SlotStore for Inner {
    type Conn = ClusterConnection;
    /// Cap keys lie in different slots: one script each.
    const REFRESH_BATCH: usize = 1;

    fn slots(&self) -> &Slots {
        &self.caps
    }

    fn connected(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn slot_conn(&self) -> Result<ClusterConnection, BrokerError> {
        self.conn()
    }

    fn slot_key(&self, key: &str) -> String {
        self.layout.slots(key)
    }

    fn slot_scripts(&self) -> (&Script, &Script) {
        (&self.acquire_slot, &self.refresh_slot)
    }

    fn slot_fail(&self, e: RedisError) -> BrokerError {
        self.fail(e)
    }
}

impl Inner {
    fn conn(&self) -> Result<ClusterConnection, BrokerError> {
        if !self.up.load(Ordering::Acquire) {
            return Err(BrokerError::Unavailable(
                "Redis Cluster is not connected (reconnecting)".into(),
            ));
        }
        self.conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                BrokerError::Unavailable("Redis Cluster is not connected (reconnecting)".into())
            })
    }

    /// Maps a Redis error. `redis-rs` reconnects nodes itself; a connection failure only wakes
    /// the listener, which re-checks the subscriptions.
    fn fail(&self, e: RedisError) -> BrokerError {
        if is_connection_error(&e) {
            self.check.notify_one();
            BrokerError::Unavailable(describe(&e))
        } else {
            BrokerError::Protocol(describe(&e))
        }
    }

    /// Watched topics (of `partition`, or of all) whose shard channel is not subscribed.
    fn unsubscribed(&self, partition: Option<u32>) -> usize {
        let Some(delivery) = self.delivery.get() else {
            return 0;
        };
        let watched = delivery.watched_topics();
        let subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
        watched
            .iter()
            .filter(|t| partition.is_none_or(|p| self.layout.partition_of(t) == p))
            .filter(|t| !subscribed.contains(*t))
            .count()
    }

    fn topics_by_partition(&self, topics: &[Topic]) -> HashMap<u32, Vec<Topic>> {
        let mut by: HashMap<u32, Vec<Topic>> = HashMap::new();
        for t in topics {
            by.entry(self.layout.partition_of(t))
                .or_default()
                .push(t.clone());
        }
        by
    }

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
                BrokerError::Unavailable("shard channel subscription not confirmed in time".into())
            })
    }

    /// Retained events of `topics` (all in partition `p`) after `after`, in id order: the
    /// single-Redis history script on the partition's keys.
    async fn read_history(
        &self,
        conn: &mut ClusterConnection,
        p: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, RedisError> {
        let horizon = self.ttl.saturating_sub(AGE_MARGIN).as_micros() as u64;
        let mut invocation = self.history.prepare_invoke();
        invocation.key(self.layout.seq(p)).key(self.layout.epoch(p));
        for topic in topics {
            invocation.key(self.layout.stream(p, topic));
        }
        invocation.arg(after.get()).arg(horizon);
        scripts::parse_history(topics, invocation.invoke_async(conn).await?)
    }

    async fn publish_with(
        &self,
        publication: &Publication,
        once: Option<&str>,
    ) -> Result<EventId, BrokerError> {
        let mut conn = self.conn()?;
        let p = self.layout.partition_of(&publication.topic);
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(self.layout.seq(p))
            .key(self.layout.epoch(p))
            .key(self.layout.stream(p, &publication.topic));
        if let Some(key) = once {
            invocation.key(self.layout.once(p, key));
        }
        let id: String = invocation
            .arg(self.layout.channel(p, &publication.topic))
            .arg(&publication.event)
            .arg(publication.category.as_deref().unwrap_or(""))
            .arg(publication.data.as_ref())
            .arg(self.replay)
            .arg(self.ttl.as_secs().max(1))
            .arg(self.ttl.as_micros() as u64)
            .arg(crate::broker::DEDUPE_WINDOW.as_secs())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        id.parse()
            .map_err(|_| BrokerError::Protocol(format!("publish script returned {id:?}")))
    }
}

#[async_trait]
impl Broker for RedisClusterBroker {
    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    fn start(&self, delivery: Delivery) -> Result<(), BrokerError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            BrokerError::Unavailable(
                "the Redis Cluster broker needs a Tokio runtime; build the hub inside one".into(),
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
        self.inner.publish_with(publication, None).await
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        self.inner.publish_with(publication, Some(key)).await
    }

    fn watch(&self, topic: &Topic) {
        let _ = self.commands.send(Command::Reconcile(topic.clone()));
    }

    fn unwatch(&self, topic: &Topic) {
        let _ = self.commands.send(Command::Reconcile(topic.clone()));
    }

    async fn subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let waited = match inner.conn() {
            Err(down) if inner.ever_up.load(Ordering::Acquire) => Err(down),
            _ => inner.wait_subscribed(topics).await,
        };
        if waited.is_err() {
            inner.unconfirmed.store(true, Ordering::Release);
        }
        waited
    }

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        // The hub asks `partition_history` per partition; this serves callers of the trait that
        // do not know about partitions, when all topics lie in one partition.
        let by = self.inner.topics_by_partition(topics);
        match by.into_iter().collect::<Vec<_>>().as_slice() {
            [] => Ok(History::default()),
            [(p, topics)] => self.partition_history(*p, topics, after).await,
            _ => Err(BrokerError::Protocol(
                "topics of several partitions: read history per partition".into(),
            )),
        }
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        let mut conn = self.inner.conn()?;
        let missing = self.inner.unsubscribed(None);
        if missing > 0 {
            return Err(BrokerError::Unavailable(format!(
                "{missing} watched shard channels are not subscribed yet"
            )));
        }
        redis::cmd("SET")
            .arg(self.inner.layout.ready())
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.inner.fail(e))
    }

    fn partitioned(&self) -> Option<&dyn Partitioned> {
        Some(self)
    }

    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        self.inner.caps.acquire(&*self.inner, key, limit).await
    }

    async fn release_slot(&self, key: &str) {
        self.inner.caps.release(&*self.inner, key).await;
    }
}

#[async_trait]
impl Partitioned for RedisClusterBroker {
    fn partitions(&self) -> u32 {
        self.inner.layout.count()
    }

    fn partition_of(&self, topic: &Topic) -> u32 {
        self.inner.layout.partition_of(topic)
    }

    async fn positions(&self, partitions: &[u32]) -> Result<Vec<EventId>, BrokerError> {
        let conn = self.inner.conn()?;
        let reads = partitions.iter().map(|&p| {
            let mut conn = conn.clone();
            async move {
                self.inner
                    .read_history(&mut conn, p, &[], EventId::new(0))
                    .await
            }
        });
        let histories = futures_util::future::try_join_all(reads)
            .await
            .map_err(|e| self.inner.fail(e))?;
        Ok(histories.into_iter().map(|h| h.last).collect())
    }

    async fn partition_ready(&self, partition: u32) -> Result<(), BrokerError> {
        let mut conn = self.inner.conn()?;
        let missing = self.inner.unsubscribed(Some(partition));
        if missing > 0 {
            return Err(BrokerError::Unavailable(format!(
                "{missing} watched shard channels of partition {partition} are not subscribed yet"
            )));
        }
        // A write in the partition's slot: its master answers (not a replica, not a node that
        // lost the slot).
        redis::cmd("SET")
            .arg(self.inner.layout.ready_in(partition))
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.inner.fail(e))
    }

    async fn partition_history(
        &self,
        partition: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        if self.inner.replay == 0 {
            return Ok(History::default());
        }
        let mut conn = self.inner.conn()?;
        self.inner
            .read_history(&mut conn, partition, topics, after)
            .await
            .map_err(|e| self.inner.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_urls_and_names_no_credentials_in_errors() {
        let (target, partitions) =
            Target::parse("redis+cluster://u:s%40cret@127.0.0.1:7000,127.0.0.1:7001/?partitions=8")
                .unwrap();
        assert_eq!(partitions, 8);
        assert_eq!(
            target.nodes,
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(target.username.as_deref(), Some("u"));
        assert_eq!(target.password.as_deref(), Some("s@cret"));
        assert_eq!(target.describe(), "cluster 127.0.0.1:7000,127.0.0.1:7001");
        let (_, partitions) = Target::parse("redis+cluster://h:1").unwrap();
        assert_eq!(partitions, DEFAULT_PARTITIONS);
        for bad in [
            "redis+cluster://",
            "redis+cluster://:topsecret@h",
            "redis+cluster://:topsecret@h:x",
            "redis+cluster://:topsecret@h:1?color=red",
            "redis+cluster://:topsecret@h:1?partitions=x",
            "rediss+cluster://:topsecret@h:1",
        ] {
            let error = Target::parse(bad).err().expect(bad).to_string();
            assert!(!error.contains("topsecret"), "{error}");
        }
        let tls = Target::parse("rediss+cluster://h:1")
            .err()
            .unwrap()
            .to_string();
        assert!(tls.contains("not supported"), "{tls}");
    }
}

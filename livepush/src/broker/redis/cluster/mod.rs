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
//! with a RESP3 push sender (and a third, idle but for one script every 150 ms, that renews the
//! presence lease from a thread of its own). `redis-rs` opens one multiplexed connection per node of each
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

use std::collections::HashMap;
use std::time::Duration;

use crate::broker::redis::engine::{redis_broker, Handle, Shard};
use crate::broker::redis::presence::RedisPresence;
use crate::broker::redis::scripts::Scripts;
use crate::broker::redis::target::ClusterTarget;
use crate::broker::{BrokerError, History, Partitioned};
use crate::event::EventId;
use crate::topic::Topic;
use layout::Layout;
use listener::Listener;

/// Partitions when the URL names none: enough to spread over a few masters evenly, few enough
/// that a connection's `id:` line stays short.
pub const DEFAULT_PARTITIONS: u32 = 16;

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
    handle: Handle<Layout, Listener>,
    presence: std::sync::Arc<RedisPresence<Layout>>,
}

impl RedisClusterBroker {
    /// How long a connection slot stays taken without being refreshed (default 30 s).
    pub fn slot_lease(self, lease: Duration) -> Self {
        self.handle.engine.caps().set_lease(lease);
        self
    }

    /// A broker for `url` (`redis+cluster://…`) with the key `prefix`, retaining `replay`
    /// events per topic for `replay_ttl` (as [`RedisBroker::new`](super::RedisBroker::new)).
    /// Connects in the background once the hub starts it.
    pub fn new(
        url: &str,
        prefix: &str,
        replay: usize,
        replay_ttl: Duration,
    ) -> Result<Self, BrokerError> {
        let (target, partitions) = ClusterTarget::parse(url)?;
        let partitions = partitions.unwrap_or(DEFAULT_PARTITIONS);
        let layout = Layout::new(prefix, partitions)?;
        let scripts = Scripts::sharded();
        let handle = Handle::new(layout, replay, replay_ttl, scripts, |engine, commands| {
            Listener::new(engine, commands, target)
        });
        // the lease renewal's own cluster connection, from the same seeds
        let (dial, _) = ClusterTarget::parse(url)?;
        let presence = std::sync::Arc::new(RedisPresence::new(handle.engine.clone(), dial));
        Ok(RedisClusterBroker { handle, presence })
    }
}

/// `topics` by partition.
fn by_partition(layout: &Layout, topics: &[Topic]) -> HashMap<u32, Vec<Topic>> {
    let mut by: HashMap<u32, Vec<Topic>> = HashMap::new();
    for t in topics {
        by.entry(layout.partition_of(t))
            .or_default()
            .push(t.clone());
    }
    by
}

redis_broker!(RedisClusterBroker, {
    fn presence(&self) -> Option<std::sync::Arc<dyn crate::broker::PresenceStore>> {
        Some(self.presence.clone())
    }

    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        // The hub asks `partition_history` per partition; this serves callers of the trait that
        // do not know about partitions, when all topics lie in one partition.
        let by = by_partition(&self.handle.engine.shard, topics);
        match by.into_iter().collect::<Vec<_>>().as_slice() {
            [] => Ok(History::default()),
            [(p, topics)] => self.handle.engine.history(*p, topics, after).await,
            _ => Err(BrokerError::Protocol(
                "topics of several partitions: read history per partition".into(),
            )),
        }
    }

    fn partitioned(&self) -> Option<&dyn Partitioned> {
        Some(self)
    }
});

#[async_trait::async_trait]
impl Partitioned for RedisClusterBroker {
    fn partitions(&self) -> u32 {
        self.handle.engine.shard.count()
    }

    fn partition_of(&self, topic: &Topic) -> u32 {
        self.handle.engine.shard.partition_of(topic)
    }

    async fn positions(&self, partitions: &[u32]) -> Result<Vec<EventId>, BrokerError> {
        let engine = &self.handle.engine;
        let conn = engine.conn()?;
        let reads = partitions.iter().map(|&p| {
            let mut conn = conn.clone();
            async move {
                engine
                    .read_history(&mut conn, p, &[], EventId::new(0))
                    .await
            }
        });
        let histories = futures_util::future::try_join_all(reads)
            .await
            .map_err(|e| engine.fail(e))?;
        Ok(histories.into_iter().map(|h| h.last).collect())
    }

    async fn partition_ready(&self, partition: u32) -> Result<(), BrokerError> {
        self.handle.engine.ready(Some(partition)).await
    }

    async fn partition_history(
        &self,
        partition: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError> {
        self.handle.engine.history(partition, topics, after).await
    }
}

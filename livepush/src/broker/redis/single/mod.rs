//! The Redis broker on one server (or a Sentinel-managed master): pub/sub between instances,
//! Redis Streams for replay, sorted sets for caps.
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
//! | `{prefix}once:{key}` | string, TTL [`DEDUPE_WINDOW`](crate::broker::DEDUPE_WINDOW) | the id of a `publish_once` (outbox rows) |
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

mod listener;

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::engine::{redis_broker, Fault, Handle, Shard};
use super::presence::RedisPresence;
use super::scripts::Scripts;
use super::target::Target;
use crate::broker::{BrokerError, Cause};
use crate::event::EventId;
use crate::topic::Topic;
use listener::Listener;

/// Carries events between instances through Redis.
///
/// Built by the hub when a Redis URL is configured ([`HubBuilder::redis`](crate::HubBuilder::redis),
/// `REDIS_URL`). Each process holds three connections whatever the number of clients: one for
/// commands (publish, history, caps), one pub/sub connection that subscribes the channel of a
/// topic when its first local subscriber arrives and unsubscribes it when the last one leaves,
/// and the presence lease's, on a thread of its own (see `docs/presence.md`).
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
    handle: Handle<Keys, Listener>,
    presence: std::sync::Arc<RedisPresence<Keys>>,
}

/// Names of keys and channels under the prefix: one server is one partition.
#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// The topic of a channel name, if it is one of ours.
    fn topic_of_channel(&self, channel: &[u8]) -> Option<Topic> {
        let name = std::str::from_utf8(channel).ok()?;
        let topic = name.strip_prefix(&self.prefix)?.strip_prefix("topic:")?;
        Topic::new(topic).ok()
    }
}

impl Shard for Keys {
    type Conn = MultiplexedConnection;
    const NAME: &'static str = "Redis";
    const CHANNELS: &'static str = "channels";
    /// Most cap keys refreshed by one script call.
    const REFRESH_BATCH: usize = 500;

    fn partition_of(&self, _: &Topic) -> u32 {
        0
    }
    fn base(&self, _: u32) -> String {
        self.prefix.clone()
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn fault(e: &RedisError) -> Fault {
        let leave = matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::ReadOnly)
        ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
        if leave {
            Fault::Leave
        } else if e.is_io_error()
            || e.is_unrecoverable_error()
            || e.is_timeout()
            || e.is_connection_dropped()
        {
            Fault::Down
        } else {
            Fault::Command
        }
    }
}

impl RedisBroker {
    /// A broker for the Redis at `url` (`redis://`, `rediss://` or `redis+sentinel://`) whose
    /// keys and channels start with `prefix`, retaining `replay` events per topic for `replay_ttl`
    /// (the hub's [`Config::replay`](crate::Config::replay) and
    /// [`Config::replay_ttl`](crate::Config::replay_ttl); 0 turns replay off).
    ///
    /// Does not connect: connections are made in the background once the hub starts the broker,
    /// so this succeeds while Redis is down. Fails only on a URL that cannot be parsed (the
    /// error never repeats the URL, which may hold a password). Must be called inside a Tokio
    /// runtime.
    pub fn new(
        url: &str,
        prefix: &str,
        replay: usize,
        replay_ttl: Duration,
    ) -> Result<Self, BrokerError> {
        let target = Target::parse(url)?;
        let keys = Keys {
            prefix: prefix.to_owned(),
        };
        let scripts = Scripts::new();
        let handle = Handle::new(keys, replay, replay_ttl, scripts, |engine, commands| {
            Listener::new(engine, target, commands)
        });
        // the lease renewal's own connection, to the same server (or sentinels)
        let dial = Target::parse(url)?;
        let presence = std::sync::Arc::new(RedisPresence::new(handle.engine.clone(), dial));
        Ok(RedisBroker { handle, presence })
    }

    /// How long a connection slot stays taken without being refreshed: the time after which the
    /// slots of a crashed instance are free again (default 30 s; refreshed every third of it).
    /// Use it with [`HubBuilder::broker`](crate::HubBuilder::broker).
    pub fn slot_lease(self, lease: Duration) -> Self {
        self.handle.engine.caps().set_lease(lease);
        self
    }
}

redis_broker!(RedisBroker, {
    fn presence(&self) -> Option<std::sync::Arc<dyn crate::broker::PresenceStore>> {
        Some(self.presence.clone())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn history(
        &self,
        topics: &[Topic],
        after: EventId,
    ) -> Result<crate::broker::History, BrokerError> {
        self.handle.engine.history(0, topics, after).await
    }

    async fn watching_processes(&self, topics: &[Topic]) -> Option<Vec<u64>> {
        if topics.is_empty() {
            return Some(Vec::new());
        }
        let engine = &self.handle.engine;
        let mut conn = engine.conn().ok()?;
        let channels: Vec<String> = topics.iter().map(|t| engine.shard.channel(0, t)).collect();
        // Each process subscribes a topic's channel once, on its pub/sub connection, while it
        // has local subscribers of the topic.
        let counts: HashMap<String, u64> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channels)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(
            channels
                .iter()
                .map(|c| counts.get(c).copied().unwrap_or(0))
                .collect(),
        )
    }

    async fn position(&self) -> Result<EventId, BrokerError> {
        let engine = &self.handle.engine;
        let mut conn = engine.conn()?;
        // Before the first publish the key is missing: position 0, below every issued id.
        let seq: Option<String> = redis::cmd("GET")
            .arg(engine.shard.seq(0))
            .query_async(&mut conn)
            .await
            .map_err(|e| engine.fail(e))?;
        seq.as_deref().unwrap_or("0").parse().map_err(|e| {
            let message = format!("{} holds {seq:?}", engine.shard.seq(0));
            BrokerError::Protocol(Cause::with_source(message, e))
        })
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_channels_back_to_topics() {
        let keys = Keys {
            prefix: "app:".into(),
        };
        let topic = Topic::new("user:7").unwrap();
        assert_eq!(keys.channel(0, &topic), "app:topic:user:7");
        assert_eq!(keys.topic_of_channel(b"app:topic:user:7"), Some(topic));
        assert_eq!(keys.topic_of_channel(b"other:topic:user:7"), None);
        assert_eq!(keys.topic_of_channel(b"app:stream:x"), None);
    }
}

//! Presence on Redis (one server, Sentinel, Cluster): members and occupancy per topic, shared
//! by every instance, with a lease per instance so that a dead one's members leave within
//! a second.
//!
//! Per topic, in the topic's partition (one hash tag on a cluster, so each script is atomic on
//! one node), under `{base}pr:{topic}:`:
//! - `m` hash member → streams (all instances), `i` hash member → info, `n` the total streams:
//!   `count` is `HLEN m` and `GET n`, O(1);
//! - `v` the version: `INCR`ed whenever a member appears or disappears (never reset);
//! - `x:{instance}` hash member → that instance's streams, so its share can be taken back;
//! - `h` set of instances holding subscribers of the topic (occupancy: empty ↔ vacated).
//!
//! Per instance, under the prefix: its lease in the sorted set `pr:instances` ([`super::lease`])
//! and `pr:topics:{instance}` (the topics where it has entries, written before the entries).
//! Every [`RENEW_EVERY`], each instance renews its lease and learns which instances' leases ran
//! out, in one script; for each such instance it runs [`MOVE`] (with nothing to record) on each
//! of its topics (atomic per topic, and idempotent: when two instances reap the same one, the
//! second finds nothing left), then forgets it. The reap that empties a topic's `h` reports the
//! topic vacated: once, on one instance.
//!
//! The renewal runs on a thread of its own ([`super::renewal`]), so neither a saturated
//! application runtime nor [`Held`]'s lock (a join that waits on a slow Redis holds it) delays
//! it; the maintenance on the application's runtime acts on what it found (a lost lease, dead
//! instances).
//!
//! An instance whose own lease ran out (a pause longer than the lease, or Redis restarted
//! empty), or whose command failed half way, takes a new identity and moves each of its topics
//! to it with [`MOVE`] (the old share taken back and the current one recorded in one atomic
//! step), so a member that stays never leaves and is never counted twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::{RedisError, Script};

use super::engine::{Engine, Shard};
use super::lease::{Leases, RENEW_EVERY};
use super::renewal::{Dial, Renewal};
use crate::broker::{BrokerError, Member, Occupancy, Presence, PresenceCount, PresenceStore};
use crate::topic::Topic;

/// `KEYS`: m, i, n, v, x. `ARGV`: member, info ("" keeps the one held), streams to add.
/// Returns the member's streams on all instances.
const JOIN: &str = r#"
local add = tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[5], ARGV[1], add)
local t = redis.call('HINCRBY', KEYS[1], ARGV[1], add)
redis.call('INCRBY', KEYS[3], add)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
if t == add then redis.call('INCR', KEYS[4]) end
return t
"#;

/// `KEYS`: m, i, n, v, x. `ARGV`: member. Takes one stream of this instance's back; nothing when
/// this instance holds none (it was reaped). Returns the member's streams left, or -1.
const LEAVE: &str = r#"
local c = redis.call('HINCRBY', KEYS[5], ARGV[1], -1)
if c <= 0 then redis.call('HDEL', KEYS[5], ARGV[1]) end
if c < 0 then return -1 end
local t = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if redis.call('DECR', KEYS[3]) <= 0 then redis.call('DEL', KEYS[3]) end
if t <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('INCR', KEYS[4])
end
return t
"#;

/// `KEYS`: h. `ARGV`: instance. 1 when the topic was held by no instance before.
const OCCUPY: &str = r#"
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
"#;

/// `KEYS`: h. `ARGV`: instance. 1 when no instance holds the topic now.
const VACATE: &str = r#"
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0
"#;

/// `KEYS`: m, i, n, v, x of the old instance, h, x of the new one. `ARGV`: old instance, new
/// instance, "1" when the new one holds the topic (occupancy), then (member, info, streams)
/// triples. Moves the topic from the old identity to the new one in one step: takes back every
/// stream and the occupancy of the old one, and records the given members and occupancy under
/// the new one. A member in both never leaves; the version moves only when the set of members
/// changed. With no triples and no occupancy it reaps a dead instance (idempotent: the second
/// finds nothing). Returns 1 when the topic became occupied, -1 vacated, 0 neither.
const MOVE: &str = r#"
local held = redis.call('SCARD', KEYS[6]) > 0
local gone = {}
local e = redis.call('HGETALL', KEYS[5])
for j = 1, #e, 2 do
  local k, c = e[j], tonumber(e[j + 1])
  if c > 0 then
    redis.call('DECRBY', KEYS[3], c)
    if redis.call('HINCRBY', KEYS[1], k, -c) <= 0 then
      redis.call('HDEL', KEYS[1], k)
      gone[k] = true
    end
  end
end
redis.call('DEL', KEYS[5])
local changed = false
for j = 4, #ARGV, 3 do
  local k, info, s = ARGV[j], ARGV[j + 1], tonumber(ARGV[j + 2])
  redis.call('HINCRBY', KEYS[7], k, s)
  redis.call('INCRBY', KEYS[3], s)
  if info ~= '' then redis.call('HSET', KEYS[2], k, info) end
  if redis.call('HINCRBY', KEYS[1], k, s) == s then
    if gone[k] then gone[k] = nil else changed = true end
  end
end
for k in pairs(gone) do
  redis.call('HDEL', KEYS[2], k)
  changed = true
end
if changed then redis.call('INCR', KEYS[4]) end
if tonumber(redis.call('GET', KEYS[3]) or '0') <= 0 then redis.call('DEL', KEYS[3]) end
redis.call('SREM', KEYS[6], ARGV[1])
if ARGV[3] == '1' then redis.call('SADD', KEYS[6], ARGV[2]) end
local now = redis.call('SCARD', KEYS[6]) > 0
if now and not held then return 1 end
if held and not now then return -1 end
return 0
"#;

/// `KEYS`: m, i, v. Returns `{version, m as a flat list, i as a flat list}`, read atomically.
const READ: &str = r#"
return {redis.call('GET', KEYS[3]) or '0', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"#;

/// What this instance holds, and under which identity.
struct Held {
    instance: String,
    /// Whether the instance is listed with a lease.
    registered: bool,
    /// A command failed half way: at the next maintenance, take a new identity and record
    /// everything held again.
    dirty: bool,
    /// Topics listed in `pr:topics:{instance}`.
    indexed: HashSet<Topic>,
    /// (topic, member) → (streams, info).
    members: HashMap<(Topic, String), (u64, String)>,
    /// Topics this instance holds subscribers of (occupancy).
    occupied: HashSet<Topic>,
    /// Occupancy edges a resync made, for the next maintenance to report.
    edges: Vec<(Topic, Occupancy)>,
}

/// The presence store of a Redis broker of topology `S`.
pub(super) struct RedisPresence<S: Shard> {
    engine: Arc<Engine<S>>,
    scripts: [Script; 6],
    leases: Arc<Leases>,
    held: tokio::sync::Mutex<Held>,
    /// Renews the lease of `held.instance` (once registered) from its own thread.
    renewal: Renewal,
}

const S_JOIN: usize = 0;
const S_LEAVE: usize = 1;
const S_OCCUPY: usize = 2;
const S_VACATE: usize = 3;
const S_MOVE: usize = 4;
const S_READ: usize = 5;

fn new_instance() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}.{:x}.{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl<S: Shard> RedisPresence<S> {
    /// The presence store on `engine`'s Redis; its lease renewal dials its own connections
    /// with `dial`.
    pub(super) fn new(engine: Arc<Engine<S>>, dial: impl Dial) -> Self {
        let leases = Arc::new(Leases::new(format!(
            "{}pr:instances",
            engine.shard.prefix()
        )));
        RedisPresence {
            engine,
            scripts: [JOIN, LEAVE, OCCUPY, VACATE, MOVE, READ].map(Script::new),
            renewal: Renewal::new(dial, leases.clone()),
            leases,
            held: tokio::sync::Mutex::new(Held {
                instance: new_instance(),
                registered: false,
                dirty: false,
                indexed: HashSet::new(),
                members: HashMap::new(),
                occupied: HashSet::new(),
                edges: Vec::new(),
            }),
        }
    }

    /// The key `name` of `topic` (m, i, n, v, h, or `x:{instance}`), in the topic's partition.
    fn key(&self, topic: &Topic, name: &str) -> String {
        let shard = &self.engine.shard;
        format!("{}pr:{topic}:{name}", shard.base(shard.partition_of(topic)))
    }

    /// m, i, n, v, x of `instance`: the keys of [`JOIN`], [`LEAVE`] and (with h) [`MOVE`].
    fn member_keys(&self, topic: &Topic, instance: &str) -> [String; 5] {
        [
            self.key(topic, "m"),
            self.key(topic, "i"),
            self.key(topic, "n"),
            self.key(topic, "v"),
            self.key(topic, &format!("x:{instance}")),
        ]
    }

    fn instance_key(&self, what: &str, instance: &str) -> String {
        format!("{}pr:{what}:{instance}", self.engine.shard.prefix())
    }

    fn fail(&self, e: RedisError) -> BrokerError {
        self.engine.fail(e)
    }

    /// Lists `topic` under `instance` (before any entry of it is written there).
    async fn index(
        &self,
        conn: &mut S::Conn,
        (instance, indexed): (&str, &mut HashSet<Topic>),
        topic: &Topic,
    ) -> Result<(), RedisError> {
        if indexed.contains(topic) {
            return Ok(());
        }
        redis::cmd("SADD")
            .arg(self.instance_key("topics", instance))
            .arg(topic.as_str())
            .query_async::<()>(conn)
            .await?;
        indexed.insert(topic.clone());
        Ok(())
    }

    async fn join_on(
        &self,
        conn: &mut S::Conn,
        instance: &str,
        topic: &Topic,
        key: &str,
        info: &str,
        streams: u64,
    ) -> Result<(), RedisError> {
        let mut invocation = self.scripts[S_JOIN].prepare_invoke();
        for k in self.member_keys(topic, instance) {
            invocation.key(k);
        }
        invocation
            .arg(key)
            .arg(info)
            .arg(streams)
            .invoke_async::<i64>(conn)
            .await?;
        Ok(())
    }

    async fn occupy_on(
        &self,
        conn: &mut S::Conn,
        script: usize,
        instance: &str,
        topic: &Topic,
    ) -> Result<bool, RedisError> {
        let edge: i64 = self.scripts[script]
            .key(self.key(topic, "h"))
            .arg(instance)
            .invoke_async(conn)
            .await?;
        Ok(edge == 1)
    }

    /// Runs [`MOVE`] on `topic`: `old`'s share goes, `members` (key, info, streams) are
    /// recorded under `new`, which holds the topic when `occupied`. Returns the edge it made.
    async fn move_share(
        &self,
        conn: &mut S::Conn,
        topic: &Topic,
        (old, new): (&str, &str),
        members: &[(&str, &str, u64)],
        occupied: bool,
    ) -> Result<Option<Occupancy>, RedisError> {
        let mut invocation = self.scripts[S_MOVE].prepare_invoke();
        for k in self.member_keys(topic, old) {
            invocation.key(k);
        }
        invocation
            .key(self.key(topic, "h"))
            .key(self.key(topic, &format!("x:{new}")))
            .arg(old)
            .arg(new)
            .arg(if occupied { "1" } else { "0" });
        for (key, info, streams) in members {
            invocation.arg(*key).arg(*info).arg(*streams);
        }
        let edge: i64 = invocation.invoke_async(conn).await?;
        Ok(match edge {
            1 => Some(Occupancy::Occupied),
            -1 => Some(Occupancy::Vacated),
            _ => None,
        })
    }

    /// The topics listed under `instance`, with `topics`.
    async fn listed(
        &self,
        conn: &mut S::Conn,
        instance: &str,
        mut topics: HashSet<String>,
    ) -> Result<HashSet<String>, RedisError> {
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.instance_key("topics", instance))
            .query_async(conn)
            .await?;
        topics.extend(listed);
        Ok(topics)
    }

    /// Removes `instance`'s list of topics and its lease, once its shares are taken back.
    async fn forget(&self, conn: &mut S::Conn, instance: &str) -> Result<(), RedisError> {
        redis::cmd("DEL")
            .arg(self.instance_key("topics", instance))
            .query_async::<()>(conn)
            .await?;
        self.leases.forget(conn, instance).await
    }

    /// Takes back everything dead `instance` holds and forgets it; returns the topics that
    /// this left vacated.
    async fn reap(&self, conn: &mut S::Conn, instance: &str) -> Result<Vec<Topic>, RedisError> {
        let topics = self.listed(conn, instance, HashSet::new()).await?;
        let mut vacated = Vec::new();
        for topic in topics {
            let Ok(topic) = Topic::new(&topic) else {
                continue;
            };
            let edge = self
                .move_share(conn, &topic, (instance, instance), &[], false)
                .await?;
            if edge == Some(Occupancy::Vacated) {
                vacated.push(topic);
            }
        }
        self.forget(conn, instance).await?;
        Ok(vacated)
    }

    /// Takes a new identity and moves every topic of the old one to it, with what this
    /// instance holds there, one atomic script per topic: a member that stays never leaves and
    /// is never counted twice. The occupancy edges this makes go to `held.edges` (an occupied
    /// topic that was reaped while this instance was cut off is occupied again; a topic it
    /// stopped holding meanwhile may be vacated).
    async fn resync(&self, conn: &mut S::Conn, held: &mut Held) -> Result<(), RedisError> {
        let instance = new_instance();
        // the first time, "moving" from the new identity itself: nothing to take back
        let old = match held.registered {
            true => held.instance.clone(),
            false => instance.clone(),
        };
        let old_topics: HashSet<String> = held.indexed.iter().map(|t| t.to_string()).collect();
        let old_topics = self.listed(conn, &old, old_topics).await?;
        self.leases.register(conn, &instance).await?;
        self.renewal.renew_as(&instance);
        held.instance = instance.clone();
        held.registered = true;
        held.indexed.clear();
        let mut by_topic: HashMap<Topic, Vec<(&str, &str, u64)>> = HashMap::new();
        for ((topic, key), (streams, info)) in &held.members {
            let entry = by_topic.entry(topic.clone()).or_default();
            entry.push((key.as_str(), info.as_str(), *streams));
        }
        for topic in &held.occupied {
            by_topic.entry(topic.clone()).or_default();
        }
        let gone = old_topics.iter().filter_map(|t| Topic::new(t).ok());
        let topics: HashSet<Topic> = by_topic.keys().cloned().chain(gone).collect();
        for topic in topics {
            let members = by_topic.get(&topic).map_or(&[][..], |m| &m[..]);
            let occupied = held.occupied.contains(&topic);
            if !members.is_empty() || occupied {
                self.index(conn, (&instance, &mut held.indexed), &topic)
                    .await?;
            }
            let moved = (old.as_str(), instance.as_str());
            let edge = self
                .move_share(conn, &topic, moved, members, occupied)
                .await?;
            // kept at once: a failure further on must not lose an edge already made
            held.edges.extend(edge.map(|e| (topic, e)));
        }
        held.dirty = false;
        if old != instance {
            self.forget(conn, &old).await?;
        }
        Ok(())
    }

    /// Registers (the first time) or resyncs (after a failure) if needed.
    async fn ready(&self, held: &mut Held) -> Result<(), BrokerError> {
        if held.registered && !held.dirty {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let result = self.resync(&mut conn, held).await;
        result.map_err(|e| {
            held.dirty = true;
            self.fail(e)
        })
    }

    fn conn(&self) -> Result<S::Conn, BrokerError> {
        self.engine.conn()
    }
}

#[async_trait]
impl<S: Shard> PresenceStore for RedisPresence<S> {
    async fn join(&self, topic: &Topic, key: &str, info: &str) -> Result<(), BrokerError> {
        let mut held = self.held.lock().await;
        let entry = held
            .members
            .entry((topic.clone(), key.to_owned()))
            .or_insert((0, String::new()));
        entry.0 += 1;
        if !info.is_empty() {
            entry.1 = info.to_owned();
        }
        if !held.registered || held.dirty {
            // recorded with everything else held
            return self.ready(&mut held).await;
        }
        let result = async {
            let mut conn = self.conn()?;
            let held = &mut *held;
            self.index(&mut conn, (&held.instance, &mut held.indexed), topic)
                .await
                .map_err(|e| self.fail(e))?;
            let instance = held.instance.clone();
            self.join_on(&mut conn, &instance, topic, key, info, 1)
                .await
                .map_err(|e| self.fail(e))
        }
        .await;
        if result.is_err() {
            held.dirty = true;
        }
        result
    }

    async fn leave(&self, topic: &Topic, key: &str) -> Result<(), BrokerError> {
        let mut held = self.held.lock().await;
        let slot = (topic.clone(), key.to_owned());
        match held.members.get_mut(&slot) {
            Some(entry) if entry.0 > 1 => entry.0 -= 1,
            Some(_) => {
                held.members.remove(&slot);
            }
            None => return Ok(()),
        }
        if !held.registered || held.dirty {
            return Ok(());
        }
        let result = async {
            let mut conn = self.conn()?;
            let mut invocation = self.scripts[S_LEAVE].prepare_invoke();
            for k in self.member_keys(topic, &held.instance) {
                invocation.key(k);
            }
            invocation
                .arg(key)
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            held.dirty = true;
        }
        result
    }

    async fn occupy(&self, topic: &Topic) -> Result<bool, BrokerError> {
        let mut held = self.held.lock().await;
        held.occupied.insert(topic.clone());
        if !held.registered || held.dirty {
            self.ready(&mut held).await?;
            let edge = (topic.clone(), Occupancy::Occupied);
            let at = held.edges.iter().position(|e| *e == edge);
            return Ok(at.map(|at| held.edges.remove(at)).is_some());
        }
        let result = async {
            let mut conn = self.conn()?;
            let held = &mut *held;
            self.index(&mut conn, (&held.instance, &mut held.indexed), topic)
                .await
                .map_err(|e| self.fail(e))?;
            let instance = held.instance.clone();
            self.occupy_on(&mut conn, S_OCCUPY, &instance, topic)
                .await
                .map_err(|e| self.fail(e))
        }
        .await;
        if result.is_err() {
            held.dirty = true;
        }
        result
    }

    async fn vacate(&self, topic: &Topic) -> Result<bool, BrokerError> {
        let mut held = self.held.lock().await;
        held.occupied.remove(topic);
        if !held.registered || held.dirty {
            return Ok(false);
        }
        let result = async {
            let mut conn = self.conn()?;
            let instance = held.instance.clone();
            self.occupy_on(&mut conn, S_VACATE, &instance, topic)
                .await
                .map_err(|e| self.fail(e))
        }
        .await;
        if result.is_err() {
            held.dirty = true;
        }
        result
    }

    async fn members(&self, topic: &Topic) -> Result<(u64, Presence), BrokerError> {
        let mut conn = self.conn()?;
        let (version, streams, infos): (String, Vec<(String, i64)>, HashMap<String, String>) = self
            .scripts[S_READ]
            .key(self.key(topic, "m"))
            .key(self.key(topic, "i"))
            .key(self.key(topic, "v"))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let members = streams
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(key, n)| {
                let info = infos.get(&key).and_then(|i| serde_json::from_str(i).ok());
                Member::new(key, n as u64, info)
            })
            .collect();
        Ok((
            version.parse().unwrap_or(0),
            Presence::from_members(members),
        ))
    }

    async fn count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError> {
        let mut conn = self.conn()?;
        let count: u64 = redis::cmd("HLEN")
            .arg(self.key(topic, "m"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let connections: Option<i64> = redis::cmd("GET")
            .arg(self.key(topic, "n"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(PresenceCount::new(
            count,
            connections.unwrap_or(0).max(0) as u64,
        ))
    }

    async fn versions(&self, topics: &[Topic]) -> Result<Vec<u64>, BrokerError> {
        let mut conn = self.conn()?;
        // One MGET per partition: on a cluster the keys of one partition share a slot.
        let shard = &self.engine.shard;
        let mut by: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, t) in topics.iter().enumerate() {
            by.entry(shard.partition_of(t)).or_default().push(i);
        }
        let mut out = vec![0; topics.len()];
        for indexes in by.values() {
            let mut cmd = redis::cmd("MGET");
            for &i in indexes {
                cmd.arg(self.key(&topics[i], "v"));
            }
            let values: Vec<Option<u64>> =
                cmd.query_async(&mut conn).await.map_err(|e| self.fail(e))?;
            for (&i, v) in indexes.iter().zip(values) {
                out[i] = v.unwrap_or(0);
            }
        }
        Ok(out)
    }

    fn maintain_every(&self) -> Duration {
        RENEW_EVERY
    }

    async fn maintain(&self) -> Result<Vec<(Topic, Occupancy)>, BrokerError> {
        self.renewal.start();
        // What the renewal thread found since the last maintenance.
        let (last, expired) = self.renewal.take();
        let mut edges = Vec::new();
        let lost = last.filter(|(_, renewed)| !renewed).map(|(me, _)| me);
        let held = match lost {
            // lost (or never had) a lease: wait for `held`, this instance resyncs
            Some(_) => Some(self.held.lock().await),
            // renewed: whatever else `held` needs (a resync after a failed write, edges to
            // report) waits for the next tick if a join holds it now
            None => self.held.try_lock().ok(),
        };
        if let Some(mut held) = held {
            if held.registered && lost.as_ref() == Some(&held.instance) {
                held.dirty = true;
                tracing::warn!("presence lease lost: recording this instance's members again");
            }
            self.ready(&mut held).await?;
            edges.append(&mut held.edges);
        }
        if expired.is_empty() {
            return Ok(edges);
        }
        let mut conn = self.conn()?;
        for instance in expired {
            tracing::info!(
                instance,
                "an instance's presence lease ran out: removing its members"
            );
            let gone = self
                .reap(&mut conn, &instance)
                .await
                .map_err(|e| self.fail(e))?;
            edges.extend(gone.into_iter().map(|t| (t, Occupancy::Vacated)));
        }
        Ok(edges)
    }
}

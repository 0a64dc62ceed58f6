//! Presence on NATS: members and occupancy per topic, shared by every instance through the KV
//! bucket `<stream>_presence`, with a lease per instance so that a dead one's members leave
//! within seconds. The same semantics as the Redis store (`broker/redis/presence.rs`); KV has
//! no scripts, so each step is a compare-and-set write of one entry.
//!
//! Keys (topics, members as [`kv_key`] writes them; instances are `[0-9a-f-]`):
//! - `t.<topic>`: the topic's summary `{v, c, n, h}`: its version (bumped when a member appears
//!   or disappears; the entry is never deleted, so a version never comes back), its members and
//!   streams (`count` is one get), and the instances holding subscribers (occupancy);
//! - `m.<topic>.<member>`: the member `{k, i, x}`: its key, info, and streams per instance.
//!   Deleted (with its marker) when no instance has a stream left. `members` scans these;
//! - `p.<instance>.<topic>`: the topics an instance has entries on (written before them);
//! - `l.<instance>`: the instance's lease, rewritten every maintenance;
//! - `instances`: the instances (a JSON list).
//!
//! A join writes the member's entry, then (the number of its streams changed) the summary; a
//! leave the same. Each is a compare-and-set on one entry, so instances racing on one member or
//! one topic retry, never overwrite. Occupancy is one compare-and-set of the summary's holder
//! set: the write that empties or fills it makes the edge, on one instance.
//!
//! Leases are judged by the server's clock, never by comparing instances' clocks: each
//! maintenance rewrites the instance's lease (compare-and-set on its own last revision) and reads
//! it back; the server-assigned time of that write is "now", and another instance whose lease
//! was written more than [`lease`] before it is dead. Each instance checks the next one in the
//! instance list, and the one after only while they are dead, so the checks cost O(instances). The instance that claims a dead one (a
//! compare-and-set delete of its lease at the revision it judged) reaps it topic by topic:
//! occupancy first, then every member share of the dead instance (a scan of the topic's
//! members). An instance whose own renewal failed (reaped meanwhile) or came more than a lease
//! after its previous one takes a new identity, records all it holds under it, then reaps the
//! old one, so members that stay never flicker.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, Entry};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::bucket::{self, kv_key, Bucket, Decision};
use super::Shared;
use crate::broker::{
    BrokerError, Cause, Member, Occupancy, Presence, PresenceCount, PresenceStore, MAINTAIN_EVERY,
};
use crate::topic::Topic;

/// How often a compare-and-set write is tried again when another instance wrote first.
const ATTEMPTS: usize = 64;

/// The key of the instance list.
const INSTANCES: &str = "instances";

/// How long an instance stays alive for the others without renewing its lease (four
/// maintenances): a killed instance is reaped within this plus one maintenance.
pub(super) fn lease() -> Duration {
    MAINTAIN_EVERY * 4
}

/// `t.<topic>`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Summary {
    v: u64,
    c: u64,
    n: u64,
    #[serde(default)]
    h: BTreeSet<String>,
}

/// `m.<topic>.<member>`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shares {
    k: String,
    #[serde(default)]
    i: String,
    x: BTreeMap<String, u64>,
}

fn summary_key(topic: &Topic) -> String {
    format!("t.{}", kv_key(topic.as_str()))
}

fn members_prefix(topic: &Topic) -> String {
    format!("m.{}.", kv_key(topic.as_str()))
}

fn member_key(topic: &Topic, member: &str) -> String {
    format!("{}{}", members_prefix(topic), kv_key(member))
}

fn index_key(instance: &str, topic: &Topic) -> String {
    format!("p.{instance}.{}", kv_key(topic.as_str()))
}

fn lease_key(instance: &str) -> String {
    format!("l.{instance}")
}

/// When the server stored `entry`, in Unix milliseconds.
fn stored_ms(entry: &Entry) -> i128 {
    entry.created.unix_timestamp_nanos() / 1_000_000
}

fn new_instance() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// What this instance holds, and under which identity.
struct Held {
    instance: String,
    /// Whether the lease and the instance list entry are written.
    registered: bool,
    /// A write failed half way, or the lease lapsed: at the next maintenance, take a new
    /// identity and record everything held again.
    dirty: bool,
    /// The revision and server time (Unix ms) of this instance's last lease write.
    lease: (u64, i128),
    /// Topics with a `p.<instance>.<topic>` entry.
    indexed: HashSet<Topic>,
    /// (topic, member) → (streams, info).
    members: HashMap<(Topic, String), (u64, String)>,
    /// Topics this instance holds subscribers of (occupancy).
    occupied: HashSet<Topic>,
    /// Occupancy edges a resync made, for the next maintenance to report.
    edges: Vec<(Topic, Occupancy)>,
}

/// The bucket and the JetStream context its deletes go through.
struct Kv {
    js: Context,
    store: kv::Store,
}

/// The presence store of the NATS broker.
pub(super) struct NatsPresence {
    shared: Arc<Shared>,
    bucket: Bucket,
    held: tokio::sync::Mutex<Held>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(Cause::new(format!("NATS presence ({what}): {e}")))
}

impl NatsPresence {
    pub(super) fn new(
        shared: Arc<Shared>,
        stream: &str,
        storage: StorageType,
        replicas: usize,
    ) -> Self {
        let name = format!("{stream}_presence");
        let description = "livepush presence: members, occupancy and leases per instance";
        NatsPresence {
            shared,
            bucket: Bucket::new(name, description, storage, replicas),
            held: tokio::sync::Mutex::new(Held {
                instance: new_instance(),
                registered: false,
                dirty: false,
                lease: (0, 0),
                indexed: HashSet::new(),
                members: HashMap::new(),
                occupied: HashSet::new(),
                edges: Vec::new(),
            }),
        }
    }

    /// The bucket, while NATS is up.
    async fn store(&self) -> Result<Kv, BrokerError> {
        let (_, js, _) = self.shared.jetstream()?;
        let store = self
            .bucket
            .store(js)
            .await
            .map_err(|e| failed("bucket", e))?;
        Ok(Kv {
            js: js.clone(),
            store,
        })
    }

    /// `Err` after forgetting the bucket (found again on next use).
    async fn fail(&self, what: &str, e: String) -> BrokerError {
        self.bucket.forget().await;
        failed(what, e)
    }

    /// Runs `step` on the bucket for this instance's own records; a failure marks them dirty
    /// (the next maintenance records everything again under a new identity).
    async fn own<T>(
        &self,
        held: &mut Held,
        what: &str,
        step: impl AsyncFnOnce(&Kv, &mut Held) -> Result<T, String>,
    ) -> Result<T, BrokerError> {
        let store = self.store().await.inspect_err(|_| held.dirty = true)?;
        match step(&store, held).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                held.dirty = true;
                Err(self.fail(what, e).await)
            }
        }
    }

    /// Registers (the first time) or resyncs (after a failure) if needed.
    async fn ready(&self, held: &mut Held) -> Result<(), BrokerError> {
        if held.registered && !held.dirty {
            return Ok(());
        }
        self.own(held, "resync", async |store, held| {
            resync(store, held).await
        })
        .await
    }
}

/// Lists `topic` under `held`'s instance (before any entry of it is written there).
async fn index(store: &Kv, held: &mut Held, topic: &Topic) -> Result<(), String> {
    if held.indexed.contains(topic) {
        return Ok(());
    }
    let key = index_key(&held.instance, topic);
    store
        .store
        .put(key, topic.as_str().to_owned().into())
        .await
        .map_err(|e| e.to_string())?;
    held.indexed.insert(topic.clone());
    Ok(())
}

/// Adds `streams` of `instance` to member `key` of `topic`, then the summary.
async fn add_share(
    store: &Kv,
    instance: &str,
    topic: &Topic,
    key: &str,
    info: &str,
    streams: u64,
) -> Result<(), String> {
    let appeared = bucket::update(
        &store.js,
        &store.store,
        &member_key(topic, key),
        ATTEMPTS,
        |s| {
            let mut shares: Shares = s.unwrap_or_default();
            let before: u64 = shares.x.values().sum();
            shares.k = key.to_owned();
            *shares.x.entry(instance.to_owned()).or_default() += streams;
            if !info.is_empty() {
                shares.i = info.to_owned();
            }
            Decision::Write(shares, before == 0)
        },
    )
    .await?;
    adjust(store, topic, streams as i64, appeared as i64).await
}

/// Takes `streams` (all with `None`) of `instance`'s streams of member `key` back; deletes the
/// member when none is left. Answers (streams taken, whether the member disappeared).
async fn take_share(
    store: &Kv,
    instance: &str,
    topic: &Topic,
    key: &str,
    streams: Option<u64>,
) -> Result<(u64, bool), String> {
    bucket::update(
        &store.js,
        &store.store,
        key,
        ATTEMPTS,
        |s: Option<Shares>| {
            let Some(mut shares) = s else {
                return Decision::Keep((0, false));
            };
            let Some(mine) = shares.x.get_mut(instance) else {
                return Decision::Keep((0, false));
            };
            let taken = streams.unwrap_or(*mine).min(*mine);
            *mine -= taken;
            if *mine == 0 {
                shares.x.remove(instance);
            }
            match shares.x.values().sum::<u64>() {
                0 => Decision::Delete((taken, true)),
                _ => Decision::Write(shares, (taken, false)),
            }
        },
    )
    .await
    .map_err(|e| format!("{e} (member of {topic})"))
}

/// Adds `streams` and `members` (negative: takes) to the summary of `topic`; a member count that
/// changed bumps the version.
async fn adjust(store: &Kv, topic: &Topic, streams: i64, members: i64) -> Result<(), String> {
    if streams == 0 && members == 0 {
        return Ok(());
    }
    bucket::update(
        &store.js,
        &store.store,
        &summary_key(topic),
        ATTEMPTS,
        |s| {
            let mut summary: Summary = s.unwrap_or_default();
            summary.n = summary.n.saturating_add_signed(streams);
            summary.c = summary.c.saturating_add_signed(members);
            if members != 0 {
                summary.v += 1;
            }
            Decision::Write(summary, ())
        },
    )
    .await
}

/// Adds `instance` to (or removes it from) the holders of `topic`; `true` when that filled
/// (emptied) the set: the edge of the topic's occupancy.
async fn hold(store: &Kv, instance: &str, topic: &Topic, holds: bool) -> Result<bool, String> {
    bucket::update(
        &store.js,
        &store.store,
        &summary_key(topic),
        ATTEMPTS,
        |s| {
            let mut summary: Summary = s.unwrap_or_default();
            let changed = match holds {
                true => summary.h.insert(instance.to_owned()),
                false => summary.h.remove(instance),
            };
            if !changed {
                return Decision::Keep(false);
            }
            let edge = summary.h.len() == holds as usize;
            Decision::Write(summary, edge)
        },
    )
    .await
}

/// Adds `instance` to (or removes it from) the instance list.
async fn list(store: &Kv, instance: &str, listed: bool) -> Result<(), String> {
    bucket::update(&store.js, &store.store, INSTANCES, ATTEMPTS, |s| {
        let mut instances: BTreeSet<String> = s.unwrap_or_default();
        let changed = match listed {
            true => instances.insert(instance.to_owned()),
            false => instances.remove(instance),
        };
        match changed {
            true => Decision::Write(instances, ()),
            false => Decision::Keep(()),
        }
    })
    .await
}

/// Writes this instance's lease: created with a new identity (`None`), or renewed at the
/// revision of its last write. Answers the new (revision, server time), or `None` when the lease
/// is not the one last written (another instance reaped this one).
async fn write_lease(store: &Kv, held: &Held, renew: bool) -> Result<Option<(u64, i128)>, String> {
    let key = lease_key(&held.instance);
    let written = match renew {
        true => store
            .store
            .update(&key, "1".into(), held.lease.0)
            .await
            .map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            }),
        false => store
            .store
            .create(&key, "1".into())
            .await
            .map_err(|e| (false, e.to_string())),
    };
    let revision = match written {
        Ok(revision) => revision,
        Err((true, _)) => return Ok(None),
        Err((false, e)) => return Err(e),
    };
    let entry = store.store.entry(&key).await.map_err(|e| e.to_string())?;
    Ok(entry
        .filter(|e| e.revision == revision)
        .map(|e| (revision, stored_ms(&e))))
}

/// Takes a new identity and records everything held under it, then reaps the old one; the
/// occupancy edges this makes go to `held.edges`.
async fn resync(store: &Kv, held: &mut Held) -> Result<(), String> {
    let old = held.registered.then(|| held.instance.clone());
    held.instance = new_instance();
    held.registered = false;
    held.dirty = true;
    held.indexed.clear();
    held.lease = write_lease(store, held, false)
        .await?
        .ok_or("a new lease key already exists")?;
    list(store, &held.instance, true).await?;
    held.registered = true;
    let topics: HashSet<Topic> = held
        .members
        .keys()
        .map(|(t, _)| t.clone())
        .chain(held.occupied.iter().cloned())
        .collect();
    for topic in &topics {
        index(store, held, topic).await?;
    }
    for ((topic, key), (streams, info)) in &held.members {
        add_share(store, &held.instance, topic, key, info, *streams).await?;
    }
    for topic in &held.occupied {
        if hold(store, &held.instance, topic, true).await? {
            held.edges.push((topic.clone(), Occupancy::Occupied));
        }
    }
    held.dirty = false;
    if let Some(old) = old {
        let judged = store
            .store
            .entry(lease_key(&old))
            .await
            .map_err(|e| e.to_string())?;
        let vacated = reap(store, &old, judged.as_ref()).await?;
        held.edges
            .extend(vacated.into_iter().map(|t| (t, Occupancy::Vacated)));
    }
    Ok(())
}

/// Claims dead `instance` (deletes its lease if it is still `judged`) and takes back everything
/// it holds, topic by topic; then forgets it. Answers the topics this left vacated (none when
/// another instance claimed it first, or it renewed since it was judged).
async fn reap(store: &Kv, instance: &str, judged: Option<&Entry>) -> Result<Vec<Topic>, String> {
    match bucket::remove(&store.js, &store.store, &lease_key(instance), judged).await {
        Ok(_) => {}
        Err((true, _)) => return Ok(Vec::new()),
        Err((false, e)) => return Err(e),
    }
    let mut vacated = Vec::new();
    for (key, topic) in bucket::scan(&store.store, &format!("p.{instance}.")).await? {
        let Some(topic) = String::from_utf8(topic)
            .ok()
            .and_then(|t| Topic::new(&t).ok())
        else {
            continue;
        };
        if hold(store, instance, &topic, false).await? {
            vacated.push(topic.clone());
        }
        let (mut streams, mut members) = (0, 0);
        for (member, _) in bucket::scan(&store.store, &members_prefix(&topic)).await? {
            let (taken, gone) = take_share(store, instance, &topic, &member, None).await?;
            streams += taken as i64;
            members += gone as i64;
        }
        adjust(store, &topic, -streams, -members).await?;
        let entry = store.store.entry(&key).await.map_err(|e| e.to_string())?;
        bucket::remove(&store.js, &store.store, &key, entry.as_ref())
            .await
            .map_err(|(_, e)| e)?;
    }
    list(store, instance, false).await?;
    Ok(vacated)
}

/// This instance's lease renewed (or, lapsed, a new identity taken); answers the server time of
/// the renewal and this instance's identity.
async fn renew(store: &Kv, held: &mut Held) -> Result<(i128, String), String> {
    let previous = held.lease.1;
    let renewed = match held.registered && !held.dirty {
        true => write_lease(store, held, true).await?,
        false => None,
    };
    match renewed {
        // a renewal later than a lease after the previous one: others may be reaping this
        // identity already
        Some(renewal) if renewal.1 - previous <= lease().as_millis() as i128 => {
            held.lease = renewal
        }
        _ => {
            if held.registered {
                tracing::warn!("presence lease lapsed or a presence write failed: recording this instance's members again");
            }
            resync(store, held).await?;
        }
    }
    Ok((held.lease.1, held.instance.clone()))
}

/// The other instances listed, in order from the one after `me`, wrapping round: `me` watches
/// the first, and the next ones only while they are dead, so that every listed instance is watched
/// by one other (its live predecessor) and the lease checks cost about one read per instance,
/// not one per pair.
fn successors<'a>(
    instances: &'a BTreeSet<String>,
    me: &'a str,
) -> impl Iterator<Item = &'a String> {
    let after = (std::ops::Bound::Excluded(me), std::ops::Bound::Unbounded);
    let before = (std::ops::Bound::Unbounded, std::ops::Bound::Excluded(me));
    instances
        .range::<str, _>(after)
        .chain(instances.range::<str, _>(before))
}

/// Reaps the instances after this one in the list ([`successors`]) whose lease was written more
/// than a lease before `now`, up to the first live one: a dead instance is reaped by its live
/// predecessor, a run of dead ones (a crashed deployment restarted) in one maintenance.
async fn reap_dead(store: &Kv, me: &str, now: i128) -> Result<Vec<Topic>, String> {
    let listed = store
        .store
        .get(INSTANCES)
        .await
        .map_err(|e| e.to_string())?;
    let instances: BTreeSet<String> = listed
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    let mut vacated = Vec::new();
    for instance in successors(&instances, me) {
        let entry = store
            .store
            .entry(lease_key(instance))
            .await
            .map_err(|e| e.to_string())?;
        let alive = entry.as_ref().is_some_and(|e| {
            e.operation == kv::Operation::Put && now - stored_ms(e) <= lease().as_millis() as i128
        });
        if alive {
            break;
        }
        tracing::info!(
            instance,
            "an instance's presence lease ran out: removing its members"
        );
        vacated.extend(reap(store, instance, entry.as_ref()).await?);
    }
    Ok(vacated)
}

#[async_trait]
impl PresenceStore for NatsPresence {
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
        self.own(&mut held, "join", async |store, held| {
            index(store, held, topic).await?;
            add_share(store, &held.instance, topic, key, info, 1).await
        })
        .await
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
        self.own(&mut held, "leave", async |store, held| {
            let member = member_key(topic, key);
            let (taken, gone) = take_share(store, &held.instance, topic, &member, Some(1)).await?;
            adjust(store, topic, -(taken as i64), -(gone as i64)).await
        })
        .await
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
        self.own(&mut held, "occupy", async |store, held| {
            index(store, held, topic).await?;
            hold(store, &held.instance, topic, true).await
        })
        .await
    }

    async fn vacate(&self, topic: &Topic) -> Result<bool, BrokerError> {
        let mut held = self.held.lock().await;
        held.occupied.remove(topic);
        if !held.registered || held.dirty {
            return Ok(false);
        }
        self.own(&mut held, "vacate", async |store, held| {
            hold(store, &held.instance, topic, false).await
        })
        .await
    }

    async fn members(&self, topic: &Topic) -> Result<(u64, Presence), BrokerError> {
        let store = self.store().await?;
        // the version first: a change during the scan moves it past this, and is read again
        let version = match self.summary(&store, topic).await {
            Ok(summary) => summary.v,
            Err(e) => return Err(self.fail("read", e).await),
        };
        let entries = match bucket::scan(&store.store, &members_prefix(topic)).await {
            Ok(entries) => entries,
            Err(e) => return Err(self.fail("scan", e).await),
        };
        let members = entries
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice::<Shares>(&value).ok())
            .filter_map(|shares| {
                let streams: u64 = shares.x.values().sum();
                let info = serde_json::from_str(&shares.i).ok();
                (streams > 0).then(|| Member::new(shares.k, streams, info))
            })
            .collect();
        Ok((version, Presence::from_members(members)))
    }

    async fn count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError> {
        let store = self.store().await?;
        match self.summary(&store, topic).await {
            Ok(summary) => Ok(PresenceCount::new(summary.c, summary.n)),
            Err(e) => Err(self.fail("read", e).await),
        }
    }

    async fn versions(&self, topics: &[Topic]) -> Result<Vec<u64>, BrokerError> {
        let store = self.store().await?;
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.summary(&store, topic).await {
                Ok(summary) => out.push(summary.v),
                Err(e) => return Err(self.fail("read", e).await),
            }
        }
        Ok(out)
    }

    async fn maintain(&self) -> Result<Vec<(Topic, Occupancy)>, BrokerError> {
        let (mut edges, now, me) = {
            let mut held = self.held.lock().await;
            let (now, me) = self
                .own(&mut held, "lease", async |store, held| {
                    renew(store, held).await
                })
                .await?;
            (std::mem::take(&mut held.edges), now, me)
        };
        let store = self.store().await?;
        match reap_dead(&store, &me, now).await {
            Ok(vacated) => edges.extend(vacated.into_iter().map(|t| (t, Occupancy::Vacated))),
            Err(e) => return Err(self.fail("reap", e).await),
        }
        Ok(edges)
    }
}

impl NatsPresence {
    /// The summary of `topic` (empty when it has none).
    async fn summary(&self, store: &Kv, topic: &Topic) -> Result<Summary, String> {
        let value = store
            .store
            .get(summary_key(topic))
            .await
            .map_err(|e| e.to_string())?;
        Ok(value
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_outlives_several_maintenances() {
        assert!(super::lease() >= crate::broker::MAINTAIN_EVERY * 3);
    }

    #[test]
    fn each_instance_watches_the_next_one_round_the_list() {
        let listed: std::collections::BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let next = |me| super::successor(&listed, me).map(String::as_str);
        assert_eq!(
            [next("a"), next("b"), next("c")],
            [Some("b"), Some("c"), Some("a")]
        );
        // an instance not (or no longer) listed watches the one after its place
        assert_eq!(next("bb"), Some("c"));
        let alone: std::collections::BTreeSet<String> = ["a".to_owned()].into();
        assert_eq!(super::successor(&alone, "a"), None);
    }

    #[test]
    fn keys_of_two_topics_or_members_never_overlap() {
        use crate::topic::Topic;
        let a = Topic::new("room:a.b").unwrap();
        assert_eq!(super::member_key(&a, "x.y"), "m.kroom=3Aa=2Eb.kx=2Ey");
        assert!(super::index_key("1-2-3", &a).starts_with("p.1-2-3."));
    }
}

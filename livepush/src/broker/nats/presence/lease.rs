//! Who this instance is and what it holds; its lease, judged by the server's timestamps; the
//! reaping of dead instances and the resync under a new identity.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, Entry};

use super::super::bucket;
use super::entries::{
    add_share, adjust, hold, index_key, lease_key, list, members_prefix, take_share, Kv, INSTANCES,
};
use crate::broker::{Occupancy, MAINTAIN_EVERY};
use crate::topic::Topic;

/// How long an instance stays alive for the others without renewing its lease (four
/// maintenances): a killed instance is reaped within this plus one maintenance.
pub(super) fn lease() -> Duration {
    MAINTAIN_EVERY * 4
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
pub(super) struct Held {
    pub(super) instance: String,
    /// Whether the lease and the instance list entry are written.
    pub(super) registered: bool,
    /// A write failed half way, or the lease lapsed: at the next maintenance, take a new
    /// identity and record everything held again.
    pub(super) dirty: bool,
    /// The revision and server time (Unix ms) of this instance's last lease write.
    pub(super) lease: (u64, i128),
    /// Topics with a `p.<instance>.<topic>` entry.
    pub(super) indexed: HashSet<Topic>,
    /// (topic, member) → (streams, info).
    pub(super) members: HashMap<(Topic, String), (u64, String)>,
    /// Topics this instance holds subscribers of (occupancy).
    pub(super) occupied: HashSet<Topic>,
    /// Occupancy edges a resync made, for the next maintenance to report.
    pub(super) edges: Vec<(Topic, Occupancy)>,
}

impl Held {
    /// Nothing held yet, under a fresh identity not registered yet.
    pub(super) fn new() -> Self {
        Held {
            instance: new_instance(),
            registered: false,
            dirty: false,
            lease: (0, 0),
            indexed: HashSet::new(),
            members: HashMap::new(),
            occupied: HashSet::new(),
            edges: Vec::new(),
        }
    }
}

/// Lists `topic` under `held`'s instance (before any entry of it is written there).
pub(super) async fn index(store: &Kv, held: &mut Held, topic: &Topic) -> Result<(), String> {
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
pub(super) async fn resync(store: &Kv, held: &mut Held) -> Result<(), String> {
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
pub(super) async fn renew(store: &Kv, held: &mut Held) -> Result<(i128, String), String> {
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
pub(super) fn successors<'a>(
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
pub(super) async fn reap_dead(store: &Kv, me: &str, now: i128) -> Result<Vec<Topic>, String> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_outlives_several_maintenances() {
        assert!(super::lease() >= crate::broker::MAINTAIN_EVERY * 3);
    }

    #[test]
    fn each_instance_watches_the_next_ones_round_the_list() {
        let listed: std::collections::BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let order = |me| super::successors(&listed, me).cloned().collect::<Vec<_>>();
        assert_eq!(order("a"), ["b", "c"]);
        assert_eq!(order("b"), ["c", "a"]);
        assert_eq!(order("c"), ["a", "b"]);
        // an instance not (or no longer) listed starts after its place
        assert_eq!(order("bb"), ["c", "a", "b"]);
        let alone: std::collections::BTreeSet<String> = ["a".to_owned()].into();
        assert_eq!(super::successors(&alone, "a").count(), 0);
    }
}

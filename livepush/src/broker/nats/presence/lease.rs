//! Who this instance is and what it holds; its lease, judged by the server's timestamps; the
//! reaping of dead instances and the resync under a new identity.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, Entry};

use super::super::bucket;
use super::entries::{add_share, hold, index_key, lease_key, list, reclaim, Kv, INSTANCES};
use crate::broker::Occupancy;
use crate::topic::Topic;

/// How long an instance stays alive for the others without renewing its lease (five renewals,
/// in the server's time): a killed instance is reaped within this plus one [`RENEW_EVERY`], so
/// that its rooms are vacated within a second. A pause longer than `LEASE - RENEW_EVERY`
/// (600 ms) costs a paused instance its identity (it records its members again).
pub(super) const LEASE: Duration = Duration::from_millis(750);

/// How often an instance renews its lease and looks for dead ones
/// ([`PresenceStore::maintain_every`](crate::broker::PresenceStore::maintain_every)).
pub(super) const RENEW_EVERY: Duration = Duration::from_millis(150);

/// An instance's lease as last written: identity, revision and the server's time of the write
/// (Unix ms). Kept beside [`Held`] so that renewals never wait for a join or leave.
#[derive(Clone, Debug, Default)]
pub(super) struct Lease {
    pub(super) instance: String,
    pub(super) revision: u64,
    pub(super) at: i128,
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
    /// The lease written when this identity was taken.
    pub(super) lease: Lease,
    /// The number of this instance's last presence operation ([`super::entries::Op`]).
    pub(super) ops: u64,
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
            lease: Lease::default(),
            ops: 0,
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

impl Held {
    /// The next operation number of this instance.
    pub(super) fn op(&mut self) -> (&str, u64) {
        self.ops += 1;
        (&self.instance, self.ops)
    }
}

/// Writes `instance`'s lease: created with a new identity (`renew` 0), or renewed at revision
/// `renew` of its last write. Answers the lease written, or `None` when the lease is not the
/// one last written (another instance reaped this one).
async fn write_lease(store: &Kv, instance: &str, renew: u64) -> Result<Option<Lease>, String> {
    let key = lease_key(instance);
    let written = match renew > 0 {
        true => store
            .store
            .update(&key, "1".into(), renew)
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
    Ok(entry.filter(|e| e.revision == revision).map(|e| Lease {
        instance: instance.to_owned(),
        revision,
        at: stored_ms(&e),
    }))
}

/// The lease that renewals renew (the current identity's), shared by the maintenance and a
/// resync.
pub(super) type Leased = std::sync::Mutex<Lease>;

/// The lease in `leased`.
pub(super) fn current(leased: &Leased) -> Lease {
    leased.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Renews the lease in `leased` when a renewal's time went by since `last`: a long resync
/// calls it between writes, so that it never costs the identity it is recording under.
async fn keep_alive(store: &Kv, leased: &Leased, last: &mut Instant) -> Result<(), String> {
    if last.elapsed() < RENEW_EVERY {
        return Ok(());
    }
    *last = Instant::now();
    let lease = current(leased);
    if let Some(renewed) = renew(store, &lease).await? {
        *leased.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
    }
    Ok(())
}

/// Takes a new identity and records everything held under it, then reaps the old one; the
/// occupancy edges this makes go to `held.edges`; the new lease goes to `leased` as soon as it
/// is written.
pub(super) async fn resync(store: &Kv, held: &mut Held, leased: &Leased) -> Result<(), String> {
    let old = held.registered.then(|| held.instance.clone());
    held.instance = new_instance();
    held.registered = false;
    held.dirty = true;
    // the topics the old identity wrote on, all its writes done (they run under `held`)
    let wrote = std::mem::take(&mut held.indexed);
    held.lease = write_lease(store, &held.instance, 0)
        .await?
        .ok_or("a new lease key already exists")?;
    *leased.lock().unwrap_or_else(|p| p.into_inner()) = held.lease.clone();
    let mut renewed = Instant::now();
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
    let members: Vec<_> = held
        .members
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((topic, key), (streams, info)) in &members {
        keep_alive(store, leased, &mut renewed).await?;
        add_share(store, held.op(), topic, key, info, *streams).await?;
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
        let vacated = reap(
            store,
            &old,
            &held.instance,
            held.lease.at,
            judged.as_ref(),
            Some(&wrote),
        )
        .await?;
        held.edges
            .extend(vacated.into_iter().map(|t| (t, Occupancy::Vacated)));
    }
    Ok(())
}

/// Claims dead `instance` (deletes its lease if it is still `judged`) and takes back everything
/// it holds, topic by topic ([`reclaim`]); then forgets it. Answers the topics this left vacated
/// (none when another instance claimed it first, or it renewed since it was judged). `own`: the
/// topics a resync's old identity wrote on, reclaimed even when another instance reaped it
/// already: a join in flight when that one reaped it may have written after its scan. `now`:
/// the server's time of the reaper's lease.
async fn reap(
    store: &Kv,
    instance: &str,
    reaper: &str,
    now: i128,
    judged: Option<&Entry>,
    own: Option<&HashSet<Topic>>,
) -> Result<Vec<Topic>, String> {
    match bucket::remove(&store.js, &store.store, &lease_key(instance), judged).await {
        Ok(_) => {}
        // claimed by another: it reaps, unless these are this instance's own old records
        Err((true, _)) if own.is_none() => return Ok(Vec::new()),
        Err((true, _)) => {}
        Err((false, e)) => return Err(e),
    }
    let mut topics: BTreeSet<Topic> = own.into_iter().flatten().cloned().collect();
    for (_, topic) in bucket::scan(&store.store, &format!("p.{instance}.")).await? {
        topics.extend(
            String::from_utf8(topic)
                .ok()
                .and_then(|t| Topic::new(&t).ok()),
        );
    }
    let mut vacated = Vec::new();
    for topic in topics {
        if hold(store, instance, &topic, false).await? {
            vacated.push(topic.clone());
        }
        reclaim(store, instance, reaper, &topic, now).await?;
        let key = index_key(instance, &topic);
        let entry = store.store.entry(&key).await.map_err(|e| e.to_string())?;
        bucket::remove(&store.js, &store.store, &key, entry.as_ref())
            .await
            .map_err(|(_, e)| e)?;
    }
    list(store, instance, false).await?;
    Ok(vacated)
}

/// Renews `lease` at the server: answers the lease written, or `None` when it lapsed (another
/// instance may be reaping it: written more than a [`LEASE`] after the previous renewal, or
/// reaped already).
pub(super) async fn renew(store: &Kv, lease: &Lease) -> Result<Option<Lease>, String> {
    if lease.revision == 0 {
        return Ok(None);
    }
    let renewed = write_lease(store, &lease.instance, lease.revision).await?;
    Ok(renewed.filter(|renewal| renewal.at - lease.at <= LEASE.as_millis() as i128))
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
            e.operation == kv::Operation::Put && now - stored_ms(e) <= LEASE.as_millis() as i128
        });
        if alive {
            break;
        }
        tracing::info!(
            instance,
            "an instance's presence lease ran out: removing its members"
        );
        vacated.extend(reap(store, instance, me, now, entry.as_ref(), None).await?);
    }
    Ok(vacated)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_outlives_several_renewals() {
        assert!(super::LEASE >= super::RENEW_EVERY * 4);
    }

    #[test]
    fn a_dead_instance_is_found_within_a_second() {
        // the bound on a vacated hook after a kill, with room left for the reap
        let found = super::LEASE + super::RENEW_EVERY;
        assert!(found <= std::time::Duration::from_millis(900));
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

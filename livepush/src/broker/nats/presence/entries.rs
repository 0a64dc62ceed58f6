//! The KV entries of presence and the compare-and-set steps on them: a member's streams per
//! instance, a topic's summary (version, totals, occupancy holders), the instance list.
//!
//! A join or leave is two writes, the member's entry and then the topic's summary, fenced so
//! that a kill between them never leaves the summary off: each instance numbers its presence
//! operations ([`Op`]); the member's entry records the operation pending (`p`, per instance)
//! with the write that makes it, and the summary records per instance the number of the last
//! operation it applied (`a`). Applying is idempotent (a number at or below the mark is
//! skipped), and the reaper of a dead instance applies the one operation the dead instance may
//! have left half done (its number above the mark) before it takes the instance's shares back
//! ([`reclaim`]: its own steps fenced the same way, so that a reaper killed half way leaves
//! them to the next one). A leave that empties a member leaves a tombstone (no streams,
//! the pending operation) until the summary has applied it, then deletes it.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream::kv;
use async_nats::jetstream::Context;
use serde::{Deserialize, Serialize};

use super::super::bucket::{self, kv_key, Decision};
use crate::topic::Topic;

/// How often a compare-and-set write is tried again when another instance wrote first.
const ATTEMPTS: usize = 64;

/// The key of the instance list.
pub(super) const INSTANCES: &str = "instances";

/// `t.<topic>`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Summary {
    pub(super) v: u64,
    pub(super) c: u64,
    pub(super) n: u64,
    #[serde(default)]
    pub(super) h: BTreeSet<String>,
    /// Instance → the number of the last of its operations applied here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) a: BTreeMap<String, u64>,
    /// Owners reaped (a dead instance and its reapers) → when (server ms): their marks stay in
    /// `a` for [`KEEP_MARKS`] after, so that a reaper still at work (one that read an
    /// operation as pending before another reaper applied it) never applies it twice.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) g: BTreeMap<String, i128>,
}

/// How long the marks of a reaped instance stay in a summary: far longer than any reap or
/// presence write in flight takes (each request times out within seconds).
const KEEP_MARKS_MS: i128 = 60_000;

/// `m.<topic>.<member>`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Shares {
    pub(super) k: String,
    #[serde(default)]
    pub(super) i: String,
    pub(super) x: BTreeMap<String, u64>,
    /// Instance → its last operation on this member (pending until the summary's mark reaches it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) p: BTreeMap<String, Op>,
}

/// One presence operation of an instance on a topic's summary: its number (per instance,
/// increasing), and what it adds to the streams and the members.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Op(pub(super) u64, pub(super) i64, pub(super) i64);

/// Whether every operation pending in `shares` is applied by the marks `applied`.
fn settled(shares: &Shares, applied: &BTreeMap<String, u64>) -> bool {
    shares
        .p
        .iter()
        .all(|(i, op)| applied.get(i).is_some_and(|mark| *mark >= op.0))
}

pub(super) fn summary_key(topic: &Topic) -> String {
    format!("t.{}", kv_key(topic.as_str()))
}

pub(super) fn members_prefix(topic: &Topic) -> String {
    format!("m.{}.", kv_key(topic.as_str()))
}

pub(super) fn member_key(topic: &Topic, member: &str) -> String {
    format!("{}{}", members_prefix(topic), kv_key(member))
}

pub(super) fn index_key(instance: &str, topic: &Topic) -> String {
    format!("p.{instance}.{}", kv_key(topic.as_str()))
}

pub(super) fn lease_key(instance: &str) -> String {
    format!("l.{instance}")
}

/// The bucket and the JetStream context its deletes go through.
pub(super) struct Kv {
    pub(super) js: Context,
    pub(super) store: kv::Store,
}

/// Adds `streams` of `instance` to member `key` of `topic` as operation number `n`, then
/// applies it to the summary.
pub(super) async fn add_share(
    store: &Kv,
    (instance, n): (&str, u64),
    topic: &Topic,
    key: &str,
    info: &str,
    streams: u64,
) -> Result<(), String> {
    let op = bucket::update(
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
            let op = Op(n, streams as i64, (before == 0) as i64);
            shares.p.insert(instance.to_owned(), op);
            Decision::Write(shares, op)
        },
    )
    .await?;
    apply(store, topic, instance, op).await.map(|_| ())
}

/// Takes one of `instance`'s streams of member `key` of `topic` back as operation number `n`,
/// then applies it to the summary; a member left with no stream is a tombstone until then, and
/// deleted after.
pub(super) async fn leave_share(
    store: &Kv,
    (instance, n): (&str, u64),
    topic: &Topic,
    key: &str,
) -> Result<(), String> {
    let key = member_key(topic, key);
    let op = bucket::update(&store.js, &store.store, &key, ATTEMPTS, |s| {
        let Some(mut shares): Option<Shares> = s else {
            return Decision::Keep(None);
        };
        let Some(mine) = shares.x.get_mut(instance) else {
            return Decision::Keep(None);
        };
        *mine -= 1;
        if *mine == 0 {
            shares.x.remove(instance);
        }
        let emptied = shares.x.is_empty() as i64;
        let op = Op(n, -1, -emptied);
        shares.p.insert(instance.to_owned(), op);
        Decision::Write(shares, Some(op))
    })
    .await?;
    let Some(op) = op else { return Ok(()) };
    let applied = apply(store, topic, instance, op).await?;
    if op.2 == 0 {
        return Ok(());
    }
    // the tombstone, unless a join came since or another instance's operation is pending on it
    settle(store, &key, &|_| false, &applied).await
}

/// Takes back everything dead `instance` holds on `topic`'s members, so that a kill of the
/// reaper itself at any point leaves nothing half done for the next reaper. First the
/// operations left pending on them (the dead instance's own, and those of a reaper of it killed
/// in the middle) are applied; then each share is taken back as an operation of the reaper on
/// behalf of the dead one (the owner `<instance>~<reaper>`, numbered from its mark): the member's
/// entry records it, the summary applies it, the entry drops it; last the marks are marked
/// reaped at `now` (the server's time), to be dropped a minute later.
pub(super) async fn reclaim(
    store: &Kv,
    instance: &str,
    reaper: &str,
    topic: &Topic,
    now: i128,
) -> Result<(), String> {
    let theirs = |who: &str| of_instance(who, instance);
    let owner = format!("{instance}~{reaper}");
    let mut members = Vec::new();
    let mut pending = Vec::new();
    for (key, value) in bucket::scan(&store.store, &members_prefix(topic)).await? {
        if let Ok(shares) = serde_json::from_slice::<Shares>(&value) {
            pending.extend(shares.p.into_iter().filter(|(who, _)| theirs(who)));
        }
        members.push(key);
    }
    pending.sort_by_key(|(who, op)| (who.clone(), op.0));
    let summary = store.store.get(summary_key(topic)).await;
    let summary = summary.map_err(|e| e.to_string())?;
    let mut applied = summary
        .and_then(|v| serde_json::from_slice::<Summary>(&v).ok())
        .unwrap_or_default()
        .a;
    for (who, op) in pending {
        if !is_applied(&applied, &who, &op) {
            applied = apply(store, topic, &who, op).await?;
        }
    }
    let mut n = applied.get(&owner).copied().unwrap_or(0);
    for key in members {
        n += 1;
        let taken = take_share(store, instance, &owner, n, &key, &applied).await?;
        if let Some(op) = taken {
            applied = apply(store, topic, &owner, op).await?;
            settle(store, &key, &|who| who == owner, &applied).await?;
        }
    }
    forget(store, topic, &theirs, now).await
}

/// Takes dead `instance`'s streams back from member entry `key` as operation `n` of `owner`
/// (recorded pending in the entry), and drops the dead one's operations the marks `applied`
/// settle. Answers the operation, `None` when the dead instance had no stream there.
async fn take_share(
    store: &Kv,
    instance: &str,
    owner: &str,
    n: u64,
    key: &str,
    applied: &BTreeMap<String, u64>,
) -> Result<Option<Op>, String> {
    bucket::update(&store.js, &store.store, key, ATTEMPTS, |s| {
        let Some(mut shares): Option<Shares> = s else {
            return Decision::Keep(None);
        };
        let before = shares.p.len();
        shares
            .p
            .retain(|who, op| !of_instance(who, instance) || !is_applied(applied, who, op));
        let dropped = shares.p.len() != before;
        let taken = shares.x.remove(instance).unwrap_or(0);
        let op = (taken > 0).then(|| Op(n, -(taken as i64), -(shares.x.is_empty() as i64)));
        if let Some(op) = op {
            shares.p.insert(owner.to_owned(), op);
        }
        match (op, dropped) {
            (None, false) => Decision::Keep(None),
            (None, true) if shares.x.is_empty() && settled(&shares, applied) => {
                Decision::Delete(None)
            }
            _ => Decision::Write(shares, op),
        }
    })
    .await
}

/// Whether owner `who` is dead `instance` or one of its reapers (`<instance>~<reaper>`).
fn of_instance(who: &str, instance: &str) -> bool {
    who.strip_prefix(instance)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('~'))
}

/// Whether `who`'s operation `op` is applied by the marks `applied`.
fn is_applied(applied: &BTreeMap<String, u64>, who: &str, op: &Op) -> bool {
    applied.get(who).is_some_and(|mark| *mark >= op.0)
}

/// Drops from member entry `key` the operations of the owners `ours` selects that the marks
/// `applied` settle, and deletes the entry when it has no stream and nothing pending (unless a
/// join came since or another instance's operation is pending on it).
async fn settle(
    store: &Kv,
    key: &str,
    ours: &(dyn Fn(&str) -> bool + Sync),
    applied: &BTreeMap<String, u64>,
) -> Result<(), String> {
    bucket::update(&store.js, &store.store, key, ATTEMPTS, |s| {
        let Some(mut shares): Option<Shares> = s else {
            return Decision::Keep(());
        };
        let before = shares.p.len();
        shares
            .p
            .retain(|who, op| !ours(who) || !is_applied(applied, who, op));
        match shares.x.is_empty() && settled(&shares, applied) {
            true => Decision::Delete(()),
            false if shares.p.len() != before => Decision::Write(shares, ()),
            false => Decision::Keep(()),
        }
    })
    .await
}

/// Applies `instance`'s operation `op` to the summary of `topic` unless its mark is there
/// already (a member that appeared or disappeared bumps the version). Answers the marks after.
pub(super) async fn apply(
    store: &Kv,
    topic: &Topic,
    instance: &str,
    op: Op,
) -> Result<BTreeMap<String, u64>, String> {
    change_summary(store, topic, |summary| {
        (apply_mark(summary, instance, op), summary.a.clone())
    })
    .await
}

/// Changes the summary of `topic` (empty when it has none) with `change`, which answers whether
/// it changed anything (then the summary is written, compare-and-set: read again and changed
/// again when another instance wrote first) and what to answer.
async fn change_summary<T>(
    store: &Kv,
    topic: &Topic,
    mut change: impl FnMut(&mut Summary) -> (bool, T),
) -> Result<T, String> {
    bucket::update(
        &store.js,
        &store.store,
        &summary_key(topic),
        ATTEMPTS,
        |s| {
            let mut summary: Summary = s.unwrap_or_default();
            match change(&mut summary) {
                (true, answer) => Decision::Write(summary, answer),
                (false, answer) => Decision::Keep(answer),
            }
        },
    )
    .await
}

/// [`apply`] on the summary itself: `false` when `instance`'s mark is at `op` already.
fn apply_mark(summary: &mut Summary, instance: &str, op: Op) -> bool {
    if summary.a.get(instance).is_some_and(|mark| *mark >= op.0) {
        return false;
    }
    summary.a.insert(instance.to_owned(), op.0);
    summary.n = summary.n.saturating_add_signed(op.1);
    summary.c = summary.c.saturating_add_signed(op.2);
    if op.2 != 0 {
        summary.v += 1;
    }
    true
}

/// Marks the owners `theirs` selects (a dead instance and its reapers) reaped at `now` in the
/// summary of `topic`, once [`reclaim`] applied and dropped all their operations, and drops the
/// marks of owners reaped more than [`KEEP_MARKS_MS`] before. A mark is kept that long rather
/// than dropped at once: a second reaper that read the dead one's last operation as pending
/// before the first applied it would find no mark and apply it again.
async fn forget(
    store: &Kv,
    topic: &Topic,
    theirs: &(dyn Fn(&str) -> bool + Sync),
    now: i128,
) -> Result<(), String> {
    change_summary(store, topic, |summary| (summary.forget(theirs, now), ())).await
}

impl Summary {
    /// [`forget`] on the summary itself: `true` when it changed.
    fn forget(&mut self, theirs: &(dyn Fn(&str) -> bool + Sync), now: i128) -> bool {
        let mut changed = false;
        for who in self.a.keys().filter(|who| theirs(who)) {
            if !self.g.contains_key(who) {
                self.g.insert(who.clone(), now);
                changed = true;
            }
        }
        let expired: Vec<String> = self
            .g
            .iter()
            .filter(|(_, at)| now - **at > KEEP_MARKS_MS)
            .map(|(who, _)| who.clone())
            .collect();
        for who in &expired {
            self.g.remove(who);
            self.a.remove(who);
        }
        changed || !expired.is_empty()
    }
}

/// Adds `instance` to (or removes it from) the holders of `topic`; `true` when that filled
/// (emptied) the set: the edge of the topic's occupancy.
pub(super) async fn hold(
    store: &Kv,
    instance: &str,
    topic: &Topic,
    holds: bool,
) -> Result<bool, String> {
    change_summary(store, topic, |summary| {
        let changed = match holds {
            true => summary.h.insert(instance.to_owned()),
            false => summary.h.remove(instance),
        };
        (changed, changed && summary.h.len() == holds as usize)
    })
    .await
}

/// Adds `instance` to (or removes it from) the instance list.
pub(super) async fn list(store: &Kv, instance: &str, listed: bool) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn keys_of_two_topics_or_members_never_overlap() {
        use crate::topic::Topic;
        let a = Topic::new("room:a.b").unwrap();
        assert_eq!(super::member_key(&a, "x.y"), "m.kroom=3Aa=2Eb.kx=2Ey");
        assert!(super::index_key("1-2-3", &a).starts_with("p.1-2-3."));
    }

    #[test]
    fn a_reapers_owner_belongs_to_the_dead_instance_and_no_other() {
        assert!(super::of_instance("a-1", "a-1"));
        assert!(super::of_instance("a-1~b-2", "a-1"));
        assert!(!super::of_instance("a-12", "a-1"));
        assert!(!super::of_instance("b-2~a-1", "a-1"));
    }

    #[test]
    fn a_reaped_instance_keeps_its_marks_for_a_minute_so_no_operation_applies_twice() {
        use super::{apply_mark, of_instance, Op, Summary, KEEP_MARKS_MS};
        let theirs = |who: &str| of_instance(who, "d");
        let mut summary = Summary::default();
        summary.a.insert("d".into(), 7);
        summary.a.insert("d~r".into(), 2);
        summary.a.insert("e".into(), 3);
        assert!(summary.forget(&theirs, 1_000));
        // a second reaper that read d's operation 7 as pending finds it applied
        assert!(!apply_mark(&mut summary, "d", Op(7, 1, 1)));
        // nothing to do at a second forget within the minute
        assert!(!summary.forget(&theirs, 2_000));
        assert_eq!(summary.a.len(), 3);
        // a later reap (another instance) drops them once the minute is over
        assert!(summary.forget(&|who: &str| who == "x", 1_001 + KEEP_MARKS_MS));
        assert_eq!(summary.a.keys().collect::<Vec<_>>(), ["e"]);
        assert!(summary.g.is_empty());
    }
}

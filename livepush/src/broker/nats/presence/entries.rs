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
//! ([`take_all`], [`forget`]). A leave that empties a member leaves a tombstone (no streams,
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
}

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
    bucket::update(
        &store.js,
        &store.store,
        &key,
        ATTEMPTS,
        |s: Option<Shares>| match s {
            Some(shares) if shares.x.is_empty() && settled(&shares, &applied) => {
                Decision::Delete(())
            }
            _ => Decision::Keep(()),
        },
    )
    .await
}

/// Takes every stream of dead `instance` back from member entry `key` of `topic`, and its
/// pending operation if the summary's marks `applied` are below it; deletes an entry left with
/// no stream and nothing pending. Answers (the streams and members this takes from the summary,
/// whether a member appeared or disappeared).
pub(super) async fn take_all(
    store: &Kv,
    instance: &str,
    topic: &Topic,
    key: &str,
    applied: &BTreeMap<String, u64>,
) -> Result<(i64, i64, bool), String> {
    bucket::update(&store.js, &store.store, key, ATTEMPTS, |s| {
        let Some(mut shares): Option<Shares> = s else {
            return Decision::Keep((0, 0, false));
        };
        let before: u64 = shares.x.values().sum();
        let taken = shares.x.remove(instance).unwrap_or(0);
        let pending = shares.p.remove(instance);
        // the half-done operation first (the summary never saw it), then the share
        let (mut streams, mut members) = match pending {
            Some(op) if applied.get(instance).is_none_or(|mark| *mark < op.0) => (op.1, op.2),
            _ => (0, 0),
        };
        let gone = before > 0 && before == taken;
        streams -= taken as i64;
        members -= gone as i64;
        let answer = (streams, members, gone || members != 0);
        match (taken, pending) {
            (0, None) => Decision::Keep(answer),
            _ if shares.x.is_empty() && settled(&shares, applied) => Decision::Delete(answer),
            _ => Decision::Write(shares, answer),
        }
    })
    .await
    .map_err(|e| format!("{e} (member of {topic})"))
}

/// Applies `instance`'s operation `op` to the summary of `topic` unless its mark is there
/// already (a member that appeared or disappeared bumps the version). Answers the marks after.
pub(super) async fn apply(
    store: &Kv,
    topic: &Topic,
    instance: &str,
    op: Op,
) -> Result<BTreeMap<String, u64>, String> {
    bucket::update(
        &store.js,
        &store.store,
        &summary_key(topic),
        ATTEMPTS,
        |s| {
            let mut summary: Summary = s.unwrap_or_default();
            if summary.a.get(instance).is_some_and(|mark| *mark >= op.0) {
                return Decision::Keep(summary.a);
            }
            summary.a.insert(instance.to_owned(), op.0);
            summary.n = summary.n.saturating_add_signed(op.1);
            summary.c = summary.c.saturating_add_signed(op.2);
            if op.2 != 0 {
                summary.v += 1;
            }
            let applied = summary.a.clone();
            Decision::Write(summary, applied)
        },
    )
    .await
}

/// Adds what reaping dead `instance` took (`streams`, `members`, negative) to the summary of
/// `topic` and drops the instance's mark; `moved` (a member appeared or disappeared) bumps the
/// version.
pub(super) async fn forget(
    store: &Kv,
    topic: &Topic,
    instance: &str,
    (streams, members, moved): (i64, i64, bool),
) -> Result<(), String> {
    bucket::update(
        &store.js,
        &store.store,
        &summary_key(topic),
        ATTEMPTS,
        |s| {
            let mut summary: Summary = s.unwrap_or_default();
            let marked = summary.a.remove(instance).is_some();
            if !marked && streams == 0 && members == 0 && !moved {
                return Decision::Keep(());
            }
            summary.n = summary.n.saturating_add_signed(streams);
            summary.c = summary.c.saturating_add_signed(members);
            if moved {
                summary.v += 1;
            }
            Decision::Write(summary, ())
        },
    )
    .await
}

/// Adds `instance` to (or removes it from) the holders of `topic`; `true` when that filled
/// (emptied) the set: the edge of the topic's occupancy.
pub(super) async fn hold(
    store: &Kv,
    instance: &str,
    topic: &Topic,
    holds: bool,
) -> Result<bool, String> {
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
}

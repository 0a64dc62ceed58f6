//! The KV entries of presence and the compare-and-set steps on them: a member's streams per
//! instance, a topic's summary (version, totals, occupancy holders), the instance list.

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
}

/// `m.<topic>.<member>`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Shares {
    pub(super) k: String,
    #[serde(default)]
    pub(super) i: String,
    pub(super) x: BTreeMap<String, u64>,
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

/// Adds `streams` of `instance` to member `key` of `topic`, then the summary.
pub(super) async fn add_share(
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
pub(super) async fn take_share(
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
pub(super) async fn adjust(
    store: &Kv,
    topic: &Topic,
    streams: i64,
    members: i64,
) -> Result<(), String> {
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

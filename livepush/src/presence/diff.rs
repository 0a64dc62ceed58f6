//! What changed between two readings of a topic's members, and the one event that says it.
//!
//! A stream that asked for presence gets, per topic and per tick of the hub's presence loop, at
//! most one event: `livepush.join` or `livepush.leave` when one member came or went,
//! `livepush.presence_diff` when several did. A member that left and came back within one tick
//! is no change at all. So a churn of any rate costs each subscriber at most one event per tick
//! (ten per second), and each event names only the members that changed: never O(N²).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::broker::{Member, Presence};
use crate::event::EventName;
use crate::sse;
use crate::topic::Topic;

/// A topic's members as last read: key → member.
pub(crate) type Members = BTreeMap<String, Member>;

/// The members of `presence`, by key.
pub(crate) fn members_of(presence: Presence) -> Members {
    presence
        .members
        .into_iter()
        .map(|m| (m.key.clone(), m))
        .collect()
}

/// The members that appeared and those that disappeared from `old` to `new`, by key order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Diff<'a> {
    pub(crate) joins: Vec<&'a Member>,
    pub(crate) leaves: Vec<&'a Member>,
}

impl<'a> Diff<'a> {
    /// Compares by key only: a second stream of a member is not a join.
    pub(crate) fn between(old: &'a Members, new: &'a Members) -> Self {
        Diff {
            joins: new.values().filter(|m| !old.contains_key(&m.key)).collect(),
            leaves: old.values().filter(|m| !new.contains_key(&m.key)).collect(),
        }
    }

    /// The one event that tells this diff to a stream of `topic`, or `None` when nothing
    /// changed.
    pub(crate) fn event(&self, topic: &Topic) -> Option<(EventName, Bytes)> {
        let one = |m: &Member| match &m.info {
            Some(info) => json!({ "topic": topic.as_str(), "key": m.key, "info": info }),
            None => json!({ "topic": topic.as_str(), "key": m.key }),
        };
        let (event, data) = match (self.joins.as_slice(), self.leaves.as_slice()) {
            ([], []) => return None,
            ([m], []) => (sse::JOIN, one(m)),
            ([], [m]) => (sse::LEAVE, one(m)),
            (joins, leaves) => {
                let list = |ms: &[&Member]| -> Vec<Value> {
                    ms.iter()
                        .map(|m| match &m.info {
                            Some(info) => json!({ "key": m.key, "info": info }),
                            None => json!({ "key": m.key }),
                        })
                        .collect()
                };
                (
                    sse::PRESENCE_DIFF,
                    json!({ "topic": topic.as_str(), "joins": list(joins), "leaves": list(leaves) }),
                )
            }
        };
        Some((event, Bytes::from(data.to_string())))
    }
}

/// The payload of the `livepush.presence` snapshot of `topic`.
pub(crate) fn snapshot(topic: &Topic, members: &Members) -> Bytes {
    let presence = Presence::from_members(members.values().cloned().collect());
    let data = json!({
        "topic": topic.as_str(),
        "count": presence.count,
        "connections": presence.connections,
        "members": presence.members,
    });
    Bytes::from(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(keys: &[&str]) -> Members {
        keys.iter()
            .map(|k| (k.to_string(), Member::new(*k, 1, None)))
            .collect()
    }

    fn event(old: &[&str], new: &[&str]) -> Option<(String, Value)> {
        let (old, new) = (members(old), members(new));
        let topic = Topic::new("room:a").unwrap();
        Diff::between(&old, &new)
            .event(&topic)
            .map(|(e, d)| (e.to_string(), serde_json::from_slice(&d).unwrap()))
    }

    #[test]
    fn one_change_is_a_join_or_a_leave_several_are_one_diff() {
        assert_eq!(event(&["a"], &["a"]), None);
        assert_eq!(
            event(&["a"], &["a", "b"]),
            Some((
                "livepush.join".into(),
                json!({"topic": "room:a", "key": "b"})
            ))
        );
        assert_eq!(
            event(&["a", "b"], &["b"]),
            Some((
                "livepush.leave".into(),
                json!({"topic": "room:a", "key": "a"})
            ))
        );
        assert_eq!(
            event(&["a", "b"], &["b", "c", "d"]),
            Some((
                "livepush.presence_diff".into(),
                json!({"topic": "room:a", "joins": [{"key": "c"}, {"key": "d"}], "leaves": [{"key": "a"}]})
            ))
        );
    }

    #[test]
    fn info_travels_with_joins_and_leaves() {
        let old = Members::new();
        let mut new = Members::new();
        new.insert(
            "ann".into(),
            Member::new("ann", 2, Some(json!({"name": "Ann"}))),
        );
        let topic = Topic::new("t").unwrap();
        let (event, data) = Diff::between(&old, &new).event(&topic).unwrap();
        assert_eq!(event, sse::JOIN);
        assert_eq!(
            serde_json::from_slice::<Value>(&data).unwrap(),
            json!({"topic": "t", "key": "ann", "info": {"name": "Ann"}})
        );
        let (event, _) = Diff::between(&new, &old).event(&topic).unwrap();
        assert_eq!(event, sse::LEAVE);
    }

    #[test]
    fn the_snapshot_has_the_totals_and_the_members() {
        let mut ms = members(&["b", "a"]);
        ms.get_mut("a").unwrap().connections = 3;
        let topic = Topic::new("t").unwrap();
        let data: Value = serde_json::from_slice(&snapshot(&topic, &ms)).unwrap();
        assert_eq!(
            data,
            json!({"topic": "t", "count": 2, "connections": 4,
                   "members": [{"key": "a", "connections": 3}, {"key": "b", "connections": 1}]})
        );
    }

    mod prop {
        use std::collections::BTreeSet;

        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Applying the event to the old key set gives the new one, whatever the change.
            #[test]
            fn applying_the_event_gives_the_new_members(
                old in proptest::collection::btree_set("[a-f]{1,2}", 0..12),
                new in proptest::collection::btree_set("[a-f]{1,2}", 0..12),
            ) {
                let o: Vec<&str> = old.iter().map(String::as_str).collect();
                let n: Vec<&str> = new.iter().map(String::as_str).collect();
                let mut keys: BTreeSet<String> = old.clone();
                match event(&o, &n) {
                    None => {}
                    Some((name, data)) => match name.as_str() {
                        "livepush.join" => { keys.insert(data["key"].as_str().unwrap().to_owned()); }
                        "livepush.leave" => { keys.remove(data["key"].as_str().unwrap()); }
                        "livepush.presence_diff" => {
                            for j in data["joins"].as_array().unwrap() { keys.insert(j["key"].as_str().unwrap().to_owned()); }
                            for l in data["leaves"].as_array().unwrap() { keys.remove(l["key"].as_str().unwrap()); }
                        }
                        other => panic!("{other}"),
                    },
                }
                prop_assert_eq!(keys, new);
            }
        }
    }
}

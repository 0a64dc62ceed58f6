//! Presence: who is subscribed to a topic, by member key, the same answer on every instance.
//!
//! A broker that shares state between processes answers [`Broker::presence`](super::Broker::presence)
//! with a [`PresenceStore`]; the hub keeps the local side (the grace period of a reconnect, the
//! join and leave events of the streams that asked for them, the occupancy hook). A broker
//! without one gets [`LocalPresence`]: this process's members only, which is the whole answer
//! for the in-memory broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use super::BrokerError;
use crate::topic::Topic;

/// The members of a topic across every instance, as [`Hub::presence`](crate::Hub::presence)
/// answers it. Serializes as `{"count","connections","members":[{"key","connections","info"}]}`.
///
/// ```
/// use livepush::broker::{Member, Presence};
///
/// let presence = Presence::from_members(vec![Member::new("alice", 2, None)]);
/// assert_eq!((presence.count, presence.connections), (1, 2));
/// assert_eq!(
///     serde_json::to_string(&presence).unwrap(),
///     r#"{"count":1,"connections":2,"members":[{"key":"alice","connections":2}]}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Presence {
    /// Distinct members (keys).
    pub count: u64,
    /// Streams of those members, all instances together.
    pub connections: u64,
    /// The members, ordered by key.
    pub members: Vec<Member>,
}

impl Presence {
    /// A presence made of `members` (sorted by key here), with its totals.
    pub fn from_members(mut members: Vec<Member>) -> Self {
        members.sort_by(|a, b| a.key.cmp(&b.key));
        Presence {
            count: members.len() as u64,
            connections: members.iter().map(|m| m.connections).sum(),
            members,
        }
    }
}

/// One member of a topic: its key, its open streams, and the info its latest stream gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The member key ([`Subscription::member`](crate::Subscription::member), or the cap key).
    pub key: String,
    /// Its open streams on the topic, all instances together.
    pub connections: u64,
    /// The small JSON info the subscription gave (a display name…), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl Member {
    /// A member.
    pub fn new(key: impl Into<String>, connections: u64, info: Option<serde_json::Value>) -> Self {
        Member {
            key: key.into(),
            connections,
            info,
        }
    }
}

/// The totals of a topic's presence, read in O(1) ([`Hub::presence_count`](crate::Hub::presence_count)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PresenceCount {
    /// Distinct members.
    pub count: u64,
    /// Their streams.
    pub connections: u64,
}

impl PresenceCount {
    /// The totals.
    pub fn new(count: u64, connections: u64) -> Self {
        PresenceCount { count, connections }
    }
}

/// An edge of a topic's occupancy, across every instance: what the hook of
/// [`HubBuilder::on_occupancy`](crate::HubBuilder::on_occupancy) is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Occupancy {
    /// The topic had no subscriber anywhere and now has one.
    Occupied,
    /// The topic's last subscriber anywhere left (or its instance died).
    Vacated,
}

/// The shared side of presence, as a broker keeps it. Every method counts for this process
/// (one instance); the store adds up the instances. The hub calls them in order per topic.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// One more stream of member `key` on `topic` in this process; `info` is the member's
    /// JSON info (`""` for none), kept as the latest.
    async fn join(&self, topic: &Topic, key: &str, info: &str) -> Result<(), BrokerError>;

    /// One stream of member `key` on `topic` in this process ended.
    async fn leave(&self, topic: &Topic, key: &str) -> Result<(), BrokerError>;

    /// This process has subscribers of `topic` now; `true` when no process had any before
    /// (the topic became occupied, and this process is the one to say so).
    async fn occupy(&self, topic: &Topic) -> Result<bool, BrokerError>;

    /// This process has no subscriber of `topic` any more; `true` when no process has any now.
    async fn vacate(&self, topic: &Topic) -> Result<bool, BrokerError>;

    /// The members of `topic` across every process, and the topic's version (see
    /// [`PresenceStore::versions`]) they were read at, in one atomic read.
    async fn members(&self, topic: &Topic) -> Result<(u64, Presence), BrokerError>;

    /// The totals of `topic`, in O(1).
    async fn count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError>;

    /// The version of each topic's member list: it changes whenever a member appears or
    /// disappears, and never comes back to an earlier value.
    async fn versions(&self, topics: &[Topic]) -> Result<Vec<u64>, BrokerError>;

    /// How often the hub calls [`PresenceStore::maintain`]: [`MAINTAIN_EVERY`] unless the store
    /// needs a shorter period (the Redis store renews its 750 ms lease every 150 ms, so that a
    /// dead instance's members and occupancy go within a second).
    fn maintain_every(&self) -> std::time::Duration {
        MAINTAIN_EVERY
    }

    /// Called about every [`PresenceStore::maintain_every`] by the hub: keeps this process's lease, and removes
    /// the members and occupancy of processes whose lease ran out. Returns the occupancy edges
    /// this made (a topic that the removal left without any subscriber is vacated): this
    /// process reports them.
    async fn maintain(&self) -> Result<Vec<(Topic, Occupancy)>, BrokerError> {
        Ok(Vec::new())
    }
}

/// How often the hub calls [`PresenceStore::maintain`] by default
/// ([`PresenceStore::maintain_every`]).
pub const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The presence of one process, in its memory: the store of the in-memory broker (and of a
/// broker of your own that has no [`PresenceStore`]).
#[derive(Debug, Default)]
pub struct LocalPresence {
    topics: Mutex<HashMap<Topic, LocalTopic>>,
    /// Versions come from one sequence, so a topic removed and made again never repeats one.
    next_version: AtomicU64,
}

#[derive(Debug, Default)]
struct LocalTopic {
    /// Key → (streams, info).
    members: BTreeMap<String, (u64, Option<serde_json::Value>)>,
    connections: u64,
    version: u64,
    occupied: bool,
}

impl LocalPresence {
    /// An empty store.
    pub fn new() -> Self {
        LocalPresence::default()
    }

    fn with<T>(&self, topic: &Topic, f: impl FnOnce(&mut LocalTopic, &AtomicU64) -> T) -> T {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let state = topics.entry(topic.clone()).or_default();
        let out = f(state, &self.next_version);
        if state.members.is_empty() && !state.occupied {
            topics.remove(topic);
        }
        out
    }
}

#[async_trait]
impl PresenceStore for LocalPresence {
    async fn join(&self, topic: &Topic, key: &str, info: &str) -> Result<(), BrokerError> {
        let info = (!info.is_empty())
            .then(|| serde_json::from_str(info).ok())
            .flatten();
        self.with(topic, |state, next| {
            state.connections += 1;
            let entry = state.members.entry(key.to_owned()).or_insert((0, None));
            entry.0 += 1;
            entry.1 = info;
            if entry.0 == 1 {
                state.version = next.fetch_add(1, Ordering::Relaxed) + 1;
            }
        });
        Ok(())
    }

    async fn leave(&self, topic: &Topic, key: &str) -> Result<(), BrokerError> {
        self.with(topic, |state, next| {
            let Some(entry) = state.members.get_mut(key) else {
                return;
            };
            entry.0 -= 1;
            state.connections -= 1;
            if entry.0 == 0 {
                state.members.remove(key);
                state.version = next.fetch_add(1, Ordering::Relaxed) + 1;
            }
        });
        Ok(())
    }

    async fn occupy(&self, topic: &Topic) -> Result<bool, BrokerError> {
        Ok(self.with(topic, |state, _| {
            !std::mem::replace(&mut state.occupied, true)
        }))
    }

    async fn vacate(&self, topic: &Topic) -> Result<bool, BrokerError> {
        Ok(self.with(topic, |state, _| {
            std::mem::replace(&mut state.occupied, false)
        }))
    }

    async fn members(&self, topic: &Topic) -> Result<(u64, Presence), BrokerError> {
        Ok(self.with(topic, |state, _| {
            let members = state
                .members
                .iter()
                .map(|(key, (n, info))| Member::new(key.clone(), *n, info.clone()))
                .collect();
            (state.version, Presence::from_members(members))
        }))
    }

    async fn count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError> {
        Ok(self.with(topic, |state, _| {
            PresenceCount::new(state.members.len() as u64, state.connections)
        }))
    }

    async fn versions(&self, topics: &[Topic]) -> Result<Vec<u64>, BrokerError> {
        let map = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        Ok(topics
            .iter()
            .map(|t| map.get(t).map_or(0, |s| s.version))
            .collect())
    }
}

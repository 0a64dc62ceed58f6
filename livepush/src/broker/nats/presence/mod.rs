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

mod entries;
mod lease;

use std::sync::Arc;

use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;

use super::bucket::{self, Bucket};
use super::Shared;
use crate::broker::{
    BrokerError, Cause, Member, Occupancy, Presence, PresenceCount, PresenceStore,
};
use crate::topic::Topic;
use entries::{
    add_share, adjust, hold, member_key, members_prefix, summary_key, take_share, Kv, Shares,
    Summary,
};
use lease::{index, reap_dead, renew, resync, Held};

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
            held: tokio::sync::Mutex::new(Held::new()),
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

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
//! one topic retry, never overwrite; the two writes are fenced by numbered operations so that a
//! kill between them is completed by the reaper ([`entries`]). Occupancy is one compare-and-set
//! of the summary's holder set: the write that empties or fills it makes the edge, on one
//! instance.
//!
//! Leases are judged by the server's clock, never by comparing instances' clocks: every
//! [`RENEW_EVERY`] the instance rewrites its lease (compare-and-set on its own last revision)
//! and reads it back; the server-assigned time of that write is "now", and another instance
//! whose lease was written more than [`LEASE`](lease::LEASE) before it is dead. The renewal never waits for
//! [`Held`]'s lock (a join that waits on a slow NATS holds it) nor for a reap (run on a task of
//! its own): the lease to renew is kept beside it ([`Leased`]). Each instance checks the next one in the
//! instance list, and the one after only while they are dead, so the checks cost O(instances). The instance that claims a dead one (a
//! compare-and-set delete of its lease at the revision it judged) reaps it topic by topic:
//! occupancy first, then every member share of the dead instance (a scan of the topic's
//! members). An instance whose own renewal failed (reaped meanwhile) or came more than a lease
//! after its previous one takes a new identity, records all it holds under it, then reaps the
//! old one, so members that stay never flicker.

mod entries;
mod lease;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;

use super::bucket::{self, Bucket};
use super::Shared;
use crate::broker::{
    BrokerError, Cause, Member, Occupancy, Presence, PresenceCount, PresenceStore,
};
use crate::topic::Topic;
use entries::{add_share, hold, leave_share, members_prefix, summary_key, Kv, Shares, Summary};
use lease::{current, index, reap_dead, renew, resync, Held, Leased, RENEW_EVERY};

/// A bit no summary's version has: set on the version of a members read that writes overtook.
const UNSETTLED: u64 = 1 << 63;

/// The presence store of the NATS broker.
pub(super) struct NatsPresence {
    shared: Arc<Shared>,
    bucket: Bucket,
    held: tokio::sync::Mutex<Held>,
    /// The lease the maintenance renews (`held`'s identity's once registered).
    leased: Leased,
    /// Dead instances' reaping, on a task of its own: whether one runs, and the topics it
    /// vacated, for the next maintenance to report.
    reaping: Arc<Reaping>,
}

/// What the reaping task shares with the store.
#[derive(Default)]
struct Reaping {
    running: AtomicBool,
    vacated: Mutex<Vec<Topic>>,
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
            leased: Leased::default(),
            reaping: Arc::default(),
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
            resync(store, held, &self.leased).await
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
            add_share(store, held.op(), topic, key, info, 1).await
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
            leave_share(store, held.op(), topic, key).await
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
        let (entries, complete) = match bucket::snapshot(&store.store, &members_prefix(topic)).await
        {
            Ok(read) => read,
            Err(e) => return Err(self.fail("scan", e).await),
        };
        // a member written during the read may be missing: answer a version no summary has, so
        // that the hub reads again at its next tick (instead of following the writes now)
        let version = match complete {
            true => version,
            false => version | UNSETTLED,
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

    fn maintain_every(&self) -> Duration {
        RENEW_EVERY
    }

    async fn maintain(&self) -> Result<Vec<(Topic, Occupancy)>, BrokerError> {
        let store = self.store().await?;
        // The renewal first, without waiting for `held` (a slow join may hold it).
        let lease = current(&self.leased);
        let renewed = match renew(&store, &lease).await {
            Ok(renewed) => renewed,
            Err(e) => return Err(self.fail("lease", e).await),
        };
        if let Some(renewed) = &renewed {
            *self.leased.lock().unwrap_or_else(|p| p.into_inner()) = renewed.clone();
        }
        let held = match renewed {
            // lapsed, lost or never had: wait for `held`, this instance resyncs
            None => Some(self.held.lock().await),
            // renewed: whatever else `held` needs (a resync after a failed write, edges to
            // report) waits for the next renewal if a join holds it now
            Some(_) => self.held.try_lock().ok(),
        };
        let mut edges = Vec::new();
        if let Some(mut held) = held {
            // a resync that renewed or replaced the lease meanwhile: not lapsed
            let moved = current(&self.leased).revision != lease.revision;
            if renewed.is_none() && !moved && held.registered && held.instance == lease.instance {
                held.dirty = true;
                tracing::warn!("presence lease lapsed: recording this instance's members again");
            }
            self.ready(&mut held).await?;
            edges.append(&mut held.edges);
        }
        // a short reap reports its vacated topics now; a long one at a later maintenance
        if let Some(reap) = self.reap_in_background(store, current(&self.leased)) {
            let _ = tokio::time::timeout(RENEW_EVERY / 2, reap).await;
        }
        let vacated = std::mem::take(
            &mut *self
                .reaping
                .vacated
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        edges.extend(vacated.into_iter().map(|t| (t, Occupancy::Vacated)));
        Ok(edges)
    }
}

impl NatsPresence {
    /// Reaps the dead instances after this one ([`reap_dead`]) on a task of its own, unless one
    /// runs already: a reap of many members takes many writes, and the renewals go on meanwhile.
    fn reap_in_background(&self, store: Kv, me: lease::Lease) -> Option<JoinHandle<()>> {
        if me.revision == 0 || self.reaping.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let reaping = self.reaping.clone();
        let task = tokio::spawn(async move {
            match reap_dead(&store, &me.instance, me.at).await {
                Ok(vacated) => reaping
                    .vacated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(vacated),
                Err(error) => tracing::warn!(%error, "reaping dead presence instances failed"),
            }
            reaping.running.store(false, Ordering::Release);
        });
        Some(task)
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

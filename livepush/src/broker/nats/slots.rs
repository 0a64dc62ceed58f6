//! Connection slots shared by all instances, in a NATS KV bucket (`<stream>_slots`).
//!
//! One KV entry per cap key holds the key's slots: a JSON object of members (`{instance}:{n}`)
//! and the time (Unix milliseconds) each one's lease runs out. Taking, giving back and
//! extending slots are compare-and-set writes of that entry (JetStream's expected last
//! revision): two instances racing for the last slot cannot both get it. As with the Redis
//! sorted sets (`broker/redis/slots.rs`), the instance holding a slot extends its lease every
//! third of a lease, and taking a slot first drops expired members, so a crashed instance's
//! slots are free one lease later. Lease times are the instances' own clocks: they must agree
//! within a fraction of the lease (NTP does).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::Context;

use super::bucket::{self, kv_key, now_ms, Bucket, Decision};
use super::Shared;
use crate::broker::{BrokerError, Cause, Slot};

/// How often a compare-and-set write is tried again when another instance wrote first.
const ATTEMPTS: usize = 32;

/// The default lease of a connection slot: a crashed instance's slots are free after this long.
pub(super) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The slots of one cap key: member → lease end (Unix ms).
type Members = BTreeMap<String, u64>;

pub(super) struct Slots {
    bucket: Bucket,
    /// Lease in milliseconds (set before the broker starts).
    lease_ms: AtomicU64,
    /// Unique per process: its members never collide with another instance's.
    instance: String,
    next: AtomicU64,
    /// Cap key → members this process holds.
    held: Mutex<HashMap<String, Vec<String>>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(Cause::new(format!("NATS connection slots ({what}): {e}")))
}

impl Slots {
    pub(super) fn new(stream: &str, storage: StorageType, replicas: usize) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Slots {
            bucket: Bucket::new(
                format!("{stream}_slots"),
                "livepush connection slots per cap key",
                storage,
                replicas,
            ),
            lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
            instance: format!("{:x}.{:x}", std::process::id(), nanos),
            next: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn lease_ms(&self) -> u64 {
        self.lease_ms.load(Ordering::Relaxed)
    }

    /// Sets the lease (at least 300 ms).
    pub(super) fn set_lease(&self, lease: Duration) {
        let ms = lease.max(Duration::from_millis(300)).as_millis() as u64;
        self.lease_ms.store(ms, Ordering::Relaxed);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `key`'s members, lets `decide` change them, and writes them back only if no other
    /// instance wrote in between (else reads again).
    async fn update<T>(
        &self,
        js: &Context,
        key: &str,
        mut decide: impl FnMut(Members) -> Decision<Members, T>,
    ) -> Result<T, BrokerError> {
        let store = self
            .bucket
            .store(js)
            .await
            .map_err(|e| unavailable("bucket", e))?;
        let updated = bucket::update(js, &store, &kv_key(key), ATTEMPTS, |members| {
            decide(members.unwrap_or_default())
        })
        .await;
        if updated.is_err() {
            self.bucket.forget().await;
        }
        updated.map_err(|e| unavailable("write", e))
    }

    pub(super) async fn acquire(
        &self,
        js: &Context,
        key: &str,
        limit: u32,
    ) -> Result<Slot, BrokerError> {
        let member = format!(
            "{}:{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let lease = self.lease_ms();
        let slot = self
            .update(js, key, |mut members| {
                let now = now_ms();
                members.retain(|_, until| *until > now);
                if members.len() >= limit as usize {
                    return Decision::Keep(Slot::Full);
                }
                members.insert(member.clone(), now + lease);
                Decision::Write(members, Slot::Granted)
            })
            .await?;
        if slot == Slot::Granted {
            self.held().entry(key.to_owned()).or_default().push(member);
        }
        Ok(slot)
    }

    pub(super) async fn release(&self, js: Option<&Context>, key: &str) {
        let member = {
            let mut held = self.held();
            let Some(members) = held.get_mut(key) else {
                return;
            };
            let member = members.pop();
            if members.is_empty() {
                held.remove(key);
            }
            member
        };
        let (Some(member), Some(js)) = (member, js) else {
            tracing::debug!(
                key,
                "NATS is down: the connection slot expires with its lease"
            );
            return;
        };
        let removed = self
            .update(js, key, |mut members| match members.remove(&member) {
                Some(_) => Decision::Write(members, ()),
                None => Decision::Keep(()),
            })
            .await;
        if let Err(error) = removed {
            tracing::debug!(%error, key, "could not give back a connection slot; it expires with its lease");
        }
    }

    /// Extends the lease of every slot this process holds (adding back any the bucket lost).
    async fn refresh(&self, js: &Context) -> Result<(), BrokerError> {
        let held: Vec<(String, Vec<String>)> = {
            let held = self.held();
            held.iter().map(|(k, m)| (k.clone(), m.clone())).collect()
        };
        let lease = self.lease_ms();
        for (key, mine) in held {
            self.update(js, &key, |mut members| {
                let now = now_ms();
                members.retain(|_, until| *until > now);
                for member in &mine {
                    members.insert(member.clone(), now + lease);
                }
                Decision::Write(members, ())
            })
            .await?;
        }
        Ok(())
    }
}

/// Refreshes the leases every third of a lease until the broker is dropped.
pub(super) async fn refresh_loop(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(shared) => Duration::from_millis(shared.slots.lease_ms() / 3),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Ok((_, js, _)) = shared.jetstream() {
            if let Err(error) = shared.slots.refresh(js).await {
                tracing::warn!(%error, "could not refresh connection slot leases");
            }
        }
    }
}

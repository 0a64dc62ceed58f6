//! Connection slots shared by all instances: a sorted set per cap key.
//!
//! Why not INCR/DECR with a TTL: the counter of a key is one value that every instance refreshes,
//! so the count of a crashed instance stays in it for as long as any other instance keeps the key
//! alive, and a busy key never expires. Here each slot is its own member (`{instance}:{n}`) whose
//! score is the time its lease runs out; the instance that holds it extends the lease
//! periodically, and taking a slot first removes expired members. A crashed instance stops
//! extending, so its slots are free one lease later, whatever the other instances do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::{RedisError, Script};

use crate::broker::{BrokerError, Slot};

/// What the slots need of a broker (one Redis, or a cluster): a connection, where a cap key's
/// set lives, the scripts, and how a Redis error maps.
pub(super) trait SlotStore: Send + Sync {
    /// A command connection (cheap to clone).
    type Conn: ConnectionLike + Send;
    /// Cap keys one refresh script may name: they must lie in one slot on a cluster, so 1 there.
    const REFRESH_BATCH: usize;
    /// The slot bookkeeping of this broker.
    fn slots(&self) -> &Slots;
    /// Whether the broker is connected (leases are refreshed only then).
    fn connected(&self) -> bool;
    /// A command connection, or `Unavailable` while down.
    fn slot_conn(&self) -> Result<Self::Conn, BrokerError>;
    /// The sorted set of cap key `key`.
    fn slot_key(&self, key: &str) -> String;
    /// `scripts::ACQUIRE_SLOT` and `scripts::REFRESH_SLOTS`, hashed.
    fn slot_scripts(&self) -> (&Script, &Script);
    /// Maps a Redis error (and wakes the broker's connection checks).
    fn slot_fail(&self, e: RedisError) -> BrokerError;
}

pub(super) struct Slots {
    /// Lease in milliseconds (set before the broker starts).
    lease_ms: AtomicU64,
    /// Unique per process: its members never collide with another instance's.
    instance: String,
    next: AtomicU64,
    /// Cap key → members this process holds.
    held: Mutex<HashMap<String, Vec<String>>>,
}

impl Slots {
    pub(super) fn new(lease: Duration) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Slots {
            lease_ms: AtomicU64::new(lease.as_millis() as u64),
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
        self.lease_ms.store(
            lease.max(Duration::from_millis(300)).as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    pub(super) async fn acquire<S: SlotStore>(
        &self,
        store: &S,
        key: &str,
        limit: u32,
    ) -> Result<Slot, BrokerError> {
        let member = format!(
            "{}:{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = store.slot_conn()?;
        let granted: i64 = store
            .slot_scripts()
            .0
            .key(store.slot_key(key))
            .arg(&member)
            .arg(limit)
            .arg(self.lease_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store.slot_fail(e))?;
        if granted != 1 {
            return Ok(Slot::Full);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.entry(key.to_owned()).or_default().push(member);
        Ok(Slot::Granted)
    }

    pub(super) async fn release<S: SlotStore>(&self, store: &S, key: &str) {
        let member = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let Some(members) = held.get_mut(key) else {
                return;
            };
            let member = members.pop();
            if members.is_empty() {
                held.remove(key);
            }
            member
        };
        let Some(member) = member else {
            return;
        };
        let Ok(mut conn) = store.slot_conn() else {
            tracing::debug!(
                key,
                "Redis is down: the connection slot expires with its lease"
            );
            return;
        };
        let removed = redis::cmd("ZREM")
            .arg(store.slot_key(key))
            .arg(&member)
            .query_async::<i64>(&mut conn)
            .await;
        if let Err(error) = removed {
            // No longer refreshed, the member expires with its lease.
            tracing::debug!(%error, key, "could not give back a connection slot; it expires with its lease");
        }
    }

    /// Extends the lease of every slot this process holds.
    async fn refresh<S: SlotStore>(&self, store: &S) -> Result<(), BrokerError> {
        let held: Vec<(String, Vec<String>)> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter().map(|(k, m)| (k.clone(), m.clone())).collect()
        };
        for batch in held.chunks(S::REFRESH_BATCH) {
            let mut invocation = store.slot_scripts().1.prepare_invoke();
            invocation.arg(self.lease_ms());
            for (key, members) in batch {
                invocation
                    .key(store.slot_key(key))
                    .arg(members.len())
                    .arg(members);
            }
            let mut conn = store.slot_conn()?;
            invocation
                .invoke_async::<()>(&mut conn)
                .await
                .map_err(|e| store.slot_fail(e))?;
        }
        Ok(())
    }
}

/// Refreshes the leases every third of a lease until the broker is dropped.
pub(super) async fn refresh_loop<S: SlotStore + 'static>(store: Weak<S>) {
    let period = match store.upgrade() {
        Some(store) => Duration::from_millis(store.slots().lease_ms() / 3),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if store.connected() {
            if let Err(error) = store.slots().refresh(&*store).await {
                tracing::warn!(%error, "could not refresh connection slot leases");
            }
        }
        drop::<Arc<S>>(store);
    }
}

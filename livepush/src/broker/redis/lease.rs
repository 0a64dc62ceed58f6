//! The presence lease of each instance on Redis: one sorted set, `{prefix}pr:instances`, each
//! instance scored by its deadline in milliseconds of the Redis server's clock (`TIME` inside
//! the script, so the instances' clocks never matter). Every [`RENEW_EVERY`] each instance runs
//! [`TICK`] once: it moves its own deadline [`LEASE`] ahead and gets back the instances whose
//! deadline passed. That is one command per instance per tick whatever the number of instances
//! (the old design asked each instance about every other one: n² lease checks).
//!
//! A deadline that passed is never renewed: the others may already be taking that instance's
//! members back, so the instance learns it lost its lease (the script answers "not renewed")
//! and takes a new identity ([`super::presence`] resyncs). On a cluster the set lives under the
//! prefix, on one node, like the other per-instance keys.

use std::time::Duration;

use redis::{aio::ConnectionLike, RedisError, Script};

/// How long an instance stays alive for the others without renewing its lease: a killed
/// instance is found at most this plus one [`RENEW_EVERY`] after its last renewal. A pause
/// longer than `LEASE - RENEW_EVERY` (600 ms) costs a paused instance its identity (it
/// records its members again under a new one).
pub(super) const LEASE: Duration = Duration::from_millis(750);

/// How often an instance renews its lease and looks for instances whose lease ran out.
pub(super) const RENEW_EVERY: Duration = Duration::from_millis(150);

/// The most expired instances one tick reports (the next tick reports the rest).
const EXPIRED_PER_TICK: u32 = 16;

/// `KEYS`: the instance set. `ARGV`: instance ("" for none), lease in ms, limit, "1" to list a
/// new instance. Renews the instance's deadline only if it is still listed and ahead (or lists
/// it); returns `{1 when renewed, expired instances}`. Four commands in all (with `TIME`,
/// `ZRANGEBYSCORE`, `ZADD`), a `ZSCORE` more only when the expired list is full (the instance's
/// own lapsed lease may be beyond it). Every run calls `ZRANGEBYSCORE` once, and no other
/// livepush script does: `INFO commandstats` tells the lease's share of `EVALSHA`s by it.
const TICK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, limit)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return {1, expired}
end
if ARGV[1] == '' then return {0, expired} end
for _, i in ipairs(expired) do
  if i == ARGV[1] then return {0, expired} end
end
if #expired == limit then
  local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not mine or tonumber(mine) < now then return {0, expired} end
end
return {redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]), expired}
"#;

/// What one [`Leases::tick`] found.
pub(super) struct Tick {
    /// Whether this instance's lease was renewed (false: it ran out, or was never written).
    pub(super) renewed: bool,
    /// Other instances whose lease ran out.
    pub(super) expired: Vec<String>,
}

/// The lease scripts, bound to the instance set's key.
pub(super) struct Leases {
    key: String,
    tick: Script,
}

impl Leases {
    /// The leases kept in the sorted set `key`.
    pub(super) fn new(key: String) -> Self {
        Leases {
            key,
            tick: Script::new(TICK),
        }
    }

    /// Renews `instance`'s lease (if it still holds one) and lists the expired others.
    pub(super) async fn tick<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> Result<Tick, RedisError> {
        self.run(conn, instance, false).await
    }

    /// Lists `instance` with a fresh lease.
    pub(super) async fn register<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> Result<(), RedisError> {
        self.run(conn, instance, true).await.map(|_| ())
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
        register: bool,
    ) -> Result<Tick, RedisError> {
        let (renewed, mut expired): (i64, Vec<String>) = self
            .tick
            .key(&self.key)
            .arg(instance)
            .arg(LEASE.as_millis() as u64)
            .arg(EXPIRED_PER_TICK)
            .arg(if register { "1" } else { "0" })
            .invoke_async(conn)
            .await?;
        expired.retain(|i| i != instance);
        Ok(Tick {
            renewed: renewed == 1,
            expired,
        })
    }

    /// Forgets `instance` (reaped).
    pub(super) async fn forget<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> Result<(), RedisError> {
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(instance)
            .query_async::<()>(conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlives_several_renewals() {
        assert!(LEASE >= RENEW_EVERY * 4);
    }

    #[test]
    fn a_dead_instance_is_found_within_a_second() {
        // the issue's bound on a vacated hook after a kill, with room left for the reap
        assert!(LEASE + RENEW_EVERY <= Duration::from_millis(900));
    }
}

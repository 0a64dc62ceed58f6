//! The Lua scripts: each operation is one atomic script, so id assignment, retention and the
//! PUBLISH can never be seen half done by another instance.
//!
//! Ids are microsecond timestamps taken from the Redis clock, bumped by one when two events fall
//! in the same microsecond: `id = max(last id + 1, TIME in µs)`. They order events across every
//! topic (one sequence per prefix), like an `INCR` would, and two more things follow:
//! - the age of an id is known, so history can tell "this topic had no event after your id" from
//!   "its events expired" (see [`HISTORY`]);
//! - ids keep rising when Redis restarts empty, so an id from before the restart is recognised
//!   (it is below `{prefix}epoch`) instead of colliding with new events.

use std::sync::Arc;

use redis::{ErrorKind, RedisError, Script, Value};

use super::payload::{decode, Malformed};
use crate::broker::{Delivery, History};
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::topic::Topic;

/// `KEYS`: seq, epoch, stream, the topic's state hash, and optionally a dedupe key. `ARGV`:
/// channel, event, category ("" for none), data, replay (events kept per topic, 0 = off), ttl
/// in seconds, ttl in microseconds, dedupe window in seconds, retain ("1" to keep the event as
/// state, else "0"), retain key, retain ttl in milliseconds (0 = none).
/// Returns the new id as a string; with a dedupe key that exists, the id it holds, and nothing
/// is published (`Broker::publish_once`).
///
/// A retained event is stored in the topic's state hash (field: the retain key; value: its
/// expiry in µs of the Redis clock, 0 for none, a newline, then the payload) in the same script
/// that assigns its id and publishes it, so the stored value and the live stream agree on the
/// order. The hash expires with its longest-lived value; values that expired inside a hash
/// that lives on are skipped and deleted by [`STATE`].
///
/// Cost: one round trip (EVALSHA); inside, TIME, GET, SET (+ SET epoch once per dataset),
/// with replay XADD + XTRIM + EXPIRE, and PUBLISH; with a dedupe key GET and SET EX; retained,
/// EXISTS, PTTL, HSET and PERSIST or PEXPIRE.
pub(super) const PUBLISH: &str = r#"
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then return first end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local id = math.max(last + 1, now)
local sid = string.format('%d', id)
redis.call('SET', KEYS[1], sid)
if last == 0 then redis.call('SET', KEYS[2], sid) end
local payload = sid .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4]
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], sid .. '-0', 'p', payload)
  redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', now - tonumber(ARGV[7])))
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
if ARGV[9] == '1' then
  local ttl = tonumber(ARGV[11])
  local expires = 0
  if ttl > 0 then expires = now + ttl * 1000 end
  local existed = redis.call('EXISTS', KEYS[4])
  local left = redis.call('PTTL', KEYS[4])
  redis.call('HSET', KEYS[4], ARGV[10], string.format('%d', expires) .. '\n' .. payload)
  if ttl == 0 then
    redis.call('PERSIST', KEYS[4])
  elseif existed == 0 or (left >= 0 and left < ttl) then
    redis.call('PEXPIRE', KEYS[4], ttl)
  end
end
redis.call('PUBLISH', ARGV[1], payload)
if KEYS[5] then redis.call('SET', KEYS[5], sid, 'EX', ARGV[8]) end
return sid
"#;

/// `KEYS`: the state hashes of topics (all in one slot on a cluster). No `ARGV`. Returns
/// `{topic index, payload, ...}`: the current retained values, each as published; values past
/// their expiry are deleted instead.
///
/// Cost: one round trip (EVALSHA); inside, TIME, HGETALL per topic, HDEL per expired value.
pub(super) const STATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local all = redis.call('HGETALL', KEYS[i])
  for j = 1, #all, 2 do
    local value = all[j + 1]
    local nl = string.find(value, '\n', 1, true)
    local expires = tonumber(string.sub(value, 1, nl - 1))
    if expires > 0 and expires <= now then
      redis.call('HDEL', KEYS[i], all[j])
    else
      out[#out + 1] = i
      out[#out + 1] = string.sub(value, nl + 1)
    end
  end
end
return out
"#;

/// `KEYS`: seq, epoch, then one stream per topic. `ARGV`: after (decimal id), horizon in µs
/// (retention time minus a safety margin). Returns `{complete, last, {topic index, payload, ...}}`
/// where `last` is the newest id issued (decimal): every later event has a higher id, so it is
/// where a client resumes after a reset. Called with no stream key, it only reads the position.
///
/// A dataset that issued no id yet (new, or restarted empty) starts its sequence and epoch at
/// the current time here, so that a reset can name a position that every later event is above
/// and that history then vouches for: a client resuming from it is not reset again.
///
/// History is complete (no `livepush.reset`) only when all of these hold:
/// 1. `after` is not above the sequence (else: an id this Redis never issued, e.g. Redis
///    restarted empty, a failover lost the newest writes, or a bogus id);
/// 2. `after` is not below the epoch, the first id of this Redis dataset (else: events between
///    `after` and the restart are gone);
/// 3. for each topic whose stream exists, when every retained entry is newer than `after`:
///    no entry was ever trimmed (`entries-added` = `length` in `XINFO STREAM`, Redis ≥ 7;
///    trimming removes the oldest entries, so a trimmed entry may lie after `after`, unless
///    `after` is just below the first entry, as the id of a reset is; note that Redis 7.0 does
///    not update `max-deleted-entry-id` when trimming, only on XDEL, which is checked too), and
///    `after` is younger than the horizon measured from the first entry (else an earlier copy of
///    the stream may have expired whole before this one was created);
/// 4. for each topic without a stream: `after` is younger than the horizon (else the stream may
///    have expired, taking events after `after` with it).
///
/// The rule errs on the side of a spurious reset: a client told to reset re-fetches its state,
/// a client not told about a loss shows wrong data.
///
/// Cost: one round trip (EVALSHA); inside, GET ×2, TIME, and per topic EXISTS, then XINFO STREAM
/// and XRANGE when the stream exists.
pub(super) const HISTORY: &str = r#"
local after = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch
if last == 0 then
  last = now
  redis.call('SET', KEYS[1], string.format('%d', last))
  redis.call('SET', KEYS[2], string.format('%d', last))
  epoch = last
else
  epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local slast = string.format('%d', last)
if after > last then return {0, slast, {}} end
local complete = 1
if after < epoch then complete = 0 end
local out = {}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    local deleted, added, length = 0, 0, 0
    for j = 1, #info, 2 do
      local name = info[j]
      if name == 'max-deleted-entry-id' then
        deleted = tonumber(string.match(info[j + 1], '^(%d+)'))
      elseif name == 'entries-added' then
        added = info[j + 1]
      elseif name == 'length' then
        length = info[j + 1]
      end
    end
    if deleted > after then complete = 0 end
    local entries = redis.call('XRANGE', KEYS[i], '(' .. ARGV[1] .. '-0', '+')
    if #entries == length then
      if length > 0 then
        local first = tonumber(string.match(entries[1][1], '^(%d+)'))
        if added > length and after < first - 1 then complete = 0 end
        if after <= first - horizon then complete = 0 end
      elseif added > 0 then
        complete = 0
      end
    end
    for _, entry in ipairs(entries) do
      out[#out + 1] = i - 2
      out[#out + 1] = entry[2][2]
    end
  elseif after <= now - horizon then
    complete = 0
  end
end
return {complete, slast, out}
"#;

/// `KEYS`: the slot set of one cap key. `ARGV`: member, limit, lease in ms. Returns 1 when the
/// slot was taken, 0 when the key is full.
///
/// Cost: one round trip (EVALSHA); inside, TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, PEXPIRE.
pub(super) const ACQUIRE_SLOT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// `KEYS`: slot sets. `ARGV`: lease in ms, then for each key the number of members this instance
/// holds there followed by the members. Extends every lease; a member that expired meanwhile (a
/// long outage, a Redis restart) is added back, because its connection is still open.
///
/// Cost: one round trip per refresh period for all keys; inside, ZADD per member, PEXPIRE per key.
pub(super) const REFRESH_SLOTS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local a = 2
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('ZADD', KEYS[i], now + lease, ARGV[a])
    a = a + 1
  end
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 1
"#;

/// The scripts, hashed once. `redis::Script` sends EVALSHA and falls back to loading the script
/// when Redis answers NOSCRIPT (after a restart, for example).
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) history: Script,
    pub(super) acquire_slot: Script,
    pub(super) refresh_slots: Script,
    pub(super) state: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            publish: Script::new(PUBLISH),
            history: Script::new(HISTORY),
            acquire_slot: Script::new(ACQUIRE_SLOT),
            refresh_slots: Script::new(REFRESH_SLOTS),
            state: Script::new(STATE),
        }
    }

    /// The scripts of a Redis Cluster: the same, with `SPUBLISH` (a shard channel, delivered
    /// only inside the slot's shard) for `PUBLISH` (copied to every node of the cluster).
    pub(super) fn sharded() -> Self {
        Scripts {
            publish: Script::new(&PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")),
            ..Scripts::new()
        }
    }
}

/// The reply of [`HISTORY`] for `topics` (the stream keys it was given, in order): whether the
/// history is complete, the position, and `(topic index, payload)` pairs, parsed into events in
/// id order. A payload in an unknown format is skipped, and counted on the hub of `delivery`
/// (`None` before the broker is started: no hub to count on yet).
pub(super) fn parse_history(
    topics: &[Topic],
    (complete, last, raw): (i64, String, Vec<Value>),
    delivery: Option<&Delivery>,
) -> Result<History, RedisError> {
    let protocol =
        |what: &str| RedisError::from((ErrorKind::Parse, "history script", what.to_owned()));
    let last: EventId = last
        .parse()
        .map_err(|_| protocol("the position is not an id"))?;
    let mut events = parse_events(topics, &raw, delivery)?;
    events.sort_by_key(|e| e.id());
    events.dedup_by_key(|e| e.id());
    Ok(History {
        events,
        complete: complete == 1,
        last,
    })
}

/// `(topic index, payload)` pairs of a script's reply ([`HISTORY`], [`STATE`]) for `topics` (the
/// keys it was given, in order), decoded into events; a payload in an unknown format is
/// skipped, and counted on the hub of `delivery`.
pub(super) fn parse_events(
    topics: &[Topic],
    raw: &[Value],
    delivery: Option<&Delivery>,
) -> Result<Vec<Arc<Envelope>>, RedisError> {
    let protocol =
        |what: &str| RedisError::from((ErrorKind::Parse, "livepush script", what.to_owned()));
    let mut events = Vec::with_capacity(raw.len() / 2);
    for pair in raw.chunks_exact(2) {
        let (Value::Int(index), Value::BulkString(payload)) = (&pair[0], &pair[1]) else {
            return Err(protocol("unexpected history reply"));
        };
        let topic = usize::try_from(*index - 1)
            .ok()
            .and_then(|i| topics.get(i))
            .ok_or_else(|| protocol("history names an unknown topic"))?;
        match decode(topic.clone(), payload) {
            Ok(envelope) => events.push(Arc::new(envelope)),
            Err(Malformed) => {
                tracing::warn!(%topic, "skipping a retained event in an unknown format");
                if let Some(delivery) = delivery {
                    delivery.malformed_payload();
                }
            }
        }
    }
    Ok(events)
}

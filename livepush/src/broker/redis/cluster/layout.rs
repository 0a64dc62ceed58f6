//! Where topics live on a Redis Cluster: partitions, their hash tags, and key and channel names.
//!
//! A topic belongs to partition `fnv1a(topic) mod P` (`broker/partitioned.rs`, shared with NATS). Every key and shard channel of a partition
//! carries the partition's hash tag, so one publish (sequence, stream, channel, dedupe key) is
//! one script on one shard. The tags are not `{0}`…`{P-1}`: CRC16 of short decimal strings
//! clusters in the slot space (centrifuge#554: half of a 16-node cluster idle). Instead the slot
//! space is cut into P equal ranges and partition `p`'s tag is the first string `"{p}.{n}"`
//! (n = 0, 1, …) whose slot falls in range `p`, so the partitions are spread as evenly as the
//! slots are; a cluster created by `redis-cli --cluster create` gives each master an equal range,
//! hence an equal share of partitions (±1). The search costs about P CRC16s per partition, once,
//! when the broker is built, and gives the same tags in every process.

use std::collections::HashMap;

use redis::cluster_async::ClusterConnection;
use redis::RedisError;

use crate::broker::redis::engine::{Fault, Shard};
use crate::broker::BrokerError;
use crate::topic::Topic;

/// Hash slots of Redis Cluster.
pub(super) const SLOTS: u32 = 16384;

/// The slot Redis Cluster assigns `key` (CRC16/XMODEM of the hash tag, or of the whole key).
fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    (crc16(hashed) % SLOTS as u16) & 0x3fff
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Partition count, hash tags and names.
pub(super) struct Layout {
    pub(super) prefix: String,
    tags: Vec<String>,
    by_tag: HashMap<String, u32>,
}

impl Layout {
    pub(super) fn new(prefix: &str, count: u32) -> Result<Layout, BrokerError> {
        if prefix.contains(['{', '}']) {
            return Err(BrokerError::Unavailable(
                "on Redis Cluster the key prefix must not hold { or } (they choose hash slots)"
                    .into(),
            ));
        }
        if !(1..=crate::broker::partitioned::MAX_PARTITIONS).contains(&count) {
            return Err(BrokerError::InvalidAddress(
                "invalid Redis URL: partitions must be 1 to 1296".into(),
            ));
        }
        let tags: Vec<String> = (0..count).map(|p| tag(p, count)).collect();
        let by_tag = tags
            .iter()
            .enumerate()
            .map(|(p, t)| (t.clone(), p as u32))
            .collect();
        Ok(Layout {
            prefix: prefix.to_owned(),
            tags,
            by_tag,
        })
    }

    pub(super) fn count(&self) -> u32 {
        self.tags.len() as u32
    }

    /// The slot of partition `p`'s keys and channels.
    pub(super) fn slot_of(&self, p: u32) -> u16 {
        slot(self.seq(p).as_bytes())
    }

    /// The topic and partition of a shard channel of ours.
    pub(super) fn topic_of_channel(&self, channel: &[u8]) -> Option<(Topic, u32)> {
        let rest = std::str::from_utf8(channel)
            .ok()?
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?;
        let (tag, rest) = rest.split_once('}')?;
        let p = *self.by_tag.get(tag)?;
        let topic = Topic::new(rest.strip_prefix("topic:")?).ok()?;
        (self.partition_of(&topic) == p).then_some((topic, p))
    }
}

impl Shard for Layout {
    fn partition_of(&self, topic: &Topic) -> u32 {
        crate::broker::partitioned::partition_of(topic, self.count())
    }
    fn base(&self, p: u32) -> String {
        format!("{}{{{}}}", self.prefix, self.tags[p as usize])
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }

    const NAME: &'static str = "Redis Cluster";
    const CHANNELS: &'static str = "shard channels";
    /// Cap keys lie in different slots: one script each.
    const REFRESH_BATCH: usize = 1;
    type Conn = ClusterConnection;

    /// `redis-rs` reconnects nodes itself: a connection failure only wakes the listener, which
    /// re-checks the subscriptions.
    fn fault(e: &RedisError) -> Fault {
        let connection = e.is_io_error()
            || e.is_unrecoverable_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_cluster_error();
        if connection {
            Fault::Check
        } else {
            Fault::Command
        }
    }
}

/// The hash tag of partition `p` of `count`: the first `"{p}.{n}"` whose slot lies in the
/// `p`-th of `count` equal slot ranges.
fn tag(p: u32, count: u32) -> String {
    let low = u64::from(p) * u64::from(SLOTS) / u64::from(count);
    let high = (u64::from(p) + 1) * u64::from(SLOTS) / u64::from(count);
    let mut n = 0u64;
    loop {
        let candidate = format!("{p}.{n}");
        let s = u64::from(crc16(candidate.as_bytes()) % SLOTS as u16);
        if (low..high).contains(&s) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_redis_cluster_slots() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"{}x"), crc16(b"{}x") % 16384);
    }

    #[test]
    fn spreads_partition_tags_over_the_slot_space() {
        for count in [1u32, 3, 16, 64, 1296] {
            let layout = Layout::new("app:", count).unwrap();
            for p in 0..count {
                let s = u32::from(slot(layout.seq(p).as_bytes()));
                let (low, high) = (p * SLOTS / count, (p + 1) * SLOTS / count);
                assert!(
                    (low..high).contains(&s),
                    "partition {p} of {count} at slot {s}"
                );
                // every name of a partition lands in its slot
                let topic = Topic::new("t").unwrap();
                assert_eq!(u32::from(slot(layout.stream(p, &topic).as_bytes())), s);
                assert_eq!(u32::from(slot(layout.channel(p, &topic).as_bytes())), s);
            }
        }
        // three equal masters get 5 or 6 of 16 partitions each
        let layout = Layout::new("livepush:", 16).unwrap();
        let mut per_master = [0; 3];
        for p in 0..16 {
            let s = u32::from(slot(layout.seq(p).as_bytes()));
            per_master[(s * 3 / SLOTS) as usize] += 1;
        }
        assert!(
            per_master.iter().all(|&n| (5..=6).contains(&n)),
            "{per_master:?}"
        );
    }

    #[test]
    fn maps_channels_back_to_topics() {
        let layout = Layout::new("app:", 16).unwrap();
        let topic = Topic::new("user:7").unwrap();
        let p = layout.partition_of(&topic);
        let channel = layout.channel(p, &topic);
        assert_eq!(
            layout.topic_of_channel(channel.as_bytes()),
            Some((topic.clone(), p))
        );
        let wrong = layout.channel((p + 1) % 16, &topic);
        assert_eq!(layout.topic_of_channel(wrong.as_bytes()), None);
        assert_eq!(layout.topic_of_channel(b"other:{0.0}topic:x"), None);
        assert!(Layout::new("a{b}:", 16).is_err());
        assert!(Layout::new("a:", 0).is_err());
    }
}

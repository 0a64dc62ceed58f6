//! Brokers with one id sequence per partition (Redis Cluster, NATS with `?partitions=N`).
//!
//! With one sequence (memory, one Redis) an id orders every event of a subscription, so the id
//! of the last event a client saw is its whole position. With one sequence per partition (so
//! that publishes spread over shards) two topics of one connection may lie in two partitions,
//! whose ids say nothing about each other. The broker answers per partition (positions,
//! readiness, history); the core keeps a connection's position in each partition of its topics
//! and writes it as the connection's `id:` line (`position.rs`, `backlog.rs`).

use async_trait::async_trait;

use super::{BrokerError, History};
use crate::event::EventId;
use crate::topic::Topic;

/// A broker whose ids come from several sequences, one per partition of the topic space
/// (the position encoding is described in `docs/multi-instance.md`). The hub asks [`Broker::partitioned`](super::Broker::partitioned)
/// for it and then encodes per-connection positions instead of plain ids where needed.
#[async_trait]
pub trait Partitioned: Send + Sync {
    /// The number of partitions (1 to 1296).
    fn partitions(&self) -> u32;

    /// The partition of `topic`, below [`Partitioned::partitions`]; the same in every process.
    fn partition_of(&self, topic: &Topic) -> u32;

    /// The newest id of each of `partitions` (where a connection that has seen nothing of them
    /// yet stands).
    async fn positions(&self, partitions: &[u32]) -> Result<Vec<EventId>, BrokerError>;

    /// Like [`Broker::ready`](super::Broker::ready) for one partition: the broker can publish
    /// there and delivers the watched topics of it to this process. The hub's retry buffer
    /// drains each partition once this answers `Ok`, so a partition whose shard is down holds
    /// back only its own publications.
    async fn partition_ready(&self, partition: u32) -> Result<(), BrokerError>;

    /// Like [`Broker::history`](super::Broker::history), for `topics` that all lie in `partition`.
    async fn partition_history(
        &self,
        partition: u32,
        topics: &[Topic],
        after: EventId,
    ) -> Result<History, BrokerError>;
}

/// The most partitions a broker may have (a position names each partition in base 36, two
/// digits: `docs/multi-instance.md`).
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) const MAX_PARTITIONS: u32 = 1296;

/// The partition of `topic` among `count`: `fnv1a(topic) mod count`, the same in every process
/// and for every partitioned broker (Redis Cluster, NATS), so a topic keeps its partition when a
/// deployment moves from one to the other with the same count.
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) fn partition_of(topic: &Topic, count: u32) -> u32 {
    fnv1a(topic.as_str().as_bytes()) % count.max(1)
}

#[cfg(any(feature = "redis", feature = "nats"))]
fn fnv1a(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in data {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(all(test, any(feature = "redis", feature = "nats")))]
mod tests {
    use super::*;

    #[test]
    fn topics_spread_over_partitions_the_same_way_every_time() {
        let topic = Topic::new("orders:42").unwrap();
        assert_eq!(partition_of(&topic, 1), 0);
        assert_eq!(partition_of(&topic, 16), partition_of(&topic, 16));
        // FNV-1a of "a" is 0xe40c292c (the published test vector)
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        let mut seen = [0u32; 4];
        for n in 0..400 {
            seen[partition_of(&Topic::new(format!("t.{n}")).unwrap(), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }
}

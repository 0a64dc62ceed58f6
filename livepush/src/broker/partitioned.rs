//! Brokers with one id sequence per partition (Redis Cluster).
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

//! Where the stream stands: the value a client sends back as `Last-Event-ID`.

use crate::event::EventId;

/// A stream position: the value a client sends back as `Last-Event-ID` (and a list endpoint
/// sends as `Livepush-Cursor`) to get what was published after it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamPosition {
    /// One id sequence (memory, one Redis): the newest id.
    Id(EventId),
    /// A partitioned broker (Redis Cluster): the newest id of every partition, encoded
    /// `{P}.{p}-{seq}...` in base 36 (see `docs/multi-instance.md`); about 13 bytes per
    /// partition.
    Partitions(String),
}

impl StreamPosition {
    /// The plain id, when the position is one.
    pub fn id(&self) -> Option<EventId> {
        match self {
            StreamPosition::Id(id) => Some(*id),
            StreamPosition::Partitions(_) => None,
        }
    }
}

impl std::fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamPosition::Id(id) => id.fmt(f),
            StreamPosition::Partitions(vector) => f.write_str(vector),
        }
    }
}

//! What the recording broker keeps of each publication, and how a failure message lists them.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::event::{EventId, EventName};
use crate::topic::Topic;

/// One publication the broker accepted, with the id it got.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Recorded {
    /// The id the broker assigned.
    pub id: EventId,
    /// The topic.
    pub topic: Topic,
    /// The SSE event name.
    pub event: EventName,
    /// The category, if any.
    pub category: Option<String>,
    /// The payload as published (compact JSON).
    pub data: Bytes,
}

impl Recorded {
    /// The payload as a JSON value (`Value::Null` when it is not JSON).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.data).unwrap_or(Value::Null)
    }

    /// The payload read into `T`.
    ///
    /// # Panics
    /// When the payload is not a `T`, with the publication in the message.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.data).unwrap_or_else(|error| {
            panic!(
                "published data is not a {}: {error}\n  publication: {self}",
                std::any::type_name::<T>()
            )
        })
    }
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` on `{}`", self.event, self.topic)?;
        if let Some(category) = &self.category {
            write!(f, " (category `{category}`)")?;
        }
        write!(f, ": {}", String::from_utf8_lossy(&self.data))
    }
}

/// One line per publication, numbered, for failure messages.
pub(super) fn listing(log: &[Recorded]) -> String {
    if log.is_empty() {
        return "  (nothing)".to_owned();
    }
    log.iter()
        .enumerate()
        .map(|(i, p)| format!("  {}. {p}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

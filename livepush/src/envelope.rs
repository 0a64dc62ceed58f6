//! What a broker carries: a [`Publication`] (an event without an id yet) and the [`Envelope`]
//! it becomes once it has an id, with its SSE frame encoded once for every subscriber.

use bytes::Bytes;

use crate::event::{EventId, EventName};
use crate::sse;
use crate::state::Retain;
use crate::topic::Topic;

/// What a publisher hands to the broker: an event without an id yet.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Where it goes.
    pub topic: Topic,
    /// The SSE `event:` name.
    pub event: EventName,
    /// The category, for `?category=` filters.
    pub category: Option<String>,
    /// The compact JSON payload.
    pub data: Bytes,
    /// `Some` for state: the broker keeps it as the current value of its topic (or of a key
    /// inside it), which new subscribers get first (see [`Retain`]).
    pub retain: Option<Retain>,
}

/// One event with its id, and its SSE frame encoded once for every subscriber.
#[derive(Debug)]
pub struct Envelope {
    id: EventId,
    topic: Topic,
    event: EventName,
    category: Option<String>,
    data: Bytes,
    frame: Bytes,
}

impl Envelope {
    /// Assigns `id` to a publication and encodes its frame.
    pub fn new(id: EventId, publication: Publication) -> Self {
        let frame = sse::event(id, &publication.event, &publication.data);
        Envelope {
            id,
            topic: publication.topic,
            event: publication.event,
            category: publication.category,
            data: publication.data,
            frame,
        }
    }

    /// The event id.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The SSE event name.
    pub fn event(&self) -> &EventName {
        &self.event
    }

    /// The category, if any.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// The JSON payload.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The encoded SSE frame (`id:`, `event:`, `data:` lines and the blank line).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

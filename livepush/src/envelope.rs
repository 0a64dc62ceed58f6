//! What a broker carries: a [`Publication`] (an event without an id yet) and the [`Envelope`]
//! it becomes once it has an id, with its SSE frame encoded once for every subscriber.

use bytes::Bytes;

use crate::event::{EventId, EventName};
use crate::sse;
use crate::state::Retain;
use crate::topic::Topic;
use crate::trace::Trace;

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
    /// Where it was published, for the delivery spans of every instance (feature `otel`;
    /// zero-sized without it): [`Trace::current`] where it is published, [`Trace::NONE`] for
    /// none.
    pub trace: Trace,
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
    trace: Trace,
    /// A notice of livepush's own (presence): its frame has no `id:` line, it was never
    /// published through the broker, and it is never a duplicate of replayed history.
    notice: bool,
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
            trace: publication.trace,
            notice: false,
        }
    }

    /// A notice on `topic` (a presence event): a frame without `id:`, so it does not move the
    /// client's `Last-Event-ID`; its id reads 0.
    pub(crate) fn notice(topic: Topic, event: EventName, data: Bytes) -> Self {
        let frame = sse::notice(&event, &data);
        Envelope {
            id: EventId::new(0),
            topic,
            event,
            category: None,
            data,
            frame,
            trace: Trace::NONE,
            notice: true,
        }
    }

    /// Whether this is a notice of livepush's own, without an `id:` ([`Envelope::notice`]).
    pub(crate) fn is_notice(&self) -> bool {
        self.notice
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

    /// The trace context it was published with (empty without the `otel` feature).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The encoded SSE frame (`id:`, `event:`, `data:` lines and the blank line).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

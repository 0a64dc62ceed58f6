//! The payload of a stored event: the Redis engine's wire format without its first line (the
//! id), `{event}\n{category}\n{data}`. On NATS the id is the stream sequence, which the server
//! assigns on storing and sends along in a header (live) or the stored message (history), so
//! it cannot be part of the payload the publisher writes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::broker::Delivery;
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;
use crate::trace::Trace;

/// The payload of `publication`.
pub(super) fn encode(publication: &Publication) -> Bytes {
    let category = publication.category.as_deref().unwrap_or("");
    let event = publication.trace.event_line(&publication.event);
    let mut out =
        BytesMut::with_capacity(event.len() + category.len() + publication.data.len() + 2);
    out.put_slice(event.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(category.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(&publication.data);
    out.freeze()
}

/// The event stored as `payload` with sequence `id`. Another producer may publish to the same
/// subjects, so nothing is trusted: the names are validated like ours, and a payload that is
/// not well formed is dropped and counted on `delivery`'s hub
/// (`livepush_broker_malformed_payloads_total`).
pub(super) fn decode(
    topic: Topic,
    id: u64,
    payload: &[u8],
    delivery: Option<&Delivery>,
) -> Option<Envelope> {
    let envelope = decode_checked(topic, id, payload);
    if envelope.is_none() {
        if let Some(delivery) = delivery {
            delivery.malformed_payload();
        }
        tracing::warn!(id, "ignoring a NATS message in an unknown format");
    }
    envelope
}

fn decode_checked(topic: Topic, id: u64, payload: &[u8]) -> Option<Envelope> {
    let mut parts = payload.splitn(3, |&b| b == b'\n');
    let (event, trace) = Trace::split(std::str::from_utf8(parts.next()?).ok()?);
    let event = crate::event::EventName::new(event).ok()?;
    let category = std::str::from_utf8(parts.next()?).ok()?;
    let data = Bytes::copy_from_slice(parts.next()?);
    if !category.is_empty() {
        crate::event::validate_name(category).ok()?;
    }
    let category = (!category.is_empty()).then(|| category.to_owned());
    Some(Envelope::new(
        EventId::new(id),
        Publication {
            topic,
            event,
            category,
            data,
            trace,
            retain: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_an_event() {
        let topic = Topic::new("t").unwrap();
        let publication = Publication {
            trace: crate::trace::Trace::NONE,
            topic: topic.clone(),
            event: crate::EventName::from_static("created"),
            category: Some("billing".to_owned()),
            data: Bytes::from_static(b"{\"a\":\"x\ny\"}"),
            retain: None,
        };
        let e = decode(topic.clone(), 7, &encode(&publication), None).unwrap();
        assert_eq!(e.id(), EventId::new(7));
        assert_eq!(e.event(), "created");
        assert_eq!(e.category(), Some("billing"));
        assert_eq!(e.data().as_ref(), b"{\"a\":\"x\ny\"}");
        for bad in [
            &b""[..],
            b"e\n",
            b"\n\n{}",
            b"e\rid: 9\n\n{}",
            b"e\nbad category\n{}",
        ] {
            assert!(decode(topic.clone(), 1, bad, None).is_none(), "{bad:?}");
        }
    }

    /// Without a trace context the payload is byte for byte what it was before; with one
    /// (feature `otel`) the context comes back, and a reader without the feature skips it.
    #[test]
    fn a_trace_context_costs_no_byte_when_absent_and_round_trips_when_present() {
        let topic = Topic::new("t").unwrap();
        let plain = Publication {
            topic: topic.clone(),
            event: crate::EventName::from_static("created"),
            category: None,
            data: Bytes::from_static(b"{}"),
            trace: Trace::NONE,
            retain: None,
        };
        assert_eq!(encode(&plain).as_ref(), b"created\n\n{}");
        let line = b"created 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 1733349000123456\n\n{}";
        let traced = decode(topic, 3, line, None).unwrap();
        assert_eq!(traced.event(), "created");
        assert_eq!(traced.trace().is_empty(), !cfg!(feature = "otel"));
        let again = Publication {
            trace: *traced.trace(),
            ..plain
        };
        let expected: &[u8] = if cfg!(feature = "otel") {
            line
        } else {
            b"created\n\n{}"
        };
        assert_eq!(encode(&again).as_ref(), expected);
    }
}

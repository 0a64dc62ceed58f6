//! The payload of a stored event: the Redis engine's wire format without its first line (the
//! id), `{event}\n{category}\n{data}`. On NATS the id is the stream sequence, which the server
//! assigns on storing and sends along in a header (live) or the stored message (history), so
//! it cannot be part of the payload the publisher writes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::broker::Delivery;
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;

/// The payload of `publication`.
pub(super) fn encode(publication: &Publication) -> Bytes {
    let category = publication.category.as_deref().unwrap_or("");
    let mut out = BytesMut::with_capacity(
        publication.event.len() + category.len() + publication.data.len() + 2,
    );
    out.put_slice(publication.event.as_bytes());
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
    let event = crate::event::EventName::new(std::str::from_utf8(parts.next()?).ok()?).ok()?;
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
}

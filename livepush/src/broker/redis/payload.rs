//! The payload of a published event, the same on the channel and in the stream entry (see the
//! wire format in `single/mod.rs`'s documentation; a Redis Cluster uses it unchanged).

use bytes::Bytes;

use crate::broker::Delivery;
use crate::envelope::{Envelope, Publication};
use crate::event::EventId;
use crate::topic::Topic;
use crate::trace::Trace;

/// A broker payload that is not a well-formed event (a bad id, an invalid event or category
/// name, broken framing). The decoder runs below any hub, so it only reports it: the caller
/// counts it on its hub's metrics ([`Delivery::malformed_payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Encodes nothing: the publish script builds the payload. Decodes `{id}\n{event}\n{category}\n{data}`,
/// where the event line may carry the event's trace context ([`crate::trace`]).
///
/// Another producer may write to the same channels, so nothing is trusted: the event and
/// category names are validated like ours ([`crate::EventName`]), and a payload that is not
/// well formed is [`Malformed`]: the caller drops and counts it
/// (`livepush_broker_malformed_payloads_total`), never writes it to a stream.
pub(crate) fn decode(topic: Topic, payload: &[u8]) -> Result<Envelope, Malformed> {
    decode_checked(topic, payload).ok_or(Malformed)
}

/// [`decode`] for a live message on `channel`: a payload in an unknown format is logged with the
/// channel it came on and counted on the hub of `delivery`.
pub(super) fn decode_live(
    topic: Topic,
    channel: &[u8],
    payload: &[u8],
    delivery: &Delivery,
) -> Option<Envelope> {
    let decoded = decode(topic, payload);
    if decoded.is_err() {
        tracing::warn!(channel = %String::from_utf8_lossy(channel), "ignoring a message in an unknown format");
        delivery.malformed_payload();
    }
    decoded.ok()
}

fn decode_checked(topic: Topic, payload: &[u8]) -> Option<Envelope> {
    let mut parts = payload.splitn(4, |&b| b == b'\n');
    let id = std::str::from_utf8(parts.next()?)
        .ok()?
        .parse::<EventId>()
        .ok()?;
    let (event, trace) = Trace::split(std::str::from_utf8(parts.next()?).ok()?);
    let event = crate::event::EventName::new(event).ok()?;
    let category = std::str::from_utf8(parts.next()?).ok()?;
    let data = Bytes::copy_from_slice(parts.next()?);
    if !category.is_empty() {
        crate::event::validate_name(category).ok()?;
    }
    let category = (!category.is_empty()).then(|| category.to_owned());
    Some(Envelope::new(
        id,
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
    fn decodes_the_wire_format() {
        let topic = Topic::new("t").unwrap();
        let e = decode(topic.clone(), b"42\ncreated\n\n{\"a\":\"x\ny\"}").unwrap();
        assert_eq!(e.id(), EventId::new(42));
        assert_eq!(e.event(), "created");
        assert_eq!(e.category(), None);
        assert_eq!(e.data().as_ref(), b"{\"a\":\"x\ny\"}");
        let e = decode(topic.clone(), b"7\ne\nbilling\n{}").unwrap();
        assert_eq!(e.category(), Some("billing"));
        for bad in [
            &b""[..],
            b"x\ne\n\n{}",
            b"1\ne\n",
            b"-1\ne\n\n{}",
            b"1\ne\rid: 9\n\n{}",
            b"1\n\n\n{}",
            b"1\ne\nbad category\n{}",
            b"1\ne\xff\n\n{}",
        ] {
            assert_eq!(decode(topic.clone(), bad).err(), Some(Malformed), "{bad:?}");
        }
    }

    /// A payload written before trace contexts (or with the feature off) reads as before; one
    /// with a context reads with it (feature `otel`) or skips it, and its frame is the same.
    #[test]
    fn payloads_with_and_without_a_trace_context_read_alike() {
        let topic = Topic::new("t").unwrap();
        let old = decode(topic.clone(), b"42\ncreated\n\n{}").unwrap();
        assert!(old.trace().is_empty());
        let traced = decode(
            topic,
            b"42\ncreated 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 1733349000123456\n\n{}",
        )
        .unwrap();
        assert_eq!(traced.event(), "created");
        assert_eq!(traced.frame(), old.frame());
        assert_eq!(traced.trace().is_empty(), !cfg!(feature = "otel"));
        #[cfg(feature = "otel")]
        assert_eq!(
            traced.trace().traceparent().as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }
}

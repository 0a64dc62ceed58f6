//! The SSE protocol as livepush speaks it: the event names of its own notices ([`LAGGED`],
//! [`RESET`], [`EXPIRED`]) and the wire format
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>).
//!
//! Frames are written by hand rather than with `axum::response::sse::Event` because that type is
//! built and encoded once per subscriber; here each event is encoded once into [`Bytes`] and
//! shared. The encoders are internal.

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::{EventId, EventName};

/// The event sent when a client missed events that were dropped for it (`livepush.lagged`,
/// `{"missed": N}`, no `id:`).
pub const LAGGED: EventName = EventName::from_static(LAGGED_NAME);
/// The event sent when a stream may have missed events (`livepush.reset`): the history no
/// longer reaches back to `Last-Event-ID`, or the broker lost events (see the guarantee table
/// in `docs/replay-and-guarantees.md`). It carries an `id:` to resume from and
/// `{"reason": ...}`; the client reloads its state and keeps the stream open.
pub const RESET: EventName = EventName::from_static(RESET_NAME);
/// The event a stream sends when its subscription expires (`livepush.expired`,
/// [`Subscription::until`](crate::Subscription::until)), just before it ends: `{"reason":
/// "expired"}`, no `id:`. The client gets fresh credentials and reconnects (with its
/// `Last-Event-ID`); a reconnect with the expired ones is refused like any unauthenticated
/// request.
pub const EXPIRED: EventName = EventName::from_static(EXPIRED_NAME);

/// The first event of a stream that asked for presence
/// ([`Subscription::presence_events`](crate::Subscription::presence_events)), once per topic:
/// `{"topic","count","connections","members":[{"key","connections","info"}]}`, no `id:`.
pub const PRESENCE: EventName = EventName::from_static("livepush.presence");
/// A member appeared on a topic (its first stream on any instance): `{"topic","key","info"}`,
/// no `id:`. Sent to streams that asked for presence events.
pub const JOIN: EventName = EventName::from_static("livepush.join");
/// A member disappeared from a topic (its last stream ended, after the grace period, or its
/// instance died): `{"topic","key","info"}`, no `id:`.
pub const LEAVE: EventName = EventName::from_static("livepush.leave");
/// Several members appeared or disappeared within one tick (at most about ten of these per
/// second per topic): `{"topic","joins":[{"key","info"}],"leaves":[{"key","info"}]}`, no `id:`.
pub const PRESENCE_DIFF: EventName = EventName::from_static("livepush.presence_diff");

pub(crate) const LAGGED_NAME: &str = "livepush.lagged";
pub(crate) const RESET_NAME: &str = "livepush.reset";
pub(crate) const EXPIRED_NAME: &str = "livepush.expired";

/// Encodes one event: `event:`, one `data:` line per line of `data`, `id:`, and a blank line.
///
/// `data` is split on `\r\n`, `\n` and `\r`, the three line ends SSE parsers accept, so no payload
/// can end a frame early or inject a field. `event` is an [`EventName`], so it holds no line end.
///
/// The `id:` line comes last, just before the blank line that dispatches the event. The HTML
/// standard's `EventSource` only adopts an id for reconnecting when the event is dispatched, so
/// the order does not matter to it; but a client that adopts the id as soon as it parses the
/// line (a common shortcut: the bench's load generator takes it) and loses its connection in
/// the middle of a frame would resume *after* an event it never got. With the id last, that
/// window is the frame's final byte instead of its whole body.
pub(crate) fn event(id: EventId, event: &EventName, data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + event.len() + 40);
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_u8(b'\n');
    put_data_lines(&mut buf, data);
    buf.put_slice(b"id: ");
    let mut digits = itoa_buf(id.get());
    buf.put_slice(digits.format());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// Encodes an event without an `id:` field (notices from livepush itself, such as a lag report),
/// so it does not move the client's `Last-Event-ID`.
pub(crate) fn notice(event: &EventName, data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + event.len() + 24);
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_u8(b'\n');
    put_data_lines(&mut buf, data);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// A comment line: what heartbeats are. Line ends in `text` are replaced by spaces.
pub(crate) fn comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    buf.put_slice(b": ");
    buf.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// The `retry:` field that tells `EventSource` how long to wait before reconnecting.
pub(crate) fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

fn put_data_lines(buf: &mut BytesMut, data: &[u8]) {
    let mut rest = data;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        buf.put_slice(b"data: ");
        match end {
            None => {
                buf.put_slice(rest);
                buf.put_u8(b'\n');
                return;
            }
            Some(at) => {
                buf.put_slice(&rest[..at]);
                buf.put_u8(b'\n');
                let skip = if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
            }
        }
    }
}

/// A stack buffer for formatting a `u64` without allocating.
struct ItoaBuf {
    bytes: [u8; 20],
    start: usize,
}

fn itoa_buf(mut n: u64) -> ItoaBuf {
    let mut bytes = [0u8; 20];
    let mut start = bytes.len();
    loop {
        start -= 1;
        bytes[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ItoaBuf { bytes, start }
}

impl ItoaBuf {
    fn format(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: EventName = EventName::from_static("e");

    #[test]
    fn encodes_id_event_and_one_data_line_per_line() {
        let name = EventName::new("created").unwrap();
        let f = event(EventId::new(7), &name, b"{\"a\":1}\nsecond");
        assert_eq!(
            &f[..],
            b"event: created\ndata: {\"a\":1}\ndata: second\nid: 7\n\n"
        );
    }

    #[test]
    fn splits_every_kind_of_line_end_into_data_lines() {
        let f = event(EventId::new(1), &E, b"a\r\nb\rc\nd");
        assert_eq!(
            &f[..],
            b"event: e\ndata: a\ndata: b\ndata: c\ndata: d\nid: 1\n\n"
        );
    }

    #[test]
    fn keeps_empty_and_trailing_lines() {
        assert_eq!(
            &event(EventId::new(0), &E, b"")[..],
            b"event: e\ndata: \nid: 0\n\n"
        );
        assert_eq!(
            &event(EventId::new(u64::MAX), &E, b"x\n")[..],
            b"event: e\ndata: x\ndata: \nid: 18446744073709551615\n\n"
        );
    }

    #[test]
    fn comments_cannot_inject_fields() {
        assert_eq!(&comment("a\nevent: x")[..], b": a event: x\n\n");
    }

    #[test]
    fn notices_have_no_id() {
        assert_eq!(
            &notice(&LAGGED, b"{}")[..],
            b"event: livepush.lagged\ndata: {}\n\n"
        );
    }

    /// Round trips through the WHATWG parser of `crate::testing`, which is written from the
    /// standard and not from these encoders.
    mod round_trip {
        use super::*;
        use crate::testing::{Frame, FrameParser};
        use proptest::prelude::*;
        use serde_json::Value;

        fn name() -> impl Strategy<Value = EventName> {
            "[A-Za-z0-9_.:/-]{1,128}".prop_map(|n| EventName::new(n).expect("the name charset"))
        }

        /// Text with every kind of line end (and lone CRs and LFs) among ordinary characters.
        fn text() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    4 => any::<char>().prop_map(String::from),
                    1 => prop::sample::select(vec!["\n", "\r", "\r\n", "\n\n", ":", " ", "data: x"])
                        .prop_map(String::from),
                ],
                0..24,
            )
            .prop_map(|parts| parts.concat())
        }

        /// JSON values whose strings hold line ends, as handlers publish them.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                text().prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(text(), inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// What a client reads from `wire` fed in chunks cut at `cuts`.
        fn read(wire: &[u8], cuts: &[prop::sample::Index]) -> Vec<Frame> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            at.extend([0, wire.len()]);
            at.sort_unstable();
            let mut parser = FrameParser::default();
            at.windows(2)
                .flat_map(|w| parser.feed(&wire[w[0]..w[1]]))
                .collect()
        }

        fn line_ends_as_lf(text: &str) -> String {
            text.replace("\r\n", "\n").replace('\r', "\n")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn events_read_back_as_published(
                events in proptest::collection::vec((any::<u64>(), name(), json()), 1..5),
                heartbeat in text(),
                retry_ms in any::<u64>(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut wire = retry(retry_ms).to_vec();
                for (id, name, value) in &events {
                    wire.extend_from_slice(&comment(&heartbeat));
                    let data = serde_json::to_vec(value).unwrap();
                    wire.extend_from_slice(&event(EventId::new(*id), name, &data));
                }
                let frames = read(&wire, &cuts);
                prop_assert_eq!(frames.len(), 1 + 2 * events.len());
                prop_assert_eq!(frames[0].retry, Some(retry_ms));
                prop_assert!(!frames[0].is_event());
                for (pair, (id, name, value)) in frames[1..].chunks(2).zip(&events) {
                    let (beat, got) = (&pair[0], &pair[1]);
                    prop_assert!(!beat.is_event());
                    prop_assert_eq!(beat.comments.len(), 1);
                    prop_assert_eq!(got.id.clone(), Some(id.to_string()));
                    prop_assert_eq!(got.event_name(), name.as_str());
                    prop_assert_eq!(&got.json::<Value>(), value);
                    prop_assert!(got.comments.is_empty());
                }
            }

            #[test]
            fn any_text_data_reads_back_with_line_ends_as_lf(
                id in any::<u64>(),
                name in name(),
                data in text(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut wire = event(EventId::new(id), &name, data.as_bytes()).to_vec();
                wire.extend_from_slice(&notice(&LAGGED, data.as_bytes()));
                let frames = read(&wire, &cuts);
                prop_assert_eq!(frames.len(), 2);
                let expected = line_ends_as_lf(&data);
                prop_assert_eq!(frames[0].data.as_deref(), Some(expected.as_str()));
                prop_assert_eq!(frames[0].id.clone(), Some(id.to_string()));
                prop_assert_eq!(frames[0].event_name(), name.as_str());
                prop_assert_eq!(frames[1].data.as_deref(), Some(expected.as_str()));
                prop_assert_eq!(frames[1].id.clone(), None);
            }

            #[test]
            fn comments_read_back_as_one_line(text in text()) {
                let frames = read(&comment(&text), &[]);
                prop_assert_eq!(frames.len(), 1);
                let expected = text.replace(['\r', '\n'], " ");
                prop_assert_eq!(&frames[0].comments, &vec![expected]);
            }
        }
    }
}

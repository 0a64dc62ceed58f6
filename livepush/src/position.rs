//! The per-connection position on a broker with one id sequence per partition (Redis Cluster,
//! NATS with `?partitions=N`: [`Partitioned`](crate::broker::Partitioned)): what lets one `Last-Event-ID` cover topics of
//! several partitions, how it is parsed from the header and written as the `id:` line.
//!
//! # Why a position, not an id
//! With one sequence (memory, one Redis) an id orders every event of a subscription, so the id
//! of the last event a client saw is its whole position. With one sequence per partition (so
//! that publishes spread over shards) two topics of one connection may lie in two partitions,
//! whose ids say nothing about each other; the browser still keeps one `Last-Event-ID`. So the
//! `id:` line a connection is sent names its position in each partition its topics lie in.
//!
//! # Encoding (what the `id:` line holds)
//! - **Every topic of the connection in one partition**: the plain decimal id of that
//!   partition's sequence, exactly as on one Redis (`id: 1796371200000123`), so the event's frame
//!   is sent as encoded once for everyone.
//! - **Several partitions**: `{P}.{p}-{seq}.{p}-{seq}...` in lowercase base 36: `P` the
//!   partition count of the deployment, then, sorted by partition, each partition `p` of the
//!   connection's topics with the last id of it the connection was sent (or was reset to). Only
//!   this line is written per connection; the rest of the frame (`event:`, `data:`) is the one
//!   shared [`Envelope::frame`] minus its `id:` line, sliced, not copied.
//!
//! Redis Cluster ids are Redis-clock microseconds (NATS's, stream sequences, are shorter):
//! 16 decimal digits, 10 base-36 digits until 2085, so with
//! `P` ≤ 36 one partition costs 13 bytes (`.`, digit, `-`, ten digits) and the `id:` line of an
//! event costs 21 bytes for one partition (today's), 32 bytes for two and 110 bytes for eight
//! (`"id: "` + 1 + 13·k + `"\n"`). Work per delivery on a multi-partition connection: one map
//! lookup (topic → partition), one base-36 formatting of the new id, one copy of the line.
//!
//! # What an unknown position gets
//! A plain id on a connection whose topics span several partitions is taken as the position in
//! each of them (ids are times: "what came after this moment"); a vector with another partition
//! count (another deployment, or `P` changed) or a partition missing from the vector count as
//! position 0 for those partitions, which the history check of every
//! partition answers with `livepush.reset` (0 is below every partition's epoch), once: the reset
//! carries a position the deployment issued. Ids of a single Redis (a deployment moved to a
//! cluster) are below the epochs of the cluster's partitions, so they get one reset too.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::envelope::Envelope;
use crate::event::EventId;
use crate::topic::Topic;

/// Longest accepted `Last-Event-ID` vector, in bytes (1296 partitions of 13 bytes would be
/// 17 kB; a header that long is refused anyway).
const MAX_VECTOR_LEN: usize = 8192;

/// A `Last-Event-ID` as sent by the client: a plain id or a position vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastEventId {
    /// A decimal id (one sequence, or one partition).
    Plain(EventId),
    /// `{P}.{p}-{seq}...`: partition count and (partition, id) pairs.
    Vector(u32, Vec<(u32, EventId)>),
}

impl LastEventId {
    /// Parses a header value; `None` for text that is neither a plain id nor a well-formed
    /// vector (the caller answers 400 as for any malformed id).
    pub(crate) fn parse(s: &str) -> Option<LastEventId> {
        let s = s.trim();
        if let Ok(id) = s.parse::<EventId>() {
            return Some(LastEventId::Plain(id));
        }
        if s.len() > MAX_VECTOR_LEN
            || !s.contains('.')
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'-')
        {
            return None;
        }
        parse_vector(s)
    }

    /// The single id a broker with one sequence resumes from: a vector means nothing to it, and
    /// 0 is below every id it issued, so the client is reset once.
    pub(crate) fn plain(&self) -> EventId {
        match self {
            LastEventId::Plain(id) => *id,
            _ => EventId::new(0),
        }
    }

    /// The header as the client sent it, for a reset's `last_event_id`.
    pub(crate) fn as_sent(&self) -> String {
        match self {
            LastEventId::Plain(id) => id.to_string(),
            LastEventId::Vector(count, entries) => encode_vector(*count, entries.iter().copied()),
        }
    }

    /// Where the client stands in `partition` of a deployment of `count` partitions.
    pub(crate) fn at(&self, count: u32, partition: u32) -> EventId {
        match self {
            LastEventId::Plain(id) => *id,
            LastEventId::Vector(p, entries) if *p == count => entries
                .iter()
                .find(|(q, _)| *q == partition)
                .map_or(EventId::new(0), |(_, id)| *id),
            LastEventId::Vector(..) => EventId::new(0),
        }
    }
}

fn parse_vector(s: &str) -> Option<LastEventId> {
    let mut parts = s.split('.');
    let count = u32::try_from(base36_parse(parts.next()?)?).ok()?;
    let mut entries = Vec::new();
    for part in parts {
        let (p, id) = part.split_once('-')?;
        let p = u32::try_from(base36_parse(p)?).ok()?;
        if p >= count {
            return None;
        }
        entries.push((p, EventId::new(base36_parse(id)?)));
    }
    if entries.is_empty() {
        return None;
    }
    Some(LastEventId::Vector(count, entries))
}

fn base36_parse(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 13 {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => return None,
        };
        n = n.checked_mul(36)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

fn base36_push(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        let d = (n % 36) as u8;
        digits[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// The position vector `{count}.{p}-{id}...` of `entries` (sorted by partition).
pub(crate) fn encode_vector(
    count: u32,
    entries: impl IntoIterator<Item = (u32, EventId)>,
) -> String {
    let mut out = String::with_capacity(16);
    base36_push(&mut out, u64::from(count));
    for (p, id) in entries {
        out.push('.');
        base36_push(&mut out, u64::from(p));
        out.push('-');
        base36_push(&mut out, id.get());
    }
    out
}

/// One connection's position in each partition of its topics (only for connections whose topics
/// span several partitions); writes the `id:` line of each event it is sent.
#[derive(Debug)]
pub(crate) struct Position {
    count: u32,
    /// Sorted by partition.
    entries: Vec<(u32, EventId)>,
    /// Topic → index into `entries`.
    topics: HashMap<Topic, usize>,
}

impl Position {
    pub(crate) fn new(count: u32, topics: &[(Topic, u32)], at: impl Fn(u32) -> EventId) -> Self {
        let mut parts: Vec<u32> = topics.iter().map(|(_, p)| *p).collect();
        parts.sort_unstable();
        parts.dedup();
        let entries: Vec<(u32, EventId)> = parts.iter().map(|&p| (p, at(p))).collect();
        let topics = topics
            .iter()
            .map(|(t, p)| (t.clone(), parts.binary_search(p).unwrap_or(0)))
            .collect();
        Position {
            count,
            entries,
            topics,
        }
    }

    /// The `id:` value for the current position.
    pub(crate) fn encode(&self) -> String {
        encode_vector(self.count, self.entries.iter().copied())
    }

    /// Moves the partition of `topic` to `id` (an event of it, or a reset to it). A reset is
    /// addressed by one topic of its partition, maybe not one of this connection's: `place`
    /// names its partition then.
    fn advance(&mut self, topic: &Topic, id: EventId, place: &dyn Fn(&Topic) -> Option<u32>) {
        let index = match self.topics.get(topic) {
            Some(&i) => Some(i),
            None => place(topic).and_then(|p| self.entries.iter().position(|(q, _)| *q == p)),
        };
        if let Some(i) = index {
            self.entries[i].1 = id;
        }
    }

    /// The frame of `envelope` for this connection: its position as the `id:` line, then the
    /// shared rest of the frame.
    pub(crate) fn frame(&mut self, envelope: &Envelope) -> Bytes {
        self.frame_placed(envelope, &|_| None)
    }

    /// [`Position::frame`] for a current value of a state topic, which may be older than the
    /// position of its partition: the position moves forward to it, never back.
    pub(crate) fn frame_forward(&mut self, envelope: &Envelope) -> Bytes {
        if let Some(&i) = self.topics.get(envelope.topic()) {
            let at = &mut self.entries[i].1;
            *at = (*at).max(envelope.id());
        }
        self.ended(without_id(envelope.frame()))
    }

    fn frame_placed(
        &mut self,
        envelope: &Envelope,
        place: &dyn Fn(&Topic) -> Option<u32>,
    ) -> Bytes {
        self.advance(envelope.topic(), envelope.id(), place);
        self.ended(without_id(envelope.frame()))
    }

    /// `livepush.reset` with `data` at the current position: the notice sent before a replay
    /// when some partition's history cannot vouch for the client's position.
    pub(crate) fn reset(&self, data: &[u8]) -> Bytes {
        self.ended(without_id(&crate::sse::notice(&crate::sse::RESET, data)))
    }

    /// `body` (a frame without its `id:` line and blank line), then this position as the `id:`
    /// line and the blank line that ends the frame.
    fn ended(&self, body: &[u8]) -> Bytes {
        let line = self.encode();
        let mut buf = BytesMut::with_capacity(body.len() + line.len() + 6);
        buf.put_slice(body);
        buf.put_slice(b"id: ");
        buf.put_slice(line.as_bytes());
        buf.put_slice(b"\n\n");
        buf.freeze()
    }

    /// Appends the frames of `batch` to `out` (the stream's write path); `place` is the
    /// broker's partitioning.
    pub(crate) fn frames_into(
        &mut self,
        batch: &[Arc<Envelope>],
        out: &mut BytesMut,
        place: &dyn Fn(&Topic) -> Option<u32>,
    ) {
        for envelope in batch {
            if envelope.is_notice() {
                // no `id:` of its own, and no position to move
                out.extend_from_slice(envelope.frame());
                continue;
            }
            let frame = self.frame_placed(envelope, place);
            out.extend_from_slice(&frame);
        }
    }
}

/// A frame of `sse::event` or `sse::notice` without its `id:` line (the last line, when there is
/// one) and without the blank line that ends it: what a connection's own `id:` line and blank
/// line complete.
pub(crate) fn without_id(frame: &[u8]) -> &[u8] {
    let body = frame.strip_suffix(b"\n").unwrap_or(frame);
    let last = body[..body.len().saturating_sub(1)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if body[last..].starts_with(b"id: ") {
        &body[..last]
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Publication;
    use crate::event::EventName;

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    #[test]
    fn parses_plain_ids_and_vectors() {
        assert_eq!(
            LastEventId::parse("42"),
            Some(LastEventId::Plain(EventId::new(42)))
        );
        assert_eq!(
            LastEventId::parse("g.3-a.b-z"),
            Some(LastEventId::Vector(
                16,
                vec![(3, EventId::new(10)), (11, EventId::new(35))]
            ))
        );
        // neither a plain id nor a well-formed vector: refused like any malformed id
        for bad in [
            "",
            "-3",
            "abc",
            "1.5",
            "g.3",
            "g.h-1",
            "1.0-zzzzzzzzzzzzzz",
            "g.",
            "g.-1",
            "G.1-2",
            "1.2\r\nid: 3",
            "1,2",
        ] {
            assert_eq!(LastEventId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            LastEventId::parse("g.3-a").unwrap().plain(),
            EventId::new(0)
        );
    }

    #[test]
    fn a_vector_from_another_partition_count_is_position_zero() {
        let v = LastEventId::parse("g.3-a").unwrap();
        assert_eq!(v.at(16, 3), EventId::new(10));
        assert_eq!(v.at(16, 4), EventId::new(0), "a partition it does not name");
        assert_eq!(v.at(8, 3), EventId::new(0), "another deployment");
        assert_eq!(
            LastEventId::Plain(EventId::new(9)).at(16, 3),
            EventId::new(9)
        );
    }

    #[test]
    fn writes_the_position_as_the_id_line_and_shares_the_rest_of_the_frame() {
        let (a, b) = (topic("a"), topic("b"));
        let mut position = Position::new(16, &[(a.clone(), 3), (b.clone(), 11)], |p| {
            EventId::new(u64::from(p))
        });
        assert_eq!(position.encode(), "g.3-3.b-b");
        let envelope = Envelope::new(
            EventId::new(1_796_371_200_000_123),
            Publication {
                trace: crate::trace::Trace::NONE,
                topic: b.clone(),
                event: EventName::new("e").unwrap(),
                category: None,
                data: Bytes::from_static(b"{}"),
                retain: None,
            },
        );
        let frame = position.frame(&envelope);
        assert_eq!(
            &frame[..],
            b"event: e\ndata: {}\nid: g.3-3.b-hordjbjszf\n\n"
        );
        let line = frame
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"id: "))
            .unwrap();
        // "id: " + "g" + ".3-3" + ".b-" and ten digits + "\n"
        assert_eq!(line.len() + 1, 4 + 1 + 4 + 13 + 1);
        // the vector parses back to the same position
        let parsed = LastEventId::parse(std::str::from_utf8(&line[4..]).unwrap()).unwrap();
        assert_eq!(parsed.at(16, 11), EventId::new(1_796_371_200_000_123));
        assert_eq!(parsed.at(16, 3), EventId::new(3));
    }

    #[test]
    fn a_reset_addressed_by_another_topic_of_the_partition_moves_it() {
        let (a, b) = (topic("a"), topic("b"));
        let mut position = Position::new(16, &[(a, 3), (b, 11)], |_| EventId::new(1));
        let reset = Envelope::new(
            EventId::new(35),
            Publication {
                trace: crate::trace::Trace::NONE,
                topic: topic("other-topic-of-11"),
                event: crate::sse::RESET,
                category: None,
                data: Bytes::from_static(b"{}"),
                retain: None,
            },
        );
        let mut out = BytesMut::new();
        position.frames_into(&[Arc::new(reset)], &mut out, &|_| Some(11));
        assert!(
            out.starts_with(b"event: livepush.reset\n") && out.ends_with(b"\nid: g.3-1.b-z\n\n"),
            "{out:?}"
        );
    }

    #[test]
    fn id_line_bytes_per_event_at_1_2_and_8_partitions() {
        let now = 1_796_371_200_000_000u64;
        let plain = crate::sse::event(EventId::new(now), &EventName::new("e").unwrap(), b"");
        let plain_line = plain
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"id: "))
            .unwrap()
            .len()
            + 1;
        assert_eq!(plain_line, 21);
        for (k, bytes) in [(2u32, 32usize), (8, 110)] {
            let topics: Vec<(Topic, u32)> =
                (0..k).map(|p| (topic(&format!("t{p}")), p * 2)).collect();
            let position = Position::new(16, &topics, |_| EventId::new(now));
            assert_eq!(4 + position.encode().len() + 1, bytes, "{k} partitions");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A partition count and a vector of it: distinct partitions, sorted, any ids.
        fn vectors() -> impl Strategy<Value = (u32, Vec<(u32, EventId)>)> {
            (1u32..=1296).prop_flat_map(|count| {
                let entries = proptest::collection::btree_map(0..count, any::<u64>(), 1..12)
                    .prop_map(|m| m.into_iter().map(|(p, id)| (p, EventId::new(id))).collect());
                (Just(count), entries)
            })
        }

        proptest! {
            #[test]
            fn a_vector_parses_back_to_what_was_encoded((count, entries) in vectors()) {
                let line = encode_vector(count, entries.iter().copied());
                let parsed = LastEventId::parse(&line);
                prop_assert_eq!(parsed.clone(), Some(LastEventId::Vector(count, entries.clone())));
                prop_assert_eq!(parsed.map(|p| p.as_sent()), Some(line));
                for (p, id) in &entries {
                    prop_assert_eq!(LastEventId::Vector(count, entries.clone()).at(count, *p), *id);
                }
            }

            #[test]
            fn a_position_lists_its_partitions_in_order_and_moves_forward(
                (count, entries) in vectors(),
                later in any::<u64>(),
                pick in any::<prop::sample::Index>(),
            ) {
                // topics given in reverse partition order: the line is sorted anyway
                let placed: Vec<(Topic, u32)> =
                    entries.iter().rev().map(|(p, _)| (topic(&format!("t{p}")), *p)).collect();
                let start: HashMap<u32, EventId> = entries.iter().copied().collect();
                let mut position = Position::new(count, &placed, |p| start[&p]);
                let Some(LastEventId::Vector(_, listed)) = LastEventId::parse(&position.encode())
                else {
                    return Err(TestCaseError::fail("not a vector"));
                };
                prop_assert_eq!(&listed, &entries);
                // an event of one partition moves that partition only, to the event's id
                let (p, before) = entries[pick.index(entries.len())];
                let id = EventId::new(later.max(before.get()));
                let envelope = Envelope::new(id, crate::envelope::Publication {
                    trace: crate::trace::Trace::NONE,
                    topic: topic(&format!("t{p}")),
                    event: EventName::new("e").unwrap(),
                    category: None,
                    data: Bytes::from_static(b"{}"),
                    retain: None,
                });
                let frame = position.frame(&envelope);
                let line = frame.split(|&b| b == b'\n').find(|l| l.starts_with(b"id: ")).unwrap();
                let moved = LastEventId::parse(std::str::from_utf8(&line[4..]).unwrap()).unwrap();
                for (q, was) in &entries {
                    let now = moved.at(count, *q);
                    if *q == p {
                        prop_assert!(now >= *was);
                        prop_assert_eq!(now, id);
                    } else {
                        prop_assert_eq!(now, *was);
                    }
                }
            }

            #[test]
            fn base36_digits_order_like_the_ids(a in any::<u64>(), b in any::<u64>()) {
                let (mut x, mut y) = (String::new(), String::new());
                base36_push(&mut x, a);
                base36_push(&mut y, b);
                // shorter is smaller, then digit by digit: the order of the numbers
                prop_assert_eq!((x.len(), &x).cmp(&(y.len(), &y)), a.cmp(&b));
                prop_assert_eq!(base36_parse(&x), Some(a));
            }
        }
    }
}

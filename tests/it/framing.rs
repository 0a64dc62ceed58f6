//! The frame encoder against a real SSE parser (`eventsource-stream`), on thousands of generated
//! payloads full of line ends, field names and odd characters, split into arbitrary chunks: the
//! parser always gets back one event with the same id, name and data (line ends normalized to
//! `\n`, as the SSE spec prescribes). The same property is fuzzed by `fuzz/` (see docs/limits.md).

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use livepush::{frame, validate_name, EventId, Topic, Topics};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that stress SSE framing.
const PIECES: &[&str] = &[
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\r\r",
    "data: ",
    "data:",
    "event: x",
    "id: 9",
    "retry: 1",
    ":",
    ": c",
    " ",
    "a",
    "{\"k\":\"v\"}",
    "\u{0}",
    "é",
    "\u{2028}",
    "\u{feff}",
    "日本",
    "\t",
    "\\n",
];

fn payload(rng: &mut Rng) -> String {
    (0..rng.below(12))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

/// What an SSE parser must return for `data`: every line end becomes `\n`.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

async fn parse(bytes: &[u8], rng: &mut Rng) -> Vec<eventsource_stream::Event> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(16));
        chunks.push(Ok::<_, std::convert::Infallible>(
            bytes::Bytes::copy_from_slice(&rest[..n]),
        ));
        rest = &rest[n..];
    }
    futures_util::stream::iter(chunks)
        .eventsource()
        .map(|e| e.expect("the parser accepts every frame"))
        .collect()
        .await
}

#[tokio::test]
async fn every_generated_payload_round_trips_through_a_real_sse_parser() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let names = [
        "e",
        "comment_created",
        "sync.completed",
        "a:b/c-d",
        "livepush.lagged",
    ];
    for case in 0..3000 {
        let data = payload(&mut rng);
        let name = names[rng.below(names.len())];
        let id = EventId::new(rng.next() >> rng.below(64));
        // a heartbeat and a notice around the event must not disturb it
        let mut wire = frame::comment("heartbeat\nevent: fake").to_vec();
        let event_name = livepush::EventName::new(name).unwrap();
        wire.extend_from_slice(&frame::event(id, &event_name, data.as_bytes()));
        let lagged = livepush::EventName::from_static("livepush.lagged");
        wire.extend_from_slice(&frame::notice(&lagged, b"{\"missed\":1}"));
        let events = parse(&wire, &mut rng).await;
        assert_eq!(events.len(), 2, "case {case}: {data:?} -> {events:?}");
        assert_eq!(events[0].event, name, "case {case}: {data:?}");
        assert_eq!(events[0].id, id.to_string(), "case {case}: {data:?}");
        assert_eq!(events[0].data, normalized(&data), "case {case}: {data:?}");
        assert_eq!(events[1].event, "livepush.lagged");
    }
}

#[test]
fn parsers_never_panic_and_agree_with_the_topic_rules() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let input = payload(&mut rng) + &"a,".repeat(rng.below(4));
        let _ = validate_name(&input);
        let _ = input.parse::<EventId>();
        if let Ok(topic) = Topic::new(&input) {
            assert!(!topic.as_str().bytes().any(|b| b == b'\r'
                || b == b'\n'
                || b == 0
                || b == b' '
                || b == b','));
        }
        let list = Topics::parse_list(&input);
        for name in list.names() {
            assert!(
                !name.contains(',') && !name.is_empty() && name.trim() == name,
                "{name:?}"
            );
        }
    }
}

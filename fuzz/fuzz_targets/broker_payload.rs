//! Property: whatever another producer writes to a livepush channel, the Redis payload decoder
//! never panics, and what it accepts encodes to exactly one SSE event whose `id:` and `event:`
//! lines are the ones decoded: a CR, LF or NUL in a name cannot reach the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livepush::{EventName, Topic};

fuzz_target!(|payload: &[u8]| {
    let topic = Topic::new("t").expect("a valid topic");
    let Some(envelope) = livepush::__private::decode_broker_payload(topic, payload) else {
        return; // dropped and counted
    };
    let name = envelope.event().as_str();
    assert!(!name.is_empty() && name.len() <= EventName::MAX_LEN);
    assert!(name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b)));
    if let Some(category) = envelope.category() {
        assert!(!category.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0));
    }
    let frame = envelope.frame();
    // Fields only at the start of the frame: every other line is a `data:` line, and the frame
    // ends with the one blank line that ends the event.
    let text = frame.as_ref();
    assert!(text.ends_with(b"\n\n"));
    let body = &text[..text.len() - 1];
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!body[..body.len() - 1].contains(&b'\r'));
    assert_eq!(lines[0], format!("id: {}", envelope.id()).as_bytes());
    assert_eq!(lines[1], format!("event: {name}").as_bytes());
    assert!(lines[2..].iter().all(|l| l.starts_with(b"data: ")));
});

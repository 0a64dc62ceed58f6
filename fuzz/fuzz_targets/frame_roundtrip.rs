//! Property: whatever the payload, an SSE parser reads the encoded frame back as exactly one event
//! with the same id and name, and the payload with its line ends normalized to `\n`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livepush::__private::frame;
use livepush::{EventId, EventName};

/// One parsed SSE event: (id, event name, data).
type Parsed = (Option<Vec<u8>>, Vec<u8>, Vec<u8>);

/// A parser written from the WHATWG SSE spec, independent of the encoder.
fn parse(stream: &[u8]) -> Vec<Parsed> {
    let mut events = Vec::new();
    let (mut id, mut name, mut data): (Option<Vec<u8>>, Vec<u8>, Vec<u8>) =
        (None, Vec::new(), Vec::new());
    let mut has_data = false;
    let mut rest = stream;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match rest.get(end) {
            Some(b'\r') if rest.get(end + 1) == Some(&b'\n') => 2,
            Some(_) => 1,
            None => 0,
        };
        rest = &rest[end + skip..];
        if skip == 0 {
            break; // an unterminated last line is discarded
        }
        if line.is_empty() {
            if has_data {
                data.pop(); // the last LF
                events.push((
                    id.clone(),
                    std::mem::take(&mut name),
                    std::mem::take(&mut data),
                ));
            }
            has_data = false;
            name.clear();
            data.clear();
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let v = &line[at + 1..];
                (&line[..at], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
                has_data = true;
            }
            b"event" => name = value.to_vec(),
            b"id" if !value.contains(&0) => id = Some(value.to_vec()),
            _ => {}
        }
    }
    events
}

fn normalized(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.push(b'\n');
                i += 2;
                continue;
            }
            b'\r' => out.push(b'\n'),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 9 {
        return;
    }
    let id = EventId::new(u64::from_le_bytes(
        input[..8].try_into().unwrap_or_default(),
    ));
    // The next bytes up to a 0xff are a candidate event name; names are validated before encoding.
    let rest = &input[8..];
    let split = rest.iter().position(|&b| b == 0xff).unwrap_or(0);
    let candidate = std::str::from_utf8(&rest[..split]).unwrap_or("");
    let name = EventName::new(candidate).unwrap_or(EventName::from_static("e"));
    let data = &rest[(split + 1).min(rest.len())..];

    let mut wire = frame::comment(&String::from_utf8_lossy(data)).to_vec();
    wire.extend_from_slice(&frame::event(id, &name, data));
    let events = parse(&wire);
    assert_eq!(events.len(), 1, "one frame is one event: {wire:?}");
    let (got_id, got_name, got_data) = &events[0];
    assert_eq!(got_id.as_deref(), Some(id.to_string().as_bytes()));
    assert_eq!(got_name.as_slice(), name.as_bytes());
    assert_eq!(got_data, &normalized(data));
});

//! Property: topic parsing never panics, and whatever it accepts cannot break an SSE frame, a
//! `?topic=a,b` list or a Redis key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livepush::error::TopicError;
use livepush::{Topic, Topics};

fuzz_target!(|input: &str| {
    match Topic::new(input) {
        Ok(topic) => {
            let s = topic.as_str();
            assert!(!s.is_empty() && s.len() <= Topic::MAX_LEN);
            assert!(s.bytes().all(|b| b.is_ascii_graphic() && b != b','));
            assert_eq!(Topic::new(s).as_ref(), Ok(&topic));
        }
        Err(TopicError::Empty) => assert!(input.is_empty()),
        Err(TopicError::TooLong { len, max }) => assert!(len > max && len == input.len()),
        Err(TopicError::InvalidChar { at, .. }) => assert!(at < input.len()),
        Err(other) => panic!("a single topic cannot fail with {other:?}"),
    }
    let list = Topics::parse_list(input);
    let names = list.names();
    for (i, name) in names.iter().enumerate() {
        assert!(!name.is_empty() && !name.contains(',') && name.trim() == name);
        assert!(!names[..i].contains(name), "duplicates are removed");
    }
    if let Ok(topics) = list.validate(32) {
        assert!(!topics.is_empty() && topics.len() <= 32);
    }
});

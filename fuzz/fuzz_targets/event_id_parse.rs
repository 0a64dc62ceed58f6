//! Property: `Last-Event-ID` parsing never panics, accepts only decimal ids (surrounding
//! whitespace aside), and what it accepts prints back to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livepush::EventId;

fuzz_target!(|input: &str| {
    if let Ok(id) = input.parse::<EventId>() {
        let trimmed = input.trim();
        assert!(!trimmed.is_empty() && trimmed.len() <= 20);
        assert!(trimmed.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        assert_eq!(
            trimmed.trim_start_matches('0').parse::<u64>().unwrap_or(0),
            id.get()
        );
    }
});

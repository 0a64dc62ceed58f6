//! Topics: 1 to [`MAX_LEN`] bytes of ASCII letters, digits and [`PUNCTUATION`].
//!
//! Anything else (spaces, commas, CR, LF, NUL, non-ASCII) is refused, so a topic can never break
//! an SSE frame, a `?topic=a,b` list or a Redis key.

/// The longest topic, in bytes.
pub const MAX_LEN: usize = 256;

/// The characters a topic may hold besides ASCII letters and digits.
pub const PUNCTUATION: &str = "_-.:/@#=+~*";

/// Whether `byte` may appear in a topic.
pub const fn is_topic_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'_' | b'-' | b'.' | b':' | b'/' | b'@' | b'#' | b'=' | b'+' | b'~' | b'*'
        )
}

/// The first character of `text` that a topic may not hold, with its byte offset.
pub fn first_invalid_char(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|&(_, c)| !(c.is_ascii() && is_topic_byte(c as u8)))
}

/// Why a topic was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The topic is empty.
    Empty,
    /// The topic is `len` bytes long, more than [`MAX_LEN`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The topic holds `found` at byte `at`.
    InvalidChar {
        /// The refused character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks `topic`: emptiness first, then its length, then its characters.
pub fn check(topic: &str) -> Result<(), Problem> {
    if topic.is_empty() {
        return Err(Problem::Empty);
    }
    if topic.len() > MAX_LEN {
        return Err(Problem::TooLong { len: topic.len() });
    }
    match first_invalid_char(topic) {
        Some((at, found)) => Err(Problem::InvalidChar { found, at }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_lists_exactly_the_allowed_symbols() {
        let symbols: String = (0u8..=127)
            .filter(|b| is_topic_byte(*b) && !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        let mut listed: Vec<char> = PUNCTUATION.chars().collect();
        listed.sort_unstable();
        assert_eq!(symbols, listed.into_iter().collect::<String>());
    }

    #[test]
    fn checks_emptiness_length_then_characters() {
        assert_eq!(check("user:7/feed@eu#1=+~*"), Ok(()));
        assert_eq!(check(""), Err(Problem::Empty));
        assert_eq!(check(&"a".repeat(MAX_LEN)), Ok(()));
        assert_eq!(
            check(&" ".repeat(MAX_LEN + 1)),
            Err(Problem::TooLong { len: MAX_LEN + 1 })
        );
        assert_eq!(
            check("a,é"),
            Err(Problem::InvalidChar { found: ',', at: 1 })
        );
        assert_eq!(first_invalid_char("ab\u{e9}"), Some((2, 'é')));
    }
}

//! Event and category names: 1 to [`MAX_LEN`] bytes of ASCII letters, digits and
//! [`PUNCTUATION`].
//!
//! An event name is written on the SSE `event:` line, so whitespace, CR and LF could break or
//! forge frames; they are never allowed.

/// The longest event or category name, in bytes.
pub const MAX_LEN: usize = 128;

/// The characters a name may hold besides ASCII letters and digits.
pub const PUNCTUATION: &str = "_.:/-";

/// Whether `byte` may appear in a name.
pub const fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'/' | b'-')
}

/// Whether `name` is a valid name; usable in `const` contexts.
pub const fn is_valid(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > MAX_LEN {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if !is_name_byte(name[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The name is empty.
    Empty,
    /// The name holds `found` at byte `at`.
    InvalidChar {
        /// The refused character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name is `len` bytes long, more than [`MAX_LEN`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Checks `name`: emptiness first, then its characters (the more useful report when a long
/// name also holds a space), then its length. Refuses exactly what [`is_valid`] refuses.
pub fn check(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::Empty);
    }
    if let Some((at, found)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii() && is_name_byte(c as u8)))
    {
        return Err(Problem::InvalidChar { found, at });
    }
    if name.len() > MAX_LEN {
        return Err(Problem::TooLong { len: name.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_is_valid_agree() {
        let long = "a".repeat(MAX_LEN);
        let too_long = "a".repeat(MAX_LEN + 1);
        for name in [
            "created",
            "sync.completed",
            "a:b/c-d",
            "0",
            "",
            "a b",
            "a\nb",
            "café",
            "{id}",
            "a,b",
            &long,
            &too_long,
        ] {
            assert_eq!(check(name).is_ok(), is_valid(name.as_bytes()), "{name:?}");
        }
    }

    #[test]
    fn reports_a_bad_character_before_the_length() {
        let long = format!("{} x", "a".repeat(MAX_LEN));
        assert_eq!(
            check(&long),
            Err(Problem::InvalidChar {
                found: ' ',
                at: MAX_LEN
            })
        );
        assert_eq!(
            check(&"a".repeat(MAX_LEN + 1)),
            Err(Problem::TooLong { len: MAX_LEN + 1 })
        );
    }

    #[test]
    fn punctuation_lists_exactly_the_allowed_symbols() {
        let symbols: String = (0u8..=127)
            .filter(|b| is_name_byte(*b) && !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        let mut listed: Vec<char> = PUNCTUATION.chars().collect();
        listed.sort_unstable();
        assert_eq!(symbols, listed.into_iter().collect::<String>());
    }
}

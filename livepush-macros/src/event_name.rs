//! The rule for event and category names, checked at compile time.
//!
//! The same rule as `livepush::validate_name`: 1 to 128 bytes of ASCII letters, digits and
//! `_ . : / -`. An event name is written on the SSE `event:` line, so whitespace, CR and LF could
//! break or forge frames; they are refused here, before the program exists.

use std::fmt;

use syn::LitStr;

use crate::errors::Errors;

/// The longest event or category name, in bytes (all allowed characters are ASCII).
pub(crate) const MAX_LEN: usize = 128;

/// What names the checked name in messages.
#[derive(Clone, Copy)]
pub(crate) enum NameKind {
    Event,
    Category,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Event => "event name",
            NameKind::Category => "category",
        })
    }
}

/// Why a name was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    LineBreak { found: char, at: usize },
    Whitespace { found: char, at: usize },
    Disallowed { found: char, at: usize },
    TooLong { len: usize },
}

/// Checks `name` against the rule; the first problem found wins.
pub(crate) fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((at, found)) = name.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(match found {
            '\r' | '\n' => NameError::LineBreak { found, at },
            c if c.is_whitespace() => NameError::Whitespace { found, at },
            _ => NameError::Disallowed { found, at },
        });
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    Ok(())
}

/// Checks the name written in `lit`, with an error on the literal.
pub(crate) fn check_literal(lit: &LitStr, kind: NameKind, errors: &mut Errors) {
    if let Err(error) = validate(&lit.value()) {
        errors.spanned(lit, error.message(kind));
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

impl NameError {
    /// The message for a name of `kind`.
    pub(crate) fn message(&self, kind: NameKind) -> String {
        const RULE: &str = "use 1 to 128 ASCII letters, digits and `_ . : / -`";
        match self {
            NameError::Empty => format!("{kind} must not be empty: {RULE}"),
            NameError::LineBreak { found, at } => format!(
                "{kind} contains a line break ({found:?} at byte {at}), which would break the SSE frame: {RULE}"
            ),
            NameError::Whitespace { found, at } => {
                format!("{kind} contains whitespace ({found:?} at byte {at}): {RULE}")
            }
            NameError::Disallowed { found, at } => {
                format!("{kind} contains {found:?} at byte {at}, which is not allowed: {RULE}")
            }
            NameError::TooLong { len } => format!("{kind} is {len} bytes long; the limit is {MAX_LEN}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_shapes() {
        for name in [
            "created",
            "comment_created",
            "sync.completed",
            "a:b/c-d",
            "X",
            "0",
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
        assert_eq!(validate(&"a".repeat(MAX_LEN)), Ok(()));
    }

    #[test]
    fn refuses_empty_and_overlong_names() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(
            validate(&"a".repeat(MAX_LEN + 1)),
            Err(NameError::TooLong { len: 129 })
        );
    }

    #[test]
    fn refuses_line_breaks_that_would_forge_frames() {
        assert_eq!(
            validate("a\nb"),
            Err(NameError::LineBreak { found: '\n', at: 1 })
        );
        assert_eq!(
            validate("a\r"),
            Err(NameError::LineBreak { found: '\r', at: 1 })
        );
        assert_eq!(
            validate("ok\ndata: forged"),
            Err(NameError::LineBreak { found: '\n', at: 2 })
        );
    }

    #[test]
    fn refuses_whitespace_and_other_characters() {
        assert_eq!(
            validate("a b"),
            Err(NameError::Whitespace { found: ' ', at: 1 })
        );
        assert_eq!(
            validate("\tx"),
            Err(NameError::Whitespace { found: '\t', at: 0 })
        );
        assert_eq!(
            validate("a,b"),
            Err(NameError::Disallowed { found: ',', at: 1 })
        );
        assert_eq!(
            validate("a\0"),
            Err(NameError::Disallowed { found: '\0', at: 1 })
        );
        assert_eq!(
            validate("café"),
            Err(NameError::Disallowed { found: 'é', at: 3 })
        );
        assert_eq!(
            validate("{id}"),
            Err(NameError::Disallowed { found: '{', at: 0 })
        );
    }

    #[test]
    fn a_bad_character_is_reported_before_the_length() {
        let long = format!("{} x", "a".repeat(MAX_LEN));
        assert!(matches!(validate(&long), Err(NameError::Whitespace { .. })));
    }

    #[test]
    fn messages_name_the_kind_and_the_character() {
        let message = validate("a\nb").unwrap_err().message(NameKind::Event);
        assert!(
            message.starts_with("event name contains a line break ('\\n' at byte 1)"),
            "{message}"
        );
        let message = validate("").unwrap_err().message(NameKind::Category);
        assert!(
            message.starts_with("category must not be empty"),
            "{message}"
        );
    }
}

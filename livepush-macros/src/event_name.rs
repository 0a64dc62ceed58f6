//! The rule for event and category names ([`livepush_core::name`]), checked at compile time.
//!
//! An event name is written on the SSE `event:` line, so whitespace, CR and LF could break or
//! forge frames; they are refused here, before the program exists.

use std::fmt;

use livepush_core::name::{self, Problem};
use syn::LitStr;

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

/// Checks `name`, with the message for a name of `kind` when it is refused.
pub(crate) fn check(name: &str, kind: NameKind) -> Result<(), String> {
    name::check(name).map_err(|problem| message(problem, kind))
}

/// The name written in `lit`, checked, with an error on the literal.
pub(crate) fn check_literal(lit: &LitStr, kind: NameKind) -> syn::Result<String> {
    let name = lit.value();
    check(&name, kind).map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(name)
}

fn message(problem: Problem, kind: NameKind) -> String {
    let rule = format!(
        "use 1 to {} ASCII letters, digits and `{}`",
        name::MAX_LEN,
        spaced(name::PUNCTUATION)
    );
    match problem {
        Problem::Empty => format!("{kind} must not be empty: {rule}"),
        Problem::InvalidChar {
            found: found @ ('\r' | '\n'),
            at,
        } => format!(
            "{kind} contains a line break ({found:?} at byte {at}), which would break the SSE frame: {rule}"
        ),
        Problem::InvalidChar { found, at } if found.is_whitespace() => {
            format!("{kind} contains whitespace ({found:?} at byte {at}): {rule}")
        }
        Problem::InvalidChar { found, at } => {
            format!("{kind} contains {found:?} at byte {at}, which is not allowed: {rule}")
        }
        Problem::TooLong { len } => {
            format!("{kind} is {len} bytes long; the limit is {}", name::MAX_LEN)
        }
    }
}

/// `_ . : / -` from `_.:/-`.
fn spaced(symbols: &str) -> String {
    let chars: Vec<String> = symbols.chars().map(String::from).collect();
    chars.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Result<(), String> {
        check(name, NameKind::Event)
    }

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
            assert_eq!(event(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn messages_name_the_kind_the_character_and_the_rule() {
        assert_eq!(
            event("a\nb").unwrap_err(),
            "event name contains a line break ('\\n' at byte 1), which would break the SSE frame: use 1 to 128 ASCII letters, digits and `_ . : / -`"
        );
        assert_eq!(
            event("a b").unwrap_err(),
            "event name contains whitespace (' ' at byte 1): use 1 to 128 ASCII letters, digits and `_ . : / -`"
        );
        assert!(event("café")
            .unwrap_err()
            .starts_with("event name contains 'é' at byte 3, which is not allowed"));
        assert!(check("", NameKind::Category)
            .unwrap_err()
            .starts_with("category must not be empty"));
        assert_eq!(
            event(&"a".repeat(129)).unwrap_err(),
            "event name is 129 bytes long; the limit is 128"
        );
    }
}

//! Topic templates: `"ticket:{id}"` is the literal `ticket:` then the placeholder `id`.
//!
//! `{{` and `}}` are literal braces; any other `{` opens a placeholder that the next `}` closes. A
//! placeholder is a name (`id`, or raw: `r#type`), optionally dotted (`user.id`), never a format
//! spec. The macros parse templates to generate the code that fills them; the runtime parses the
//! registered ones to tell whether a topic is one of them ([`matches()`]).

use std::fmt;

/// A run of literal text (braces unescaped), or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A placeholder: its dotted names, without any `r#` prefix.
    Hole(Vec<String>),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{` at byte `at` that no `}` closes.
    Unclosed {
        /// Its byte offset.
        at: usize,
    },
    /// A `}` at byte `at` that no `{` opened.
    Unopened {
        /// Its byte offset.
        at: usize,
    },
    /// `{}` at byte `at`.
    Empty {
        /// Its byte offset.
        at: usize,
    },
    /// `{...}` whose content is not a (dotted) name.
    Invalid {
        /// What is between the braces.
        content: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed { at } => write!(
                f,
                "unbalanced `{{` at byte {at} of the topic template: close the placeholder with `}}`, or write `{{{{` for a literal brace"
            ),
            TemplateError::Unopened { at } => write!(
                f,
                "unbalanced `}}` at byte {at} of the topic template: no `{{` opens it; write `}}}}` for a literal brace"
            ),
            TemplateError::Empty { at } => write!(
                f,
                "empty placeholder `{{}}` at byte {at} of the topic template: name a handler argument or a field, like `{{id}}`"
            ),
            TemplateError::Invalid { content } if content.contains(':') => write!(
                f,
                "placeholder `{{{content}}}` has a format spec, which topic templates do not support: write `{{name}}`"
            ),
            TemplateError::Invalid { content } => write!(
                f,
                "placeholder `{{{content}}}` is not a name: write an argument or field name, optionally dotted like `{{user.id}}`"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Parses `text` into its pieces, collecting every error.
pub fn parse(text: &str) -> Result<Vec<Piece>, Vec<TemplateError>> {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.next_if(|&(_, next)| next == '{').is_some() => literal.push('{'),
            '}' if chars.next_if(|&(_, next)| next == '}').is_some() => literal.push('}'),
            '}' => errors.push(TemplateError::Unopened { at }),
            '{' => {
                let start = at + 1;
                // A placeholder ends at the next `}`; another `{` first means this one is unclosed.
                let end = text[start..].find(['{', '}']).map(|i| start + i);
                match end {
                    Some(end) if text.as_bytes()[end] == b'}' => {
                        while chars.next_if(|&(i, _)| i <= end).is_some() {}
                        match placeholder(&text[start..end], at) {
                            Ok(names) => {
                                if !literal.is_empty() {
                                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                                }
                                pieces.push(Piece::Hole(names));
                            }
                            Err(error) => errors.push(error),
                        }
                    }
                    _ => errors.push(TemplateError::Unclosed { at }),
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    if errors.is_empty() {
        Ok(pieces)
    } else {
        Err(errors)
    }
}

fn placeholder(content: &str, at: usize) -> Result<Vec<String>, TemplateError> {
    if content.is_empty() {
        return Err(TemplateError::Empty { at });
    }
    content
        .split('.')
        .map(name)
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| TemplateError::Invalid {
            content: content.to_owned(),
        })
}

/// An ASCII identifier, written plain or raw (`r#type`), as the name without `r#`.
fn name(segment: &str) -> Option<String> {
    let bare = segment.strip_prefix("r#").unwrap_or(segment);
    let mut chars = bare.chars();
    let first = chars.next()?;
    let word = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && bare != "_";
    // These keywords cannot be raw identifiers, so no argument or field can have them as names.
    let usable = !matches!(bare, "self" | "Self" | "super" | "crate");
    (word && usable).then(|| bare.to_owned())
}

/// The literal text of `pieces`, placeholders left out.
pub fn literal_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Text(text) => Some(text.as_str()),
            Piece::Hole(_) => None,
        })
        .collect()
}

/// Whether `topic` is `template` with each placeholder filled by a non-empty run of characters.
/// A template that does not parse matches nothing.
pub fn matches(template: &str, topic: &str) -> bool {
    parse(template).is_ok_and(|pieces| matches_pieces(&pieces, topic.as_bytes()))
}

fn matches_pieces(pieces: &[Piece], rest: &[u8]) -> bool {
    match pieces.split_first() {
        None => rest.is_empty(),
        Some((Piece::Text(text), tail)) => rest
            .strip_prefix(text.as_bytes())
            .is_some_and(|r| matches_pieces(tail, r)),
        Some((Piece::Hole(_), tail)) => (1..=rest.len()).any(|n| matches_pieces(tail, &rest[n..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(path: &str) -> Piece {
        Piece::Hole(path.split('.').map(String::from).collect())
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    #[test]
    fn splits_literal_text_and_placeholders() {
        assert_eq!(parse("ticket:{id}").unwrap(), [text("ticket:"), hole("id")]);
        assert_eq!(
            parse("{org}/{user.id}:feed").unwrap(),
            [hole("org"), text("/"), hole("user.id"), text(":feed")]
        );
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        assert_eq!(parse("a{{b}}c{id}").unwrap(), [text("a{b}c"), hole("id")]);
        assert_eq!(
            parse("{{{id}}}").unwrap(),
            [text("{"), hole("id"), text("}")]
        );
    }

    #[test]
    fn refuses_unbalanced_braces() {
        assert_eq!(
            parse("ticket:{id").unwrap_err(),
            [TemplateError::Unclosed { at: 7 }]
        );
        assert_eq!(
            parse("ticket:id}").unwrap_err(),
            [TemplateError::Unopened { at: 9 }]
        );
        assert_eq!(parse("{").unwrap_err(), [TemplateError::Unclosed { at: 0 }]);
        assert_eq!(parse("}").unwrap_err(), [TemplateError::Unopened { at: 0 }]);
        // `{a{b}`: the first `{` is unclosed, the second opens `{b}`.
        assert_eq!(
            parse("{a{b}").unwrap_err(),
            [TemplateError::Unclosed { at: 0 }]
        );
    }

    #[test]
    fn reports_every_problem_of_a_template() {
        assert_eq!(
            parse("}{}{a b}{x").unwrap_err(),
            [
                TemplateError::Unopened { at: 0 },
                TemplateError::Empty { at: 1 },
                TemplateError::Invalid {
                    content: "a b".into()
                },
                TemplateError::Unclosed { at: 8 },
            ]
        );
    }

    #[test]
    fn a_placeholder_is_a_dotted_identifier() {
        for bad in [
            "1a", "a-b", "a..b", ".a", "a.", "id:>4", "_", "self", "a.super", "é", " id",
        ] {
            assert_eq!(
                parse(&format!("t:{{{bad}}}")).unwrap_err(),
                [TemplateError::Invalid {
                    content: bad.into()
                }],
                "{bad}"
            );
        }
        assert_eq!(parse("{_id}").unwrap(), [hole("_id")]);
        assert_eq!(parse("{r#type}").unwrap(), [hole("type")]);
    }

    #[test]
    fn messages_say_how_to_fix_the_template() {
        let message = TemplateError::Unclosed { at: 3 }.to_string();
        assert!(message.starts_with("unbalanced `{` at byte 3"), "{message}");
        assert!(message.contains("`{{`"), "{message}");
        let message = TemplateError::Invalid {
            content: "id:>4".into(),
        }
        .to_string();
        assert!(message.contains("format spec"), "{message}");
        assert!(TemplateError::Empty { at: 0 }
            .to_string()
            .contains("`{id}`"));
    }

    #[test]
    fn templates_match_topics() {
        assert!(matches("comments", "comments"));
        assert!(!matches("comments", "comment"));
        assert!(matches("ticket:{id}", "ticket:42"));
        assert!(!matches("ticket:{id}", "ticket:"));
        assert!(matches("org:{org}:user:{id}", "org:a:b:user:7"));
        assert!(!matches("org:{org}:user:{id}", "org:a:team:7"));
        assert!(matches("lit{{x}}", "lit{x}"));
        assert!(!matches("ticket:{id", "ticket:{id"));
        assert_eq!(literal_text(&parse("a{b}c{{").unwrap()), "ac{");
    }
}

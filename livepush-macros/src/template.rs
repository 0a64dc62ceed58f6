//! Topic templates: `"ticket:{id}"` is the literal `ticket:` then the placeholder `id`.
//!
//! `{{` and `}}` are literal braces; any other `{` opens a placeholder that the next `}` closes. A
//! placeholder is a name (`id`), optionally dotted (`user.id`), never a format spec. The literal
//! parts must be valid topic text, so a topic such as `"user {id}"` is refused at compile time
//! rather than at every publish.

use std::fmt;

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote_spanned;
use syn::LitStr;

use crate::tokens::respan;

/// The longest topic, in bytes (the runtime's `MAX_TOPIC_LEN`).
const MAX_TOPIC_LEN: usize = 256;

/// Characters the runtime allows in a topic besides ASCII letters and digits.
const TOPIC_PUNCTUATION: &str = "_-.:/@#=+~*";

/// A parsed topic template.
#[derive(Debug)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    span: Span,
}

/// A run of literal text, or a placeholder.
#[derive(Debug, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    Hole(Placeholder),
}

/// `{name}` or `{a.b.c}`, with the span of the template literal that holds it.
#[derive(Debug, Clone)]
pub(crate) struct Placeholder {
    /// The dotted names, without any `r#` prefix.
    segments: Vec<String>,
    span: Span,
}

impl PartialEq for Placeholder {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments
    }
}

/// Why a template does not parse.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// A `{` that no `}` closes.
    Unclosed { at: usize },
    /// A `}` that no `{` opened.
    Unopened { at: usize },
    /// `{}`.
    Empty { at: usize },
    /// `{...}` whose content is not a (dotted) name.
    Invalid { content: String },
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

impl Template {
    /// Parses a topic template literal and checks its literal text against the topic rules,
    /// reporting every problem into `errors`; `None` when it cannot be used.
    pub(crate) fn parse_topic(
        topic: &LitStr,
        errors: &mut crate::errors::Errors,
    ) -> Option<Template> {
        let template = match Template::parse(topic) {
            Ok(template) => template,
            Err(error) => {
                errors.push(error);
                return None;
            }
        };
        for problem in template.topic_problems() {
            errors.spanned(topic, problem);
        }
        Some(template)
    }

    /// Parses the template in `lit`; every error is spanned on the literal.
    pub(crate) fn parse(lit: &LitStr) -> syn::Result<Template> {
        parse_str(&lit.value(), lit.span()).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| syn::Error::new(lit.span(), e))
                .reduce(|mut all, e| {
                    all.combine(e);
                    all
                })
                .unwrap_or_else(|| syn::Error::new(lit.span(), "invalid topic template"))
        })
    }

    /// The placeholders, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Hole(hole) => Some(hole),
            Piece::Text(_) => None,
        })
    }

    /// The pieces, in order.
    #[cfg(test)]
    fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// A `format!` string: the literal text with braces escaped, and `{}` for each placeholder.
    pub(crate) fn format_string(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(&text.replace('{', "{{").replace('}', "}}")),
                Piece::Hole(_) => out.push_str("{}"),
            }
        }
        out
    }

    /// The topic as a `String` expression: the literal text, or `format!` of `args`, one per
    /// placeholder in order.
    pub(crate) fn topic_expr(&self, args: &[TokenStream]) -> TokenStream {
        match self.as_literal() {
            Some(text) => quote_spanned!(self.span=> ::std::string::String::from(#text)),
            None => {
                let format = LitStr::new(&self.format_string(), self.span);
                quote_spanned!(self.span=> ::std::format!(#format, #(#args),*))
            }
        }
    }

    /// The literal text, when the template has no placeholder.
    pub(crate) fn as_literal(&self) -> Option<String> {
        match self.pieces.as_slice() {
            [] => Some(String::new()),
            [Piece::Text(text)] => Some(text.clone()),
            _ => None,
        }
    }

    /// What makes the literal text of this template an invalid topic (the runtime's rule):
    /// emptiness, a character outside ASCII letters, digits and `_ - . : / @ # = + ~ *`, or more
    /// literal text than a whole topic may hold.
    pub(crate) fn topic_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.pieces.is_empty() {
            problems.push("the topic must not be empty".to_owned());
        }
        let text: String = self
            .pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Text(text) => Some(text.as_str()),
                Piece::Hole(_) => None,
            })
            .collect();
        if let Some(found) = text.chars().find(|&c| !topic_char(c)) {
            let kind = if found.is_whitespace() {
                "whitespace "
            } else {
                ""
            };
            problems.push(format!(
                "the topic contains {kind}{found:?}, which topics do not allow: use ASCII letters, digits and `{TOPIC_PUNCTUATION}`"
            ));
        }
        if text.len() > MAX_TOPIC_LEN {
            problems.push(format!(
                "the topic template has {} bytes of literal text; a topic is at most {MAX_TOPIC_LEN} bytes",
                text.len()
            ));
        }
        problems
    }
}

fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || TOPIC_PUNCTUATION.contains(c)
}

impl Placeholder {
    /// The first name, which binds a handler argument or a field.
    pub(crate) fn root(&self) -> &str {
        &self.segments[0]
    }

    /// The names as identifiers spanned on the template literal, so that a name rustc cannot
    /// resolve ("no field `x`") is reported on the template.
    pub(crate) fn idents(&self) -> Vec<Ident> {
        self.segments
            .iter()
            .map(|s| name_ident(s, self.span))
            .collect()
    }

    /// The span of the template literal.
    pub(crate) fn span(&self) -> Span {
        self.span
    }

    /// `a.b`, spanned on the template literal: the placeholder as an expression on a binding.
    pub(crate) fn expr(&self) -> TokenStream {
        let idents = self.idents();
        quote_spanned!(self.span=> #(#idents).*)
    }

    /// `value.a.b`, spanned on the template literal (`value` included, so that an error about
    /// the whole expression, such as a field without `Display`, points at the template).
    pub(crate) fn field_of(&self, value: &Ident) -> TokenStream {
        let value = respan(value, self.span);
        let idents = self.idents();
        quote_spanned!(self.span=> #value #(.#idents)*)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.segments.join("."))
    }
}

/// Parses `text`, collecting every error. Placeholders get `span`.
pub(crate) fn parse_str(text: &str, span: Span) -> Result<Template, Vec<TemplateError>> {
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
                        match placeholder(&text[start..end], at, span) {
                            Ok(hole) => {
                                if !literal.is_empty() {
                                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                                }
                                pieces.push(Piece::Hole(hole));
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
        Ok(Template { pieces, span })
    } else {
        Err(errors)
    }
}

fn placeholder(content: &str, at: usize, span: Span) -> Result<Placeholder, TemplateError> {
    if content.is_empty() {
        return Err(TemplateError::Empty { at });
    }
    let segments: Option<Vec<String>> = content.split('.').map(name).collect();
    match segments {
        Some(segments) => Ok(Placeholder { segments, span }),
        None => Err(TemplateError::Invalid {
            content: content.to_owned(),
        }),
    }
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

/// The identifier for `name`, raw when `name` is a keyword (a field declared as `r#type`).
fn name_ident(name: &str, span: Span) -> Ident {
    match syn::parse_str::<Ident>(name) {
        Ok(mut ident) => {
            ident.set_span(span);
            ident
        }
        Err(_) => Ident::new_raw(name, span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Template, Vec<TemplateError>> {
        parse_str(text, Span::call_site())
    }

    fn hole(path: &str) -> Piece {
        Piece::Hole(Placeholder {
            segments: path.split('.').map(String::from).collect(),
            span: Span::call_site(),
        })
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    #[test]
    fn splits_literal_text_and_placeholders() {
        let template = parse("ticket:{id}").unwrap();
        assert_eq!(template.pieces(), [text("ticket:"), hole("id")]);
        let template = parse("{org}/{user.id}:feed").unwrap();
        assert_eq!(
            template.pieces(),
            [hole("org"), text("/"), hole("user.id"), text(":feed")]
        );
        assert_eq!(template.format_string(), "{}/{}:feed");
        assert_eq!(
            template
                .placeholders()
                .map(|p| p.root())
                .collect::<Vec<_>>(),
            ["org", "user"]
        );
    }

    #[test]
    fn a_template_without_placeholders_is_a_literal() {
        let template = parse("comments").unwrap();
        assert_eq!(template.as_literal().as_deref(), Some("comments"));
        assert_eq!(parse("a{x}").unwrap().as_literal(), None);
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let template = parse("a{{b}}c{id}").unwrap();
        assert_eq!(template.pieces(), [text("a{b}c"), hole("id")]);
        assert_eq!(template.format_string(), "a{{b}}c{}");
        assert_eq!(
            parse("{{{id}}}").unwrap().pieces(),
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
        let errors = parse("}{}{a b}{x").unwrap_err();
        assert_eq!(
            errors,
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
            let errors = parse(&format!("t:{{{bad}}}")).unwrap_err();
            assert_eq!(
                errors,
                [TemplateError::Invalid {
                    content: bad.into()
                }],
                "{bad}"
            );
        }
        assert_eq!(parse("{_id}").unwrap().pieces(), [hole("_id")]);
        assert_eq!(parse("{r#type}").unwrap().pieces(), [hole("type")]);
    }

    #[test]
    fn raw_and_keyword_names_become_raw_identifiers() {
        let template = parse("{r#type}.{a.match}").unwrap();
        let idents: Vec<String> = template
            .placeholders()
            .flat_map(|p| p.idents())
            .map(|i| i.to_string())
            .collect();
        assert_eq!(idents, ["r#type", "a", "r#match"]);
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
        let message = TemplateError::Empty { at: 0 }.to_string();
        assert!(message.contains("`{id}`"), "{message}");
    }

    #[test]
    fn checks_literal_text_against_the_topic_rule() {
        assert!(parse("user:{id}/feed@eu#1=+~*")
            .unwrap()
            .topic_problems()
            .is_empty());
        assert!(parse("{id}").unwrap().topic_problems().is_empty());
        let problems = parse("user {id}").unwrap().topic_problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("whitespace ' '"), "{problems:?}");
        assert!(parse("a,b").unwrap().topic_problems()[0].contains("','"));
        assert!(parse("a{{b").unwrap().topic_problems()[0].contains("'{'"));
        assert_eq!(
            parse("").unwrap().topic_problems(),
            ["the topic must not be empty"]
        );
        assert!(parse(&"a".repeat(MAX_TOPIC_LEN))
            .unwrap()
            .topic_problems()
            .is_empty());
        assert!(parse(&"a".repeat(MAX_TOPIC_LEN + 1))
            .unwrap()
            .topic_problems()[0]
            .contains("257 bytes"));
    }
}

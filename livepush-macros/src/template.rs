//! Topic templates in the macros: [`livepush_core::template`]'s grammar, with the spans of the
//! literal for errors, and the code that fills a template.
//!
//! The literal parts must be valid topic text ([`livepush_core::topic`]), so a topic such as
//! `"user {id}"` is refused at compile time rather than at every publish.

use std::fmt;

use livepush_core::template::{self as grammar, Piece as CorePiece};
use livepush_core::topic;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote_spanned;
use syn::LitStr;

use crate::errors::Errors;
use crate::tokens::respan;

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

impl Template {
    /// Parses the template in `lit`; every error is spanned on the literal.
    pub(crate) fn parse(lit: &LitStr) -> syn::Result<Template> {
        parse_str(&lit.value(), lit.span()).map_err(|problems| {
            let mut errors = Errors::default();
            for problem in problems {
                errors.push(syn::Error::new(lit.span(), problem));
            }
            errors
                .finish()
                .err()
                .unwrap_or_else(|| syn::Error::new(lit.span(), "invalid topic template"))
        })
    }

    /// Checks the literal text against the topic rule: not empty, only ASCII letters, digits
    /// and [`topic::PUNCTUATION`], and no more literal text than a whole topic may hold.
    pub(crate) fn check_topic_text(&self, lit: &LitStr) -> syn::Result<()> {
        let mut errors = Errors::default();
        for problem in self.topic_problems() {
            errors.push(syn::Error::new(lit.span(), problem));
        }
        errors.finish()
    }

    fn topic_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.pieces.is_empty() {
            problems.push("the topic must not be empty".to_owned());
        }
        let text = self.literal_text();
        if let Some((_, found)) = topic::first_invalid_char(&text) {
            let kind = if found.is_whitespace() {
                "whitespace "
            } else {
                ""
            };
            problems.push(format!(
                "the topic contains {kind}{found:?}, which topics do not allow: use ASCII letters, digits and `{}`",
                topic::PUNCTUATION
            ));
        }
        if text.len() > topic::MAX_LEN {
            problems.push(format!(
                "the topic template has {} bytes of literal text; a topic is at most {} bytes",
                text.len(),
                topic::MAX_LEN
            ));
        }
        problems
    }

    fn literal_text(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Text(text) => Some(text.as_str()),
                Piece::Hole(_) => None,
            })
            .collect()
    }

    /// The placeholders, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Hole(hole) => Some(hole),
            Piece::Text(_) => None,
        })
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

/// Parses `text` with the shared grammar, collecting every error. Placeholders get `span`.
pub(crate) fn parse_str(text: &str, span: Span) -> Result<Template, Vec<grammar::TemplateError>> {
    let pieces = grammar::parse(text)?
        .into_iter()
        .map(|piece| match piece {
            CorePiece::Text(text) => Piece::Text(text),
            CorePiece::Hole(segments) => Piece::Hole(Placeholder { segments, span }),
        })
        .collect();
    Ok(Template { pieces, span })
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

    fn parse(text: &str) -> Template {
        parse_str(text, Span::call_site()).unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text).topic_problems()
    }

    #[test]
    fn builds_the_format_string_with_braces_escaped() {
        let template = parse("{org}/{user.id}:feed");
        assert_eq!(template.format_string(), "{}/{}:feed");
        assert_eq!(
            template
                .placeholders()
                .map(|p| p.root())
                .collect::<Vec<_>>(),
            ["org", "user"]
        );
        assert_eq!(parse("a{{b}}c{id}").format_string(), "a{{b}}c{}");
    }

    #[test]
    fn a_template_without_placeholders_is_a_literal() {
        assert_eq!(parse("comments").as_literal().as_deref(), Some("comments"));
        assert_eq!(parse("a{x}").as_literal(), None);
    }

    #[test]
    fn raw_and_keyword_names_become_raw_identifiers() {
        let template = parse("{r#type}.{a.match}");
        let idents: Vec<String> = template
            .placeholders()
            .flat_map(|p| p.idents())
            .map(|i| i.to_string())
            .collect();
        assert_eq!(idents, ["r#type", "a", "r#match"]);
    }

    #[test]
    fn spans_every_grammar_error_on_the_literal() {
        let lit: LitStr = syn::parse_quote!("}{}");
        let messages: Vec<String> = Template::parse(&lit)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("unbalanced `}`"));
        assert!(messages[1].starts_with("empty placeholder"));
    }

    #[test]
    fn checks_literal_text_against_the_topic_rule() {
        assert!(problems("user:{id}/feed@eu#1=+~*").is_empty());
        assert!(problems("{id}").is_empty());
        let found = problems("user {id}");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("whitespace ' '"), "{found:?}");
        assert!(problems("a,b")[0].contains("','"));
        assert!(problems("a{{b")[0].contains("'{'"));
        assert_eq!(problems(""), ["the topic must not be empty"]);
        assert!(problems(&"a".repeat(topic::MAX_LEN)).is_empty());
        assert!(problems(&"a".repeat(topic::MAX_LEN + 1))[0].contains("257 bytes"));
    }
}

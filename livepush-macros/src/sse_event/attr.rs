//! Parsing: the `#[sse(...)]` attributes of a type into a plain struct.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, LitStr, Meta};

use crate::args;
use crate::errors::Errors;

const ATTRIBUTE: &str = "#[sse]";
const KEYS: &[&str] = &["event", "topic", "category"];

/// The arguments of the `#[sse(...)]` attributes, as written (several attributes merge).
pub(crate) struct SseArgs {
    /// What errors about the attribute as a whole (a missing key) are spanned on.
    pub(crate) whole: TokenStream,
    pub(crate) event: Option<LitStr>,
    pub(crate) topic: Option<LitStr>,
    pub(crate) category: Option<LitStr>,
    /// The keys given, valid values or not: a key with a wrong value is not also "missing".
    pub(crate) keys: BTreeSet<String>,
}

/// The arguments, or `None` (with an error on the type's name) when there is no `#[sse]`.
pub(crate) fn parse(input: &DeriveInput, errors: &mut Errors) -> Option<SseArgs> {
    let attrs: Vec<_> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("sse"))
        .collect();
    let Some(last) = attrs.last() else {
        errors.spanned(
            &input.ident,
            format!(
                "#[derive(SseEvent)] needs `#[sse(event = \"...\", topic = \"...\")]` on `{}`",
                input.ident
            ),
        );
        return None;
    };
    let mut all = Vec::new();
    for attr in &attrs {
        match &attr.meta {
            Meta::List(list) => all.extend(args::parse(list.tokens.clone(), ATTRIBUTE, errors)),
            other => errors.spanned(other, "expected `#[sse(event = \"...\", topic = \"...\")]`"),
        }
    }
    let mut out = SseArgs {
        whole: last.meta.to_token_stream(),
        event: None,
        topic: None,
        category: None,
        keys: BTreeSet::new(),
    };
    for arg in args::unique(all, errors) {
        out.keys.insert(arg.key.to_string());
        match arg.key.to_string().as_str() {
            "event" => out.event = args::lit_str(&arg, errors),
            "topic" => out.topic = args::lit_str(&arg, errors),
            "category" => out.category = args::lit_str(&arg, errors),
            _ => args::unknown_key(&arg, ATTRIBUTE, KEYS, errors),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn messages(errors: Errors) -> Vec<String> {
        errors
            .finish()
            .err()
            .map_or_else(Vec::new, |e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn merges_several_sse_attributes() {
        let input: DeriveInput = parse_quote! {
            #[sse(event = "a")]
            #[serde(rename_all = "camelCase")]
            #[sse(topic = "t", category = "c")]
            struct S { id: u8 }
        };
        let mut errors = Errors::default();
        let args = parse(&input, &mut errors).unwrap();
        assert!(errors.is_empty());
        assert_eq!(args.event.unwrap().value(), "a");
        assert_eq!(args.topic.unwrap().value(), "t");
        assert_eq!(args.category.unwrap().value(), "c");
    }

    #[test]
    fn reports_a_missing_attribute_on_the_type_name() {
        let mut errors = Errors::default();
        assert!(parse(
            &parse_quote!(
                struct Ticket;
            ),
            &mut errors
        )
        .is_none());
        assert_eq!(
            messages(errors),
            ["#[derive(SseEvent)] needs `#[sse(event = \"...\", topic = \"...\")]` on `Ticket`"]
        );
    }

    #[test]
    fn reports_unknown_repeated_and_bare_keys() {
        let input: DeriveInput = parse_quote! {
            #[sse(event = "a", name = "b", topic)]
            #[sse(event = "c")]
            #[sse = "x"]
            struct S;
        };
        let mut errors = Errors::default();
        parse(&input, &mut errors);
        let messages = messages(errors);
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].starts_with("`topic` needs a value"));
        assert!(messages[1].starts_with("expected `#[sse("));
        assert!(messages[2].starts_with("duplicate key `event`"));
        assert!(messages[3].starts_with("unknown key `name` in #[sse]"));
    }
}

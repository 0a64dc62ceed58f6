//! Parsing: the arguments of every `#[publish_event(...)]` on a handler into plain structs.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Meta};

use crate::args;
use crate::errors::Errors;

const ATTRIBUTE: &str = "#[publish_event]";
const KEYS: &[&str] = &["topic", "event", "category", "data"];

/// The arguments of one `#[publish_event(...)]`, as written.
pub(crate) struct PublishArgs {
    /// What errors about the attribute as a whole (a missing `topic`) are spanned on.
    pub(crate) whole: TokenStream,
    /// Where the attribute is, for its registry entry's line.
    pub(crate) span: Span,
    pub(crate) topic: Option<LitStr>,
    pub(crate) event: Option<LitStr>,
    pub(crate) category: Option<LitStr>,
    /// The keys given, valid values or not: a key with a wrong value is not also "missing".
    pub(crate) keys: BTreeSet<String>,
    pub(crate) data: Option<syn::Path>,
}

/// The arguments of the expanding attribute (`top`) and of the ones stacked below it, in order.
pub(crate) fn parse_all(
    top: TokenStream,
    stacked: &[Attribute],
    errors: &mut Errors,
) -> Vec<PublishArgs> {
    let top_whole = if top.is_empty() {
        // `#[publish_event]` has no argument tokens to point at; the call site is the attribute.
        quote::quote_spanned!(Span::call_site()=> publish_event)
    } else {
        top.clone()
    };
    let mut all = vec![parse(top, top_whole, Span::call_site(), errors)];
    for attr in stacked {
        let tokens = match &attr.meta {
            Meta::List(list) => list.tokens.clone(),
            Meta::Path(_) => TokenStream::new(),
            Meta::NameValue(nv) => {
                errors.spanned(nv, "expected `#[publish_event(topic = \"...\", ...)]`");
                continue;
            }
        };
        all.push(parse(
            tokens,
            attr.meta.to_token_stream(),
            attr.span(),
            errors,
        ));
    }
    all
}

fn parse(tokens: TokenStream, whole: TokenStream, span: Span, errors: &mut Errors) -> PublishArgs {
    let mut out = PublishArgs {
        whole,
        span,
        topic: None,
        event: None,
        category: None,
        keys: BTreeSet::new(),
        data: None,
    };
    let parsed = args::parse(tokens, ATTRIBUTE, errors);
    for arg in args::unique(parsed, errors) {
        out.keys.insert(arg.key.to_string());
        match arg.key.to_string().as_str() {
            "topic" => out.topic = args::lit_str(&arg, errors),
            "event" => out.event = args::lit_str(&arg, errors),
            "category" => out.category = args::lit_str(&arg, errors),
            "data" => out.data = args::path(&arg, errors),
            _ => args::unknown_key(&arg, ATTRIBUTE, KEYS, errors),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    #[test]
    fn parses_the_top_attribute_then_the_stacked_ones() {
        let stacked: Vec<Attribute> = vec![
            parse_quote!(#[publish_event(topic = "b", data = only_id)]),
            parse_quote!(#[livepush::publish_event]),
        ];
        let mut errors = Errors::default();
        let all = parse_all(
            quote!(topic = "a", event = "e", category = "c"),
            &stacked,
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].topic.as_ref().unwrap().value(), "a");
        assert_eq!(all[0].event.as_ref().unwrap().value(), "e");
        assert_eq!(all[0].category.as_ref().unwrap().value(), "c");
        assert_eq!(all[1].topic.as_ref().unwrap().value(), "b");
        assert!(all[1].data.is_some());
        assert!(all[2].topic.is_none());
    }

    #[test]
    fn reports_unknown_and_repeated_keys_on_the_key() {
        let mut errors = Errors::default();
        parse_all(
            quote!(topic = "a", topic = "b", evnet = "c"),
            &[],
            &mut errors,
        );
        let messages: Vec<String> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2);
        assert!(messages[0].starts_with("duplicate key `topic`"));
        assert!(messages[1]
            .starts_with("unknown key `evnet` in #[publish_event]: did you mean `event`?"));
    }
}

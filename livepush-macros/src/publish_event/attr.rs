//! Parsing: the arguments of every `#[publish_event(...)]` on a handler into plain structs.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Meta};

use super::ATTR;
use crate::args::{self, Given};
use crate::errors::Errors;
use crate::retain::RetainArgs;

const KEYS: &[&str] = &["topic", "event", "category", "data", "retain", "retain_ttl"];

/// The arguments of one `#[publish_event(...)]`, as written.
pub(crate) struct PublishArgs {
    /// What errors about the attribute as a whole (a missing `topic`) are spanned on.
    pub(crate) whole: TokenStream,
    /// Where the attribute is, for its registry entry's line.
    pub(crate) span: Span,
    pub(crate) topic: Given<LitStr>,
    pub(crate) event: Given<LitStr>,
    pub(crate) category: Given<LitStr>,
    pub(crate) data: Given<syn::Path>,
    /// `retain`, `retain_ttl`.
    pub(crate) retain: RetainArgs,
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
        topic: Given::Absent,
        event: Given::Absent,
        category: Given::Absent,
        data: Given::Absent,
        retain: RetainArgs::default(),
    };
    let parsed = args::parse(tokens, &ATTR, errors);
    let mut typos = Vec::new();
    for arg in args::unique(parsed, errors) {
        match arg.key.to_string().as_str() {
            "topic" => out.topic = args::lit_str(&arg),
            "event" => out.event = args::lit_str(&arg),
            "category" => out.category = args::lit_str(&arg),
            "data" => out.data = args::path(&arg),
            _ if out.retain.take(&arg, false) => {}
            _ => typos.push(args::unknown_key(&arg, &ATTR, KEYS)),
        }
    }
    for (error, near) in typos {
        match near {
            Some("data") => args::typo_of(Some(&mut out.data), error, errors),
            near => {
                let slot = match near {
                    Some("topic") => Some(&mut out.topic),
                    Some("event") => Some(&mut out.event),
                    Some("category") => Some(&mut out.category),
                    _ => None,
                };
                args::typo_of(slot, error, errors);
            }
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
        assert!(errors.finish().is_ok());
        assert_eq!(all.len(), 3);
        let value = |given: &Given<LitStr>| match given {
            Given::Valid(lit) => lit.value(),
            Given::Absent => "absent".to_owned(),
            Given::Invalid(_) => "invalid".to_owned(),
        };
        assert_eq!(value(&all[0].topic), "a");
        assert_eq!(value(&all[0].event), "e");
        assert_eq!(value(&all[0].category), "c");
        assert_eq!(value(&all[1].topic), "b");
        assert!(matches!(all[1].data, Given::Valid(_)));
        assert_eq!(value(&all[2].topic), "absent");
    }

    #[test]
    fn reports_unknown_and_repeated_keys_on_the_key() {
        let mut errors = Errors::default();
        let all = parse_all(
            quote!(topic = "a", topic = "b", evnet = "c", nmae = "d"),
            &[],
            &mut errors,
        );
        let messages: Vec<String> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("duplicate key `topic`"));
        assert!(messages[1].starts_with("unknown key `nmae` in #[publish_event]: expected"));
        // A typo of a key that is not given stands for it, so it is not also "missing".
        match &all[0].event {
            Given::Invalid(error) => assert!(error
                .to_string()
                .starts_with("unknown key `evnet` in #[publish_event]: did you mean `event`?")),
            _ => panic!("`evnet` should stand for `event`"),
        }
    }
}

//! Parsing: the `#[sse(...)]` attributes of a type into a plain struct.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{DeriveInput, LitStr, Meta};

use super::ATTR;
use crate::args::{self, Given};
use crate::errors::Errors;
use crate::retain::RetainArgs;

const KEYS: &[&str] = &[
    "event",
    "topic",
    "category",
    "retain",
    "retain_ttl",
    "retain_key",
];

/// The arguments of the `#[sse(...)]` attributes, as written (several attributes merge).
pub(crate) struct SseArgs {
    /// What errors about the attribute as a whole (a missing key) are spanned on.
    pub(crate) whole: TokenStream,
    pub(crate) event: Given<LitStr>,
    pub(crate) topic: Given<LitStr>,
    pub(crate) category: Given<LitStr>,
    /// `retain`, `retain_ttl`, `retain_key`.
    pub(crate) retain: RetainArgs,
}

/// The arguments, or an error on the type's name when there is no `#[sse]`. Problems inside
/// the attributes (unknown or repeated keys) go to `errors`.
pub(crate) fn parse(input: &DeriveInput, errors: &mut Errors) -> syn::Result<SseArgs> {
    let attrs: Vec<_> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident(ATTR.path))
        .collect();
    let Some(last) = attrs.last() else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            format!(
                "#[derive(SseEvent)] needs `#[sse(event = \"...\", topic = \"...\")]` on `{}`",
                input.ident
            ),
        ));
    };
    let mut all = Vec::new();
    for attr in &attrs {
        match &attr.meta {
            Meta::List(list) => all.extend(args::parse(list.tokens.clone(), &ATTR, errors)),
            other => errors.spanned(other, "expected `#[sse(event = \"...\", topic = \"...\")]`"),
        }
    }
    let mut out = SseArgs {
        whole: last.meta.to_token_stream(),
        event: Given::Absent,
        topic: Given::Absent,
        category: Given::Absent,
        retain: RetainArgs::default(),
    };
    let mut typos = Vec::new();
    for arg in args::unique(all, errors) {
        match arg.key.to_string().as_str() {
            "event" => out.event = args::lit_str(&arg),
            "topic" => out.topic = args::lit_str(&arg),
            "category" => out.category = args::lit_str(&arg),
            _ if out.retain.take(&arg, true) => {}
            _ => typos.push(args::unknown_key(&arg, &ATTR, KEYS)),
        }
    }
    for (error, near) in typos {
        let slot = match near {
            Some("event") => Some(&mut out.event),
            Some("topic") => Some(&mut out.topic),
            Some("category") => Some(&mut out.category),
            _ => None,
        };
        args::typo_of(slot, error, errors);
    }
    Ok(out)
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
        let args = parse(&input, &mut errors).ok().unwrap();
        assert!(errors.finish().is_ok());
        for (given, want) in [(args.event, "a"), (args.topic, "t"), (args.category, "c")] {
            assert!(matches!(given, Given::Valid(lit) if lit.value() == want));
        }
    }

    #[test]
    fn reports_a_missing_attribute_on_the_type_name() {
        let mut errors = Errors::default();
        let error = parse(
            &parse_quote!(
                struct Ticket;
            ),
            &mut errors,
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "#[derive(SseEvent)] needs `#[sse(event = \"...\", topic = \"...\")]` on `Ticket`"
        );
        assert!(messages(errors).is_empty());
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
        assert!(parse(&input, &mut errors).is_ok());
        let messages = messages(errors);
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].starts_with("`topic` needs a value"));
        assert!(messages[1].starts_with("expected `#[sse("));
        assert!(messages[2].starts_with("duplicate key `event`"));
        assert!(messages[3].starts_with("unknown key `name` in #[sse]"));
    }
}

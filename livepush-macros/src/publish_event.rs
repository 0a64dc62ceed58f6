//! `#[publish_event(topic = "...", event = "...", category = "...", data = path)]`.
//!
//! The topmost attribute of a handler takes the stacked ones below it (attribute macros expand
//! outside-in, so it still sees them), and wraps the handler once: the returned value is
//! serialized once for every attribute without `data`.

mod attr;
mod bindings;
mod expand;
mod validate;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::errors::Errors;
use crate::handler;

const ATTRIBUTE: &str = "publish_event";

/// Expands `#[publish_event(args)] item`.
pub(crate) fn publish_event(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func = match handler::parse(item, ATTRIBUTE) {
        Ok(func) => func,
        Err(error_and_item) => return error_and_item,
    };
    let mut errors = Errors::default();
    let stacked = handler::take_attrs(&mut func.attrs, ATTRIBUTE);
    let attrs = attr::parse_all(args, &stacked, &mut errors);
    let plan = validate::validate(&func, attrs, &mut errors);
    if let Err(error_and_item) = errors.or_emit(&func) {
        return error_and_item;
    }
    match plan {
        Some(plan) => expand::expand(func, &plan),
        // Validation returns no plan only along with an error.
        None => func.into_token_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors_of(args: TokenStream, item: TokenStream) -> Vec<String> {
        let out = publish_event(args, item).to_string();
        out.split("compile_error !")
            .skip(1)
            .map(|s| {
                let start = s.find('"').unwrap() + 1;
                let end = s[start..].find("\" }").unwrap() + start;
                s[start..end].to_owned()
            })
            .collect()
    }

    #[test]
    fn reports_every_problem_of_every_stacked_attribute_at_once() {
        let errors = errors_of(
            quote!(event = "a b", topc = "x"),
            quote! {
                #[publish_event(topic = "t:{id", category = "")]
                fn create(id: u64) {}
            },
        );
        assert_eq!(errors.len(), 7, "{errors:#?}");
        let expected = [
            "unknown key `topc`",
            "missing `topic`",
            "event name contains whitespace",
            "unbalanced `{`",
            "category must not be empty",
            "goes on an async axum handler",
            "must return the value to publish",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:#?}"
            );
        }
    }

    #[test]
    fn on_error_keeps_the_handler_without_our_attributes() {
        let out = publish_event(
            quote!(topic = ""),
            quote!(
                #[publish_event(topic = "x")]
                async fn h() -> Json<u8> {}
            ),
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("# [publish_event"), "{out}");
        assert!(out.contains("async fn h () -> Json < u8 > { }"), "{out}");
    }

    #[test]
    fn expands_stacked_attributes_into_one_wrapper_that_encodes_once() {
        let out = publish_event(
            quote!(topic = "tickets", event = "ticket_created"),
            quote! {
                #[publish_event(topic = "ticket:{id}", event = "created", category = "tickets")]
                #[publish_event(topic = "owner:{owner.id}", data = ids::only_id)]
                pub async fn create(Path(id): Path<u64>) -> (StatusCode, Json<Ticket>) { (StatusCode::OK, Json(Ticket::new(id))) }
            },
        );
        let func: syn::ItemFn = syn::parse2(out).expect("the expansion is one fn");
        let text = quote!(#func).to_string();
        assert!(func.attrs.is_empty(), "{text}");
        assert_eq!(func.sig.inputs.len(), 2, "{text}");
        assert_eq!(text.matches("inventory :: submit !").count(), 3, "{text}");
        assert_eq!(
            text.matches(":: livepush :: __private :: encode").count(),
            2,
            "{text}"
        );
        assert_eq!(
            text.matches("__livepush_publish . publish").count(),
            3,
            "{text}"
        );
        assert!(
            text.contains(
                "let __livepush_arg_0 = :: std :: string :: ToString :: to_string (& id)"
            ),
            "{text}"
        );
        assert!(
            text.contains(":: std :: format ! (\"owner:{}\" , __livepush_value . owner . id)"),
            "{text}"
        );
        assert!(
            text.contains("event : \"create\""),
            "the event name defaults to the fn name: {text}"
        );
        assert!(
            text.contains("data : :: std :: option :: Option :: Some (\"ids::only_id\")"),
            "{text}"
        );
    }
}

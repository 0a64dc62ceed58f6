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

use crate::args::AttrName;
use crate::errors::{Errors, Failure};
use crate::handler;

const ATTR: AttrName = AttrName {
    path: "publish_event",
    shown: "#[publish_event]",
};

/// Expands `#[publish_event(args)] item`; on failure, the handler without our attributes.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let mut func = handler::parse(item, &ATTR)?;
    let stacked = handler::take_attrs(&mut func.attrs, &ATTR);
    let mut errors = Errors::default();
    let attrs = attr::parse_all(args, &stacked, &mut errors);
    match validate::validate(&func, attrs, errors) {
        Ok(plan) => Ok(expand::expand(func, plan)),
        Err(error) => Err(Failure::new(error, func)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::assert_expansion;
    use quote::quote;

    fn out(args: TokenStream, item: TokenStream) -> TokenStream {
        expand(args, item).unwrap_or_else(Failure::into_tokens)
    }

    fn errors_of(args: TokenStream, item: TokenStream) -> Vec<String> {
        let out = out(args, item).to_string();
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
        // `topc` is one mistake: an unknown key, and no "missing `topic`" besides.
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(!errors.iter().any(|e| e.contains("missing")), "{errors:#?}");
        let expected = [
            "unknown key `topc` in #[publish_event]: did you mean `topic`?",
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
        let out = out(
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
        let out = expand(
            quote!(topic = "tickets", event = "ticket_created"),
            quote! {
                #[publish_event(topic = "ticket:{id}", event = "created", category = "tickets")]
                #[publish_event(topic = "owner:{owner.id}", data = ids::only_id)]
                pub async fn create(Path(id): Path<u64>) -> (StatusCode, Json<Ticket>) {
                    (StatusCode::OK, Json(Ticket::new(id)))
                }
            },
        );
        assert_expansion("publish_event/stacked", out.ok().unwrap());
    }

    #[test]
    fn a_retained_attribute_publishes_through_publish_retained_and_marks_its_route() {
        let out = expand(
            quote!(
                topic = "room:{room}",
                event = "room_topic",
                retain,
                retain_ttl = 60
            ),
            quote! {
                async fn set_topic(Path(room): Path<String>) -> Json<Topic> { Json(Topic::default()) }
            },
        );
        assert_expansion("publish_event/retained", out.ok().unwrap());
    }

    #[test]
    fn a_generic_handler_publishes_without_a_payload_schema() {
        let out = expand(
            quote!(topic = "generic"),
            quote! {
                async fn generic<S: Clone>(State(_state): State<S>) -> Json<u8> { Json(1) }
            },
        );
        assert_expansion("publish_event/generic", out.ok().unwrap());
    }

    #[test]
    fn on_error_the_handler_is_kept_after_the_errors() {
        let failure = expand(
            quote!(topic = "a b"),
            quote! {
                async fn create() -> Json<u8> { Json(1) }
            },
        );
        assert_expansion(
            "publish_event/invalid_topic",
            failure.err().unwrap().into_tokens(),
        );
    }
}

//! `#[subscribe_to_events]`: an async handler becomes a Server-Sent Events endpoint.
//!
//! Small enough for one file: parse (no arguments), validate (where the topics come from),
//! expand:
//!
//! ```text
//! #vis async fn name(__livepush_subscribe: SubscribeContext, <args>) -> Response {
//!     const __LIVEPUSH_SUBSCRIBE_ROUTE: SubscribeRoute = subscribe_route(.., SubscribeMode::Query | Handler, ..);
//!     inventory::submit! { __LIVEPUSH_SUBSCRIBE_ROUTE }
//!     __livepush_subscribe.from_query().await                                  // empty body
//!     // or
//!     let __livepush_sub: Ret = async move { <body> }.await;
//!     __livepush_subscribe.with(IntoSubscription::into_subscription(__livepush_sub)).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{parse_quote, Attribute, Ident, Type};

use crate::args::AttrName;
use crate::errors::{all, both, Failure};
use crate::handler::{self, Handler};
use crate::tokens::{call_over, spanning};

const ATTR: AttrName = AttrName {
    path: "subscribe_to_events",
    shown: "#[subscribe_to_events]",
};

/// Expands `#[subscribe_to_events(args)] item`; on failure, the handler without our attribute.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let mut func = handler::parse(item, &ATTR)?;
    let repeated = handler::take_attrs(&mut func.attrs, &ATTR);
    match both(check_no_args(args), validate(&func, &repeated)) {
        Ok(((), mode)) => Ok(expand_handler(func, mode)),
        Err(error) => Err(Failure::new(error, func)),
    }
}

// Parse

/// Refuses any argument, on the arguments.
fn check_no_args(args: TokenStream) -> syn::Result<()> {
    if args.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        args,
        "#[subscribe_to_events] takes no arguments: the topics come from `?topic=a,b`, or from what the handler returns (`Topics`, `Subscription`)",
    ))
}

// Validate

/// Where the topics come from.
enum Mode {
    /// `async fn events() {}`: from `?topic=a,b`.
    Query,
    /// A body returning `Topics`, `Subscription`, `Result<_, E>`...: from the body.
    Handler(Box<Type>),
}

/// Checks the handler. `repeated` are further `#[subscribe_to_events]` on it.
fn validate(func: &Handler, repeated: &[Attribute]) -> syn::Result<Mode> {
    let is_async = handler::check_async(&func.sig, &ATTR);
    let once = all(repeated.iter().map(|attr| {
        Err::<(), _>(syn::Error::new_spanned(
            attr,
            "#[subscribe_to_events] is given twice: remove this one",
        ))
    }));
    let mode = match handler::return_type(&func.sig) {
        Some(ty) => Ok(Mode::Handler(Box::new(ty.clone()))),
        None if func.body_is_empty() => Ok(Mode::Query),
        None => Err(syn::Error::new_spanned(
            &func.sig,
            "a #[subscribe_to_events] handler with a body must return its topics: add `-> Topics` (or `Subscription`, `Result<Topics, E>`), or leave the body empty to take them from `?topic=a,b`",
        )),
    };
    let (((), _), mode) = both(both(is_async, once), mode)?;
    Ok(mode)
}

// Expand

/// The handler, wrapped.
fn expand_handler(func: Handler, mode: Mode) -> TokenStream {
    let mut sig = func.sig.clone();
    let context = handler::insert_arg(
        &mut sig,
        "__livepush_subscribe",
        parse_quote!(::livepush::__private::SubscribeContext),
    );
    sig.output = parse_quote!(-> ::livepush::__private::Response);
    let handler_name = sig.ident.unraw().to_string();
    let (mode_name, answer) = match mode {
        Mode::Query => (quote!(Query), quote!(#context.from_query().await)),
        Mode::Handler(ty) => {
            let sub = Ident::new("__livepush_sub", Span::call_site());
            let run_body = func.run_body(&sub, &ty);
            // Spanned on the return type: a type that cannot choose topics is reported there,
            // once. The conversion happens here rather than inside `with` so that the only
            // `IntoSubscription` bound is this call's.
            let chosen = call_over(
                &ty,
                quote!(::livepush::IntoSubscription::into_subscription),
                spanning(&ty, quote!(#sub)),
            );
            (
                quote!(Handler),
                quote!(#run_body #context.with(#chosen).await),
            )
        }
    };
    let statements = quote! {
            const __LIVEPUSH_SUBSCRIBE_ROUTE: ::livepush::__private::SubscribeRoute =
                ::livepush::__private::subscribe_route(
                    #handler_name,
                    ::std::module_path!(),
                    ::livepush::__private::SubscribeMode::#mode_name,
                    ::std::file!(),
                    ::std::line!(),
                );
            ::livepush::__private::inventory::submit! { __LIVEPUSH_SUBSCRIBE_ROUTE }
            #answer
    };
    func.rewrite(&sig, statements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::assert_expansion;

    fn errors(args: TokenStream, func: Handler) -> Vec<String> {
        let mut func = func;
        let repeated = handler::take_attrs(&mut func.attrs, &ATTR);
        match both(check_no_args(args), validate(&func, &repeated)) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn an_empty_body_takes_topics_from_the_query() {
        for func in [
            parse_quote!(
                async fn events() {}
            ),
            parse_quote!(
                async fn events(_user: AuthUser) {}
            ),
        ] {
            assert!(matches!(validate(&func, &[]), Ok(Mode::Query)));
        }
    }

    #[test]
    fn a_body_with_a_return_type_chooses_the_topics() {
        let func = parse_quote!(
            async fn mine(user: AuthUser) -> Result<Topics, StatusCode> {
                Ok(Topics::one(format!("user:{}", user.id)))
            }
        );
        assert!(matches!(validate(&func, &[]), Ok(Mode::Handler(_))));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errors = errors(
            quote!(topic = "a"),
            parse_quote! {
                #[subscribe_to_events]
                fn events() { let _x = 1; }
            },
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("#[subscribe_to_events] takes no arguments"));
        assert!(errors[1].contains("make this an `async fn`"));
        assert!(errors[2].contains("is given twice"));
        assert!(errors[3].contains("must return its topics"));
    }

    #[test]
    fn an_empty_handler_subscribes_from_the_query() {
        let out = expand(
            quote!(),
            quote! {
                pub async fn events(user: AuthUser) {}
            },
        );
        assert_expansion("subscribe_to_events/query", out.ok().unwrap());
    }

    #[test]
    fn a_handler_body_chooses_the_topics() {
        let out = expand(
            quote!(),
            quote! {
                async fn mine(Path(user): Path<u64>) -> Result<Topics, StatusCode> {
                    Ok(Topics::one(format!("user:{user}")))
                }
            },
        );
        assert_expansion("subscribe_to_events/handler", out.ok().unwrap());
    }
}

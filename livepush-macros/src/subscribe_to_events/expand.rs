//! Code generation: the handler, answering with the SSE stream.
//!
//! ```text
//! #vis async fn name(__livepush_subscribe: SubscribeContext, <args>) -> Response {
//!     inventory::submit! { SubscribeRoute { mode: Query | Handler, .. } }
//!     __livepush_subscribe.from_query().await                                  // empty body
//!     // or
//!     let __livepush_sub: Ret = async move { <body> }.await;
//!     __livepush_subscribe.with(IntoSubscription::into_subscription(__livepush_sub)).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{parse_quote, Ident, ItemFn};

use super::validate::Mode;
use crate::handler;
use crate::tokens::{call_over, spanning};

/// The handler, wrapped.
pub(crate) fn expand(func: ItemFn, mode: &Mode) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    let (outer, inner) = handler::split_attrs(attrs);
    handler::insert_arg(
        &mut sig,
        parse_quote!(__livepush_subscribe: ::livepush::__private::SubscribeContext),
    );
    sig.output = parse_quote!(-> ::livepush::__private::Response);
    let handler_name = sig.ident.unraw().to_string();
    let (mode_name, answer) = match mode {
        Mode::Query => (
            quote!(Query),
            quote!(__livepush_subscribe.from_query().await),
        ),
        Mode::Handler(ty) => {
            let sub = Ident::new("__livepush_sub", Span::call_site());
            let run_body = handler::run_body(&sub, Some(ty), &block);
            // Spanned on the return type: a type that cannot choose topics is reported there,
            // once. The conversion happens here rather than inside `with` so that the only
            // `IntoSubscription` bound is this call's.
            let chosen = call_over(
                ty,
                quote!(::livepush::IntoSubscription::into_subscription),
                spanning(ty, quote!(#sub)),
            );
            let with = quote!(__livepush_subscribe.with(#chosen).await);
            (quote!(Handler), quote!(#run_body #with))
        }
    };
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            ::livepush::__private::inventory::submit! {
                ::livepush::__private::SubscribeRoute {
                    handler: #handler_name,
                    module: ::std::module_path!(),
                    mode: ::livepush::__private::SubscribeMode::#mode_name,
                    file: ::std::file!(),
                    line: ::std::line!(),
                }
            }
            #answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_handler_subscribes_from_the_query() {
        let out = expand(
            parse_quote!(
                pub async fn events(user: AuthUser) {}
            ),
            &Mode::Query,
        )
        .to_string();
        assert!(out.starts_with("pub async fn events (__livepush_subscribe : :: livepush :: __private :: SubscribeContext , user : AuthUser) -> :: livepush :: __private :: Response"), "{out}");
        assert!(out.contains("SubscribeMode :: Query"), "{out}");
        assert!(
            out.contains("__livepush_subscribe . from_query () . await"),
            "{out}"
        );
    }

    #[test]
    fn a_handler_body_chooses_the_topics() {
        let func: ItemFn = parse_quote!(
            async fn mine() -> Topics {
                Topics::one("a")
            }
        );
        let mode = Mode::Handler(Box::new(parse_quote!(Topics)));
        let out = expand(func, &mode).to_string();
        assert!(out.contains("SubscribeMode :: Handler"), "{out}");
        assert!(
            out.contains(
                "let __livepush_sub : Topics = async move { Topics :: one (\"a\") } . await ;"
            ),
            "{out}"
        );
        assert!(
            out.contains("__livepush_subscribe . with (:: livepush :: IntoSubscription :: into_subscription (:: std :: convert :: identity (__livepush_sub))) . await"),
            "{out}"
        );
    }
}

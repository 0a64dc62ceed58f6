//! Code generation: the handler, wrapped so that what it returns is published.
//!
//! ```text
//! #vis async fn name(__livepush_publish: PublishContext, <args>) -> Ret {
//!     const __LIVEPUSH_PUBLISH_ROUTE_0: PublishRoute = publish_route(.., |s| ReturnProbe::<Ret>.schema(s), ..);
//!     inventory::submit! { __LIVEPUSH_PUBLISH_ROUTE_0 }                   // one per attribute
//!     let __livepush_arg_0 = ToString::to_string(&id);           // argument placeholders
//!     let __livepush_out: Ret = async move { <body> }.await;
//!     // Everything is encoded before the first `.await`, so no borrow of the value is held
//!     // across it (the handler's future needs no `Sync` data).
//!     let __livepush_pending = match Publishable::published(&__livepush_out) {
//!         Some(__livepush_value) => Some((encode(__livepush_value), format!(..), ..)),
//!         None => None,
//!     };
//!     if let Some((__livepush_data, __livepush_topic_0, ..)) = __livepush_pending {
//!         __livepush_publish.publish("event", None, __livepush_topic_0, &__livepush_data).await;
//!     }
//!     __livepush_out
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_quote, Ident};

use super::validate::{Hole, Plan, Publication};
use crate::args;
use crate::handler::{self, Handler};
use crate::retain;
use crate::tokens::{call_over, option_str, respan, spanning};

/// The handler, wrapped.
pub(crate) fn expand(func: Handler, plan: Plan) -> TokenStream {
    let mut sig = func.sig.clone();
    let context = handler::insert_arg(
        &mut sig,
        "__livepush_publish",
        parse_quote!(::livepush::__private::PublishContext),
    );
    let out = Ident::new("__livepush_out", Span::call_site());
    let value = Ident::new("__livepush_value", Span::call_site());

    let payload = payload_schema(&sig, &plan.ret);
    let routes = plan
        .publications
        .iter()
        .enumerate()
        .map(|(i, p)| route(i, &plan.handler, p, &payload));
    let captures = plan.captures.iter().enumerate().map(|(i, placeholder)| {
        let var = capture_var(i);
        let expr = placeholder.expr();
        quote_spanned!(placeholder.span()=> let #var = ::std::string::ToString::to_string(&#expr);)
    });
    let run_body = func.run_body(&out, &plan.ret);
    // Spanned on the return type: a type that is not `Publishable` is reported there, once.
    let published = call_over(
        &plan.ret,
        quote!(::livepush::Publishable::published),
        spanning(&plan.ret, quote!(&#out)),
    );

    let pending = Pending::new(&plan, &context, &value);
    let (names, values) = (&pending.names, &pending.values);
    let publishes = &pending.publishes;

    let statements = quote! {
            #(#routes)*
            #(#captures)*
            #run_body
            let __livepush_pending = match #published {
                ::std::option::Option::Some(#value) => ::std::option::Option::Some((#(#values,)*)),
                ::std::option::Option::None => ::std::option::Option::None,
            };
            if let ::std::option::Option::Some((#(#names,)*)) = __livepush_pending {
                #(#publishes)*
            }
            #out
    };
    func.rewrite(&sig, statements)
}

/// What is computed from the value before publishing: the shared encoding (if any attribute
/// has no `data`), then each attribute's topic and own encoding (with `data`).
struct Pending {
    names: Vec<Ident>,
    values: Vec<TokenStream>,
    publishes: Vec<TokenStream>,
}

impl Pending {
    fn new(plan: &Plan, context: &Ident, value: &Ident) -> Pending {
        let mut pending = Pending {
            names: Vec::new(),
            values: Vec::new(),
            publishes: Vec::new(),
        };
        let shared = format_ident!("__livepush_data");
        if plan.publications.iter().any(|p| p.data.is_none()) {
            pending.add(
                shared.clone(),
                quote!(::livepush::__private::encode(#value)),
            );
        }
        for (i, publication) in plan.publications.iter().enumerate() {
            let topic = format_ident!("__livepush_topic_{i}");
            pending.add(topic.clone(), topic_expr(publication, value));
            let data = match &publication.data {
                Some(path) => {
                    let own = format_ident!("__livepush_data_{i}");
                    // Spanned on the path: a function of the wrong shape is reported there.
                    let value = respan(value, path.span());
                    pending.add(
                        own.clone(),
                        quote_spanned!(path.span()=> ::livepush::__private::encode(&#path(#value))),
                    );
                    own
                }
                None => shared.clone(),
            };
            let event = &publication.event;
            let category = option_str(publication.category.as_deref());
            pending.publishes.push(match &publication.retain {
                None => quote!(#context.publish(#event, #category, #topic, &#data).await;),
                Some(retain) => {
                    let ttl = retain::ttl_tokens(retain.ttl);
                    quote!(#context.publish_retained(#event, #category, #topic, &#data, #ttl).await;)
                }
            });
        }
        pending
    }

    fn add(&mut self, name: Ident, value: TokenStream) {
        self.names.push(name);
        self.values.push(value);
    }
}

/// The topic of one attribute, from the captured arguments and the value's fields.
fn topic_expr(publication: &Publication, value: &Ident) -> TokenStream {
    let args = publication
        .holes
        .iter()
        .map(|hole| match hole {
            Hole::Argument(i) => {
                let var = capture_var(*i);
                quote!(#var)
            }
            Hole::Field(placeholder) => placeholder.field_of(value),
        })
        .collect::<Vec<_>>();
    publication.template.topic_expr(&args)
}

fn capture_var(index: usize) -> Ident {
    format_ident!("__livepush_arg_{index}")
}

/// The registry entry of one attribute: a `const` (so that it reads as Rust, not as macro
/// input) submitted to the registry. Spanned on the attribute so that `line!()` is its line.
fn route(
    index: usize,
    handler: &str,
    publication: &Publication,
    payload: &TokenStream,
) -> TokenStream {
    let entry = format_ident!("__LIVEPUSH_PUBLISH_ROUTE_{index}");
    let topic = publication.topic.value();
    let event = &publication.event;
    let category = option_str(publication.category.as_deref());
    let data = option_str(publication.data.as_ref().map(args::display).as_deref());
    let mut entry_expr = quote_spanned! {publication.span=>
        ::livepush::__private::publish_route(
            #handler,
            ::std::module_path!(),
            #topic,
            #event,
            #category,
            #data,
            #payload,
            ::std::file!(),
            ::std::line!(),
        )
    };
    if let Some(retain) = &publication.retain {
        let ttl = retain::ttl_tokens(retain.ttl);
        entry_expr = quote!(::livepush::__private::retained_route(#entry_expr, #ttl));
    }
    quote_spanned! {publication.span=>
        const #entry: ::livepush::__private::PublishRoute = #entry_expr;
        ::livepush::__private::inventory::submit! { #entry }
    }
}

/// The registry's schema function of the published type: `<Ret as Publishable>::Data` through
/// the runtime's probe (`JsonSchema` when implemented, else none; a return type that is not
/// `Publishable` gets none here and its one error where the value is published). The entry is a static inside
/// the handler, where generic parameters, `Self` and `impl Trait` cannot be named: those get
/// none (and `impl Trait` its one error from the publishing code).
fn payload_schema(sig: &syn::Signature, ret: &syn::Type) -> TokenStream {
    let unnameable = names_any(quote!(#ret), &["Self", "impl"]);
    if !sig.generics.params.is_empty() || unnameable {
        return quote!(|_| ::std::option::Option::None);
    }
    quote! {
        |__livepush_schemas| {
            #[allow(unused_imports)]
            use ::livepush::__private::{NoSchema as _, ViaJsonSchema as _};
            let __livepush_probe = &::livepush::__private::ReturnProbe::<#ret>::new();
            __livepush_probe.payload_schema(__livepush_schemas)
        }
    }
}

/// Whether `tokens` hold one of the identifiers `names`, at any depth.
fn names_any(tokens: TokenStream, names: &[&str]) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => names.iter().any(|n| i == n),
        proc_macro2::TokenTree::Group(g) => names_any(g.stream(), names),
        _ => false,
    })
}

//! The async fn an attribute macro wraps: recognising it, and the pieces its new body is made of.
//!
//! Both attribute macros keep the handler's name, visibility, generics, attributes, arguments and
//! return type, add one extractor argument, and run the original body as an `async move` block so
//! that its `return` and `?` keep their meaning.

use proc_macro2::{Delimiter, Group};
use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::visit_mut::VisitMut;
use syn::{
    braced, parse_quote, token, Attribute, FnArg, Ident, Item, ReturnType, Signature, Token, Type,
    Visibility,
};

use crate::args::AttrName;
use crate::errors::Failure;

/// A fn under our attribute, its body kept as tokens. syn does not parse the body, so a syntax
/// error in a half-typed body is reported once, by rustc, while the rest still expands
/// (tracing-attributes' `instrument_speculative` does the same).
#[derive(Clone)]
pub(crate) struct Handler {
    /// The outer attributes (`#[...]`).
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    brace: token::Brace,
    /// The inner attributes (`#![...]`), which must stay first in the body.
    inner_attrs: Vec<Attribute>,
    /// The statements, as written.
    body: TokenStream,
}

impl Parse for Handler {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(Handler {
            attrs,
            vis,
            sig,
            brace,
            inner_attrs,
            body,
        })
    }
}

impl ToTokens for Handler {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.rewrite(&self.sig, self.body.clone()));
    }
}

impl Handler {
    /// Whether the body holds nothing.
    pub(crate) fn body_is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The body's braces (with their spans) around the inner attributes and `statements`.
    fn body_with(&self, statements: TokenStream) -> Group {
        let inner_attrs = &self.inner_attrs;
        let mut group = Group::new(Delimiter::Brace, quote!(#(#inner_attrs)* #statements));
        group.set_span(self.brace.span.join());
        group
    }

    /// The handler with `statements` for a body (the inner attributes kept first) and the
    /// signature `sig`.
    pub(crate) fn rewrite(&self, sig: &Signature, statements: TokenStream) -> TokenStream {
        let Handler { attrs, vis, .. } = self;
        let body = self.body_with(statements);
        quote!(#(#attrs)* #vis #sig #body)
    }

    /// `let #binding: #ret = async move { <body> }.await;`
    ///
    /// The type annotation lets `?` in the body convert errors as it did in the handler. A `let`
    /// cannot name an `impl Trait`, so those parts of the type are left to inference (`_`), which
    /// keeps the rest (`Result<_, AppError>`) known to `?`.
    pub(crate) fn run_body(&self, binding: &Ident, ret: &Type) -> TokenStream {
        let ty = without_impl_trait(ret);
        let mut body = Group::new(Delimiter::Brace, self.body.clone());
        body.set_span(self.brace.span.join());
        quote!(let #binding: #ty = async move #body.await;)
    }
}

/// The handler under `attr`, or the failure (followed by the untouched item) explaining that
/// the attribute goes on an async fn.
pub(crate) fn parse(item: TokenStream, attr: &AttrName) -> Result<Handler, Failure> {
    let error = match syn::parse2::<Handler>(item.clone()) {
        Ok(handler) => return Ok(handler),
        Err(error) => error,
    };
    let error = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(_)) | Err(_) => error,
        Ok(other) => {
            let (what, head) = describe(&other);
            syn::Error::new_spanned(
                head,
                format!(
                    "{} goes on an async axum handler (`async fn`), not on {what}",
                    attr.shown
                ),
            )
        }
    };
    Err(Failure::new(error, item))
}

/// What kind of item this is, and the tokens that name it (keyword and name), for errors.
fn describe(item: &Item) -> (&'static str, TokenStream) {
    match item {
        Item::Struct(s) => ("a struct", head(&s.struct_token, &s.ident)),
        Item::Enum(e) => ("an enum", head(&e.enum_token, &e.ident)),
        Item::Union(u) => ("a union", head(&u.union_token, &u.ident)),
        Item::Impl(i) => ("an impl block", head(&i.impl_token, &i.self_ty)),
        Item::Trait(t) => ("a trait", head(&t.trait_token, &t.ident)),
        Item::Mod(m) => ("a module", head(&m.mod_token, &m.ident)),
        Item::Const(c) => ("a const", head(&c.const_token, &c.ident)),
        Item::Static(s) => ("a static", head(&s.static_token, &s.ident)),
        Item::Type(t) => ("a type alias", head(&t.type_token, &t.ident)),
        Item::Use(u) => ("a use declaration", u.to_token_stream()),
        other => ("this item", other.to_token_stream()),
    }
}

fn head(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}

/// Refuses a handler that is not `async`, on its `fn` keyword.
pub(crate) fn check_async(sig: &Signature, attr: &AttrName) -> syn::Result<()> {
    match sig.asyncness {
        Some(_) => Ok(()),
        None => Err(syn::Error::new_spanned(
            sig.fn_token,
            format!(
                "{} goes on an async axum handler: make this an `async fn`",
                attr.shown
            ),
        )),
    }
}

/// Removes the attributes named `attr` (or `livepush::…`) and returns them.
pub(crate) fn take_attrs(attrs: &mut Vec<Attribute>, attr: &AttrName) -> Vec<Attribute> {
    let (ours, others) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| is_attr(a, attr.path));
    *attrs = others;
    ours
}

fn is_attr(attr: &Attribute, name: &str) -> bool {
    let path = attr.path();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [only] => only == name && path.leading_colon.is_none(),
        [krate, last] => (krate == "livepush" || krate == "livepush_macros") && last == name,
        _ => false,
    }
}

/// Adds the argument `name: ty` (a name no argument binds, from [`fresh_arg_name`]) first after
/// any receiver, and returns the name. It is an axum `FromRequestParts` extractor, so any
/// position but the last (the body extractor's) works.
pub(crate) fn insert_arg(sig: &mut Signature, base: &str, ty: syn::Type) -> Ident {
    let name = fresh_arg_name(sig, base);
    let at = usize::from(matches!(sig.inputs.first(), Some(FnArg::Receiver(_))));
    sig.inputs.insert(at, parse_quote!(#name: #ty));
    name
}

/// `base`, or `base_1`, `base_2`... if an argument already binds it: a handler wrapped twice
/// (an attribute under another name, `use livepush::publish_event as publish`) keeps working.
fn fresh_arg_name(sig: &Signature, base: &str) -> Ident {
    let taken: Vec<String> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => match &*typed.pat {
                syn::Pat::Ident(p) => Some(p.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    // One of the first `taken.len() + 1` candidates is free.
    let name = (0..=taken.len())
        .map(|n| {
            if n == 0 {
                base.to_owned()
            } else {
                format!("{base}_{n}")
            }
        })
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| base.to_owned());
    Ident::new(&name, Span::call_site())
}

/// The declared return type, if any.
pub(crate) fn return_type(sig: &Signature) -> Option<&Type> {
    match &sig.output {
        ReturnType::Type(_, ty) => Some(ty),
        ReturnType::Default => None,
    }
}

fn without_impl_trait(ty: &Type) -> Type {
    struct Infer;
    impl VisitMut for Infer {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                let underscore = Token![_](impl_trait.impl_token.span);
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: underscore,
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Infer.visit_type_mut(&mut ty);
    ty
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTR: AttrName = AttrName {
        path: "publish_event",
        shown: "#[publish_event]",
    };

    #[test]
    fn explains_that_the_attribute_goes_on_an_async_fn() {
        for (item, what) in [
            (
                quote!(
                    struct S;
                ),
                "not on a struct",
            ),
            (quote!(impl S {}), "not on an impl block"),
            (
                quote!(
                    trait T {}
                ),
                "not on a trait",
            ),
            (
                quote!(
                    enum E {}
                ),
                "not on an enum",
            ),
        ] {
            let out = match parse(item.clone(), &ATTR) {
                Ok(_) => panic!("parsed {item}"),
                Err(failure) => failure.into_tokens().to_string(),
            };
            assert!(out.contains(what), "{out}");
            assert!(out.ends_with(&item.to_string()), "keeps the item: {out}");
        }
        assert!(parse(
            quote!(
                async fn f() {}
            ),
            &ATTR
        )
        .is_ok());
    }

    #[test]
    fn finds_our_attributes_by_plain_or_crate_path() {
        let mut func: Handler = parse_quote! {
            #[publish_event(topic = "a")]
            #[doc = "kept"]
            #[livepush::publish_event(topic = "b")]
            #[other::publish_event]
            #[::livepush::publish_event(topic = "c")]
            async fn f() {}
        };
        let ours = take_attrs(&mut func.attrs, &ATTR);
        assert_eq!(ours.len(), 3);
        assert_eq!(func.attrs.len(), 2);
    }

    #[test]
    fn picks_an_argument_name_no_argument_binds() {
        let sig: Signature = parse_quote!(async fn f(__ctx: A, __ctx_1: B, x: C));
        assert_eq!(fresh_arg_name(&sig, "__ctx"), "__ctx_2");
        assert_eq!(fresh_arg_name(&sig, "__other"), "__other");
    }

    #[test]
    fn inserts_the_extractor_after_the_receiver_under_a_fresh_name() {
        let ty: Type = parse_quote!(Ctx);
        let mut sig: Signature = parse_quote!(async fn f(a: A));
        assert_eq!(insert_arg(&mut sig, "ctx", ty.clone()), "ctx");
        assert_eq!(
            sig.inputs.to_token_stream().to_string(),
            "ctx : Ctx , a : A"
        );
        let mut sig: Signature = parse_quote!(async fn f(&self, ctx: A));
        assert_eq!(insert_arg(&mut sig, "ctx", ty), "ctx_1");
        assert_eq!(
            sig.inputs.to_token_stream().to_string(),
            "& self , ctx_1 : Ctx , ctx : A"
        );
    }

    #[test]
    fn annotates_the_body_type_with_impl_trait_left_to_inference() {
        let out: Ident = parse_quote!(out);
        let handler: Handler = parse_quote!(
            async fn h() {
                x
            }
        );
        let ty: Type = parse_quote!(Result<Json<T>, E>);
        assert_eq!(
            handler.run_body(&out, &ty).to_string(),
            "let out : Result < Json < T > , E > = async move { x } . await ;"
        );
        let ty: Type = parse_quote!(Result<impl IntoResponse, E>);
        assert_eq!(
            handler.run_body(&out, &ty).to_string(),
            "let out : Result < _ , E > = async move { x } . await ;"
        );
        let ty: Type = parse_quote!(impl IntoResponse);
        assert_eq!(
            handler.run_body(&out, &ty).to_string(),
            "let out : _ = async move { x } . await ;"
        );
    }

    #[test]
    fn keeps_a_body_that_does_not_parse_for_rustc_to_report() {
        let handler: Handler = parse_quote!(
            async fn h() -> Json<u8> {
                #![allow(unused)]
                let x = ;
            }
        );
        assert!(!handler.body_is_empty());
        assert_eq!(
            handler.to_token_stream().to_string(),
            "async fn h () -> Json < u8 > { # ! [allow (unused)] let x = ; }"
        );
    }

    #[test]
    fn reports_a_non_async_fn_on_its_fn_keyword() {
        let message = check_async(&parse_quote!(fn f()), &ATTR)
            .unwrap_err()
            .to_string();
        assert!(message.contains("make this an `async fn`"), "{message}");
    }
}

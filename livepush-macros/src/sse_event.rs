//! `#[derive(SseEvent)]` with `#[sse(event = "...", topic = "...", category = "...")]`.

mod attr;
mod expand;
mod validate;

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::args::AttrName;
use crate::errors::{Errors, Failure};

const ATTR: AttrName = AttrName {
    path: "sse",
    shown: "#[sse]",
};

/// Expands `#[derive(SseEvent)]` on `input`; on failure, a stub impl ([`fallback`]).
pub(crate) fn expand(input: TokenStream) -> Result<TokenStream, Failure> {
    let input: DeriveInput =
        syn::parse2(input).map_err(|error| Failure::new(error, TokenStream::new()))?;
    let mut errors = Errors::default();
    let args = attr::parse(&input, &mut errors);
    match validate::validate(&input, args, errors) {
        Ok(event) => Ok(expand::expand(&input, &event)),
        Err(error) => Err(Failure::new(error, fallback(&input))),
    }
}

/// An `SseEvent` impl that is never used, emitted after the errors so that a mistake in
/// `#[sse(...)]` is one error: without it, every `hub.emit(&value)` would add "not an SSE event
/// type" (thiserror's `fallback.rs` does the same for `Error`). No registry entry, no checks.
fn fallback(input: &DeriveInput) -> TokenStream {
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[allow(unused_qualifications)]
        #[automatically_derived]
        impl #impl_generics ::livepush::SseEvent for #ty #ty_generics #where_clause {
            const EVENT: &'static str = "";
            const TOPIC: &'static str = "";
            const CATEGORY: ::std::option::Option<&'static str> = ::std::option::Option::None;
            fn topic(&self) -> ::std::string::String {
                ::std::unreachable!()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::assert_expansion;

    #[test]
    fn on_error_emits_the_errors_then_a_stub_impl() {
        let failure = expand(quote! {
            #[sse(event = "a b", topc = "t")]
            struct Wrapper<T: Clone> { inner: T }
        });
        assert_expansion("sse_event/fallback", failure.err().unwrap().into_tokens());
    }
}

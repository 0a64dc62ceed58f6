//! `#[derive(SseEvent)]` with `#[sse(event = "...", topic = "...", category = "...")]`.

mod attr;
mod expand;
mod validate;

use proc_macro2::TokenStream;

use crate::errors::Errors;

/// Expands `#[derive(SseEvent)]` on `input`.
pub(crate) fn derive_sse_event(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let args = attr::parse(&input, &mut errors);
    let event = validate::validate(&input, args, &mut errors);
    match (errors.finish(), event) {
        (Ok(()), Some(event)) => expand::expand(&input, &event),
        (Err(error), _) => error.to_compile_error(),
        // Validation returns no event only along with an error.
        (Ok(()), None) => TokenStream::new(),
    }
}

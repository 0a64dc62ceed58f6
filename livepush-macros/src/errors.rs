//! Error collection: every rule runs, and the user sees all the failures of one expansion at once.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far in one macro expansion.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error (with any errors it already combines).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Adds an error spanned on all of `tokens` (first to last token).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Whether no error was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The combined error, if any.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// `compile_error!`s for every error, followed by `fallback` (the user's item, so that one
    /// mistake does not cascade into "cannot find function" errors elsewhere).
    pub(crate) fn or_emit(self, fallback: impl ToTokens) -> Result<(), TokenStream> {
        self.finish().map_err(|error| {
            let mut tokens = error.to_compile_error();
            fallback.to_tokens(&mut tokens);
            tokens
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    #[test]
    fn combines_every_error_in_order() {
        let mut errors = Errors::default();
        assert!(errors.is_empty());
        errors.push(syn::Error::new(Span::call_site(), "first"));
        errors.push(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn emits_the_fallback_after_the_errors() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(Span::call_site(), "bad"));
        let tokens = errors
            .or_emit(quote::quote!(
                struct Kept;
            ))
            .unwrap_err()
            .to_string();
        assert!(tokens.contains("compile_error"), "{tokens}");
        assert!(tokens.ends_with("struct Kept ;"), "{tokens}");
    }
}

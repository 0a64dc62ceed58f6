//! Error collection: every rule runs, and the user sees all the failures of one expansion at once.
//!
//! Rules return `syn::Result`s; [`both`] and [`all`] join them, keeping every error of every
//! failed one, so a validation pass is a function to `syn::Result<Plan>` with no value that
//! exists only "when no error was pushed". [`Errors`] collects what parsing finds on the way
//! (unknown or repeated keys), and [`Failure`] is what a macro gives back when anything failed.

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

    /// `result`, or the errors collected so far followed by `result`'s.
    pub(crate) fn finish_with<T>(self, result: syn::Result<T>) -> syn::Result<T> {
        both(self.finish(), result).map(|((), value)| value)
    }

    /// The combined error, if any.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Both values, or the errors of every one that failed, `a`'s first.
pub(crate) fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
        (Err(mut first), Err(second)) => {
            first.combine(second);
            Err(first)
        }
    }
}

/// Every value, or the errors of every one that failed, in order.
// Not `try_fold`, which stops at the first error: every result is looked at.
#[allow(clippy::manual_try_fold)]
pub(crate) fn all<T>(results: impl IntoIterator<Item = syn::Result<T>>) -> syn::Result<Vec<T>> {
    results.into_iter().fold(Ok(Vec::new()), |done, next| {
        both(done, next).map(|(mut done, next)| {
            done.push(next);
            done
        })
    })
}

/// A failed expansion: the errors, and what to emit after them so that each mistake stays one
/// error. For an attribute macro that is the user's item (without our attributes), so callers
/// do not also get "cannot find function"; for the derive, a stub impl (thiserror's
/// `fallback.rs`), so uses of the type do not also get "not an SSE event type".
pub(crate) struct Failure {
    error: syn::Error,
    fallback: TokenStream,
}

impl Failure {
    pub(crate) fn new(error: syn::Error, fallback: impl ToTokens) -> Failure {
        Failure {
            error,
            fallback: fallback.into_token_stream(),
        }
    }

    /// `compile_error!`s for every error, then the fallback.
    pub(crate) fn into_tokens(self) -> TokenStream {
        let mut tokens = self.error.to_compile_error();
        tokens.extend(self.fallback);
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn error(message: &str) -> syn::Error {
        syn::Error::new(Span::call_site(), message)
    }

    fn messages<T>(result: syn::Result<T>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn combines_every_error_in_order() {
        let mut errors = Errors::default();
        assert!(errors.0.is_none());
        errors.push(error("first"));
        errors.push(error("second"));
        assert_eq!(messages(errors.finish()), ["first", "second"]);
    }

    #[test]
    fn joins_results_keeping_every_error() {
        assert_eq!(both(Ok::<_, syn::Error>(1), Ok(2)).unwrap(), (1, 2));
        assert_eq!(
            messages(both(Err::<(), _>(error("a")), Err::<(), _>(error("b")))),
            ["a", "b"]
        );
        assert_eq!(messages(both(Ok(1), Err::<(), _>(error("b")))), ["b"]);
        assert_eq!(all(vec![Ok(1), Ok(2)]).unwrap(), [1, 2]);
        assert_eq!(
            messages(all(vec![Err(error("a")), Ok(2), Err(error("c"))])),
            ["a", "c"]
        );
        let mut collected = Errors::default();
        collected.push(error("parse"));
        assert_eq!(
            messages(collected.finish_with(Err::<(), _>(error("rule")))),
            ["parse", "rule"]
        );
    }

    #[test]
    fn emits_the_fallback_after_the_errors() {
        let tokens = Failure::new(
            error("bad"),
            quote::quote!(
                struct Kept;
            ),
        )
        .into_tokens()
        .to_string();
        assert!(tokens.contains("compile_error"), "{tokens}");
        assert!(tokens.ends_with("struct Kept ;"), "{tokens}");
    }
}

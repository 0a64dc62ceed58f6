//! Parsing: `#[subscribe_to_events]` takes no arguments.

use proc_macro2::TokenStream;

use crate::errors::Errors;

/// Reports any argument, on the arguments.
pub(crate) fn check_no_args(args: TokenStream, errors: &mut Errors) {
    if !args.is_empty() {
        errors.spanned(
            args,
            "#[subscribe_to_events] takes no arguments: the topics come from `?topic=a,b`, or from what the handler returns (`Topics`, `Subscription`)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn refuses_any_argument() {
        let mut errors = Errors::default();
        check_no_args(quote!(), &mut errors);
        assert!(errors.is_empty());
        check_no_args(quote!(topic = "a"), &mut errors);
        assert!(errors
            .finish()
            .unwrap_err()
            .to_string()
            .starts_with("#[subscribe_to_events] takes no arguments"));
    }
}

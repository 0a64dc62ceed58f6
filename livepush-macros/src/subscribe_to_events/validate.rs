//! Every rule of `#[subscribe_to_events]`, and where the handler's topics come from.

use syn::{Attribute, ItemFn, Type};

use crate::errors::Errors;
use crate::handler;

/// Where the topics come from.
pub(crate) enum Mode {
    /// `async fn events() {}`: from `?topic=a,b`.
    Query,
    /// A body returning `Topics`, `Subscription`, `Result<_, E>`...: from the body.
    Handler(Box<Type>),
}

/// Checks the handler. `repeated` are further `#[subscribe_to_events]` on it.
pub(crate) fn validate(func: &ItemFn, repeated: &[Attribute], errors: &mut Errors) -> Mode {
    handler::check_async(&func.sig, super::ATTRIBUTE, errors);
    for attr in repeated {
        errors.spanned(
            attr,
            "#[subscribe_to_events] is given twice: remove this one",
        );
    }
    match handler::return_type(&func.sig) {
        Some(ty) => Mode::Handler(Box::new(ty.clone())),
        None => {
            if !func.block.stmts.is_empty() {
                errors.spanned(
                    &func.sig,
                    "a #[subscribe_to_events] handler with a body must return its topics: add `-> Topics` (or `Subscription`, `Result<Topics, E>`), or leave the body empty to take them from `?topic=a,b`",
                );
            }
            Mode::Query
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn mode(func: ItemFn) -> Result<Mode, String> {
        let mut errors = Errors::default();
        let mode = validate(&func, &[], &mut errors);
        errors.finish().map(|()| mode).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_body_takes_topics_from_the_query() {
        assert!(matches!(
            mode(parse_quote!(
                async fn events() {}
            )),
            Ok(Mode::Query)
        ));
        assert!(matches!(
            mode(parse_quote!(
                async fn events(_user: AuthUser) {}
            )),
            Ok(Mode::Query)
        ));
    }

    #[test]
    fn a_body_with_a_return_type_chooses_the_topics() {
        let func = parse_quote!(
            async fn mine(user: AuthUser) -> Result<Topics, StatusCode> {
                Ok(Topics::one(format!("user:{}", user.id)))
            }
        );
        assert!(matches!(mode(func), Ok(Mode::Handler(_))));
    }

    #[test]
    fn a_body_without_a_return_type_is_refused() {
        let error = mode(parse_quote!(
            async fn events() {
                let _x = 1;
            }
        ))
        .err()
        .unwrap();
        assert!(error.contains("must return its topics"), "{error}");
    }
}

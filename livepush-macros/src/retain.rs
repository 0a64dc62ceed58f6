//! `retain`, `retain_ttl = <seconds>` and (in `#[sse]`) `retain_key = "..."`: a publication kept
//! by the broker as the current value of its topic, shared by `#[publish_event]` and
//! `#[derive(SseEvent)]` (parse, validate and the tokens of the runtime's `Retain`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr};

use crate::args::{self, Arg, Given};
use crate::errors::{both, Errors};
use crate::template::Template;

/// The longest `retain_ttl`: a year (the runtime's bound).
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// The retain keys of one attribute, as written.
#[derive(Default)]
pub(crate) struct RetainArgs {
    /// `retain` (or `retain = true`), kept for its span.
    flag: Option<Ident>,
    flag_error: Option<syn::Error>,
    ttl: Option<(Ident, Given<LitInt>)>,
    key: Option<(Ident, Given<LitStr>)>,
}

/// A checked retain: the TTL in seconds and the key template, if any.
pub(crate) struct Retained {
    pub(crate) ttl: Option<u64>,
    pub(crate) key: Option<(LitStr, Template)>,
}

impl RetainArgs {
    /// Takes `arg` when it is one of the retain keys (`retain_key` only where `with_key`);
    /// answers whether it did.
    pub(crate) fn take(&mut self, arg: &Arg, with_key: bool) -> bool {
        match arg.key.to_string().as_str() {
            "retain" => {
                match &arg.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => {
                        if b.value {
                            self.flag = Some(arg.key.clone());
                        }
                    }
                    other => {
                        self.flag_error = Some(syn::Error::new_spanned(
                            other,
                            "`retain` takes no value: write `retain`",
                        ))
                    }
                }
                true
            }
            "retain_ttl" => {
                self.ttl = Some((arg.key.clone(), int(arg)));
                true
            }
            "retain_key" if with_key => {
                self.key = Some((arg.key.clone(), args::lit_str(arg)));
                true
            }
            _ => false,
        }
    }

    /// Every rule: `retain_ttl` and `retain_key` need `retain`; a TTL is 1 second to a year; a
    /// key is a template. `None` when not retained.
    pub(crate) fn validate(self) -> syn::Result<Option<Retained>> {
        let mut errors = Errors::default();
        if let Some(error) = self.flag_error {
            errors.push(error);
        }
        let needs_flag = |key: &Ident, errors: &mut Errors| {
            errors.spanned(
                key,
                format!("`{key}` applies to retained events: add `retain` to this attribute"),
            )
        };
        let ttl = match self.ttl {
            None => Ok(None),
            Some((key, _)) if self.flag.is_none() => {
                needs_flag(&key, &mut errors);
                Ok(None)
            }
            Some((_, given)) => given
                .optional()
                .and_then(|lit| lit.map(check_ttl).transpose()),
        };
        let key = match self.key {
            None => Ok(None),
            Some((key, _)) if self.flag.is_none() => {
                needs_flag(&key, &mut errors);
                Ok(None)
            }
            Some((_, given)) => given.optional().and_then(|lit| {
                lit.map(|lit| Template::parse(&lit).map(|template| (lit, template)))
                    .transpose()
            }),
        };
        let (ttl, key) = errors.finish_with(both(ttl, key))?;
        Ok(self.flag.map(|_| Retained { ttl, key }))
    }
}

fn int(arg: &Arg) -> Given<LitInt> {
    match &arg.value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => Given::Valid(lit.clone()),
        other => Given::Invalid(syn::Error::new_spanned(
            other,
            format!(
                "`{}` expects a whole number of seconds, like `{} = 60`",
                arg.key, arg.key
            ),
        )),
    }
}

fn check_ttl(lit: LitInt) -> syn::Result<u64> {
    match lit.base10_parse::<u64>() {
        Ok(secs) if (1..=MAX_TTL_SECS).contains(&secs) => Ok(secs),
        _ => Err(syn::Error::new_spanned(
            &lit,
            format!(
                "`retain_ttl` is in seconds, from 1 to {MAX_TTL_SECS} (a year); leave it out to keep the value until it is replaced"
            ),
        )),
    }
}

/// `Option<u64>` tokens of a TTL in seconds.
pub(crate) fn ttl_tokens(ttl: Option<u64>) -> TokenStream {
    match ttl {
        Some(secs) => quote!(::std::option::Option::Some(#secs)),
        None => quote!(::std::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    const ATTR: args::AttrName = args::AttrName {
        path: "x",
        shown: "#[x]",
    };

    /// A checked retain as (TTL, key text), or the error messages.
    type Checked = Result<Option<(Option<u64>, Option<String>)>, Vec<String>>;

    fn checked(tokens: TokenStream) -> Checked {
        let mut errors = Errors::default();
        let mut retain = RetainArgs::default();
        for arg in args::parse(tokens, &ATTR, &mut errors) {
            assert!(retain.take(&arg, true), "{}", arg.key);
        }
        errors
            .finish_with(retain.validate())
            .map(|r| r.map(|r| (r.ttl, r.key.map(|(lit, _)| lit.value()))))
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_bare_retain_with_an_optional_ttl_and_key() {
        assert_eq!(checked(quote!(retain)), Ok(Some((None, None))));
        assert_eq!(
            checked(quote!(retain, retain_ttl = 60, retain_key = "{id}")),
            Ok(Some((Some(60), Some("{id}".to_owned()))))
        );
        assert_eq!(checked(quote!(retain = false)), Ok(None));
    }

    #[test]
    fn ttls_and_keys_without_retain_and_bad_ttls_are_errors() {
        let errors = checked(quote!(retain_ttl = 5, retain_key = "k")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("`retain_ttl` applies to retained events"));
        for bad in [
            quote!(retain, retain_ttl = 0),
            quote!(retain, retain_ttl = 99999999999),
        ] {
            let errors = checked(bad).unwrap_err();
            assert!(
                errors[0].starts_with("`retain_ttl` is in seconds"),
                "{errors:?}"
            );
        }
        let errors = checked(quote!(retain, retain_ttl = "5")).unwrap_err();
        assert!(errors[0].contains("whole number of seconds"), "{errors:?}");
    }
}

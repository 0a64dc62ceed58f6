//! `key = value, ...` attribute arguments, shared by `#[publish_event(...)]` and `#[sse(...)]`.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// One `key = value` argument.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Expr,
}

/// Parses `key = value, ...`, reporting what is not of that shape. `attribute` names the
/// attribute in messages, such as `#[publish_event]`.
pub(crate) fn parse(tokens: TokenStream, attribute: &str, errors: &mut Errors) -> Vec<Arg> {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return Vec::new();
        }
    };
    metas
        .into_iter()
        .filter_map(|meta| match meta {
            Meta::NameValue(nv) => match nv.path.get_ident() {
                Some(key) => Some(Arg {
                    key: key.clone(),
                    value: nv.value,
                }),
                None => {
                    errors.spanned(
                        &nv.path,
                        format!(
                            "unknown key in {attribute}: expected a plain name such as `topic`"
                        ),
                    );
                    None
                }
            },
            Meta::Path(path) => {
                errors.spanned(
                    &path,
                    format!("`{}` needs a value, like `key = \"...\"`", display(&path)),
                );
                None
            }
            Meta::List(list) => {
                errors.spanned(
                    &list,
                    format!("expected `key = value` in {attribute}, found a list"),
                );
                None
            }
        })
        .collect()
}

/// Drops repeated keys, with an error on each repetition.
pub(crate) fn unique(args: Vec<Arg>, errors: &mut Errors) -> Vec<Arg> {
    let mut seen = BTreeSet::new();
    args.into_iter()
        .filter(|arg| {
            let first = seen.insert(arg.key.to_string());
            if !first {
                errors.spanned(
                    &arg.key,
                    format!("duplicate key `{}`: give it once", arg.key),
                );
            }
            first
        })
        .collect()
}

/// Reports a key that `attribute` does not know, suggesting the closest known one.
pub(crate) fn unknown_key(arg: &Arg, attribute: &str, known: &[&str], errors: &mut Errors) {
    let key = arg.key.to_string();
    let expected = one_of(known);
    let message = match closest(&key, known) {
        Some(near) => format!(
            "unknown key `{key}` in {attribute}: did you mean `{near}`? (expected {expected})"
        ),
        None => format!("unknown key `{key}` in {attribute}: expected {expected}"),
    };
    errors.spanned(&arg.key, message);
}

/// The value of `arg` as a string literal.
pub(crate) fn lit_str(arg: &Arg, errors: &mut Errors) -> Option<LitStr> {
    match ungroup(&arg.value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit.clone()),
        other => {
            errors.spanned(
                other,
                format!(
                    "`{}` expects a string literal, like `{} = \"...\"`",
                    arg.key, arg.key
                ),
            );
            None
        }
    }
}

/// The value of `arg` as a path, such as a function's.
pub(crate) fn path(arg: &Arg, errors: &mut Errors) -> Option<syn::Path> {
    match ungroup(&arg.value) {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        other => {
            errors.spanned(
                other,
                format!(
                    "`{}` expects the path of a function, like `{} = my_module::only_id`",
                    arg.key, arg.key
                ),
            );
            None
        }
    }
}

/// Values passed through `macro_rules!` fragments arrive wrapped in invisible groups.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => ungroup(&group.expr),
        other => other,
    }
}

/// `a::b` as written, without the spaces of `TokenStream`'s display.
pub(crate) fn display(path: &syn::Path) -> String {
    let mut text: String = quote::ToTokens::to_token_stream(path).to_string();
    text.retain(|c| !c.is_whitespace());
    text
}

/// "`a`, `b` or `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// The known name within two edits of `key`, for typos such as `topc` or `evnet`.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (a transposition counts as one edit).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn parses_string_and_path_values() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic = "a", data = crate::ids::only_id),
            "#[x]",
            &mut errors,
        );
        assert_eq!(args.len(), 2);
        assert_eq!(lit_str(&args[0], &mut errors).unwrap().value(), "a");
        assert_eq!(
            display(&path(&args[1], &mut errors).unwrap()),
            "crate::ids::only_id"
        );
        assert!(errors.is_empty());
    }

    #[test]
    fn reports_bare_keys_lists_and_wrong_value_kinds_together() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic, event(x), a::b = "c", data = "f", category = 3),
            "#[x]",
            &mut errors,
        );
        for arg in &args {
            match arg.key.to_string().as_str() {
                "data" => assert!(path(arg, &mut errors).is_none()),
                _ => assert!(lit_str(arg, &mut errors).is_none()),
            }
        }
        let messages = messages(errors);
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert!(messages[0].contains("`topic` needs a value"));
        assert!(messages[1].contains("found a list"));
        assert!(messages[2].contains("unknown key"));
        assert!(messages[3].contains("expects the path of a function"));
        assert!(messages[4].contains("`category` expects a string literal"));
    }

    #[test]
    fn keeps_the_first_of_repeated_keys() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic = "a", topic = "b", event = "e"),
            "#[x]",
            &mut errors,
        );
        let args = unique(args, &mut errors);
        assert_eq!(args.len(), 2);
        assert_eq!(messages(errors), ["duplicate key `topic`: give it once"]);
    }

    #[test]
    fn suggests_the_closest_known_key() {
        assert_eq!(closest("topc", &["topic", "event"]), Some("topic"));
        assert_eq!(closest("evnet", &["topic", "event"]), Some("event"));
        assert_eq!(closest("name", &["topic", "event", "category"]), None);
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }

    #[test]
    fn a_syntax_error_is_reported_once() {
        let mut errors = Errors::default();
        let args = parse(quote!(topic: "a"), "#[x]", &mut errors);
        assert!(args.is_empty());
        assert_eq!(messages(errors).len(), 1);
    }
}

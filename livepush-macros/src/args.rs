//! `key = value, ...` attribute arguments, shared by `#[publish_event(...)]` and `#[sse(...)]`.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// How an attribute is named: `path` is what it is matched by, `shown` what messages call it.
pub(crate) struct AttrName {
    pub(crate) path: &'static str,
    pub(crate) shown: &'static str,
}

/// One key of an attribute, as given: absent, given with a value of the wrong kind (with the
/// error saying so), or given well. A key with a wrong value is therefore never also "missing".
pub(crate) enum Given<T> {
    Absent,
    Invalid(syn::Error),
    Valid(T),
}

impl<T> Given<T> {
    /// The value of an optional key.
    pub(crate) fn optional(self) -> syn::Result<Option<T>> {
        match self {
            Given::Absent => Ok(None),
            Given::Invalid(error) => Err(error),
            Given::Valid(value) => Ok(Some(value)),
        }
    }

    /// The value of a required key; when absent, an error on `whole` (the attribute) that says
    /// to add it: "missing `{key}` in {attribute}: add `{key} = \"...\"`, {hint}".
    pub(crate) fn required(
        self,
        key: &str,
        attr: &AttrName,
        hint: &str,
        whole: &TokenStream,
    ) -> syn::Result<T> {
        match self {
            Given::Absent => Err(syn::Error::new_spanned(
                whole,
                format!(
                    "missing `{key}` in {}: add `{key} = \"...\"`, {hint}",
                    attr.shown
                ),
            )),
            Given::Invalid(error) => Err(error),
            Given::Valid(value) => Ok(value),
        }
    }
}

impl Given<LitStr> {
    /// The `topic` of `#[publish_event]` or `#[sse]`, which both require one.
    pub(crate) fn required_topic(
        self,
        attr: &AttrName,
        whole: &TokenStream,
    ) -> syn::Result<LitStr> {
        self.required("topic", attr, TOPIC_HINT, whole)
    }
}

const TOPIC_HINT: &str = "such as `topic = \"comments\"` or `topic = \"ticket:{id}\"`";

/// Keys that may be given without a value, as flags.
const FLAGS: &[&str] = &["retain"];

/// One `key = value` argument.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Expr,
}

/// Parses `key = value, ...`, reporting what is not of that shape.
pub(crate) fn parse(tokens: TokenStream, attr: &AttrName, errors: &mut Errors) -> Vec<Arg> {
    let attribute = attr.shown;
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
            // A flag (`retain`) stands for `flag = true`.
            Meta::Path(path)
                if path
                    .get_ident()
                    .is_some_and(|i| FLAGS.iter().any(|f| i == f)) =>
            {
                let key = path.get_ident().cloned()?;
                let value = syn::LitBool::new(true, key.span());
                Some(Arg {
                    key,
                    value: Expr::Lit(ExprLit {
                        attrs: Vec::new(),
                        lit: Lit::Bool(value),
                    }),
                })
            }
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

/// The error for a key that `attr` does not know, suggesting the closest known one, and that
/// key: a typo of a required key (`topc`) then stands for it, given with an invalid value,
/// rather than being also reported as "missing `topic`" ([`typo_of`]).
pub(crate) fn unknown_key(
    arg: &Arg,
    attr: &AttrName,
    known: &[&'static str],
) -> (syn::Error, Option<&'static str>) {
    let key = arg.key.to_string();
    let attribute = attr.shown;
    let expected = one_of(known);
    let near = closest(&key, known);
    let message = match near {
        Some(near) => format!(
            "unknown key `{key}` in {attribute}: did you mean `{near}`? (expected {expected})"
        ),
        None => format!("unknown key `{key}` in {attribute}: expected {expected}"),
    };
    (syn::Error::new_spanned(&arg.key, message), near)
}

/// Records the unknown-key `error` on `slot` (the key it is a typo of) when that key was not
/// given, so that one typo is one error; otherwise adds it to `errors`.
pub(crate) fn typo_of<T>(slot: Option<&mut Given<T>>, error: syn::Error, errors: &mut Errors) {
    match slot {
        Some(given @ Given::Absent) => *given = Given::Invalid(error),
        _ => errors.push(error),
    }
}

/// The value of `arg` as a string literal.
pub(crate) fn lit_str(arg: &Arg) -> Given<LitStr> {
    match ungroup(&arg.value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Given::Valid(lit.clone()),
        other => Given::Invalid(syn::Error::new_spanned(
            other,
            format!(
                "`{}` expects a string literal, like `{} = \"...\"`",
                arg.key, arg.key
            ),
        )),
    }
}

/// The value of `arg` as a path, such as a function's.
pub(crate) fn path(arg: &Arg) -> Given<syn::Path> {
    match ungroup(&arg.value) {
        Expr::Path(p) if p.qself.is_none() => Given::Valid(p.path.clone()),
        other => Given::Invalid(syn::Error::new_spanned(
            other,
            format!(
                "`{}` expects the path of a function, like `{} = my_module::only_id`",
                arg.key, arg.key
            ),
        )),
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
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
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

    const ATTR: AttrName = AttrName {
        path: "x",
        shown: "#[x]",
    };

    fn messages(result: syn::Result<()>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn parses_string_and_path_values() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic = "a", data = crate::ids::only_id),
            &ATTR,
            &mut errors,
        );
        assert_eq!(args.len(), 2);
        assert!(matches!(lit_str(&args[0]), Given::Valid(lit) if lit.value() == "a"));
        assert!(
            matches!(path(&args[1]), Given::Valid(path) if display(&path) == "crate::ids::only_id")
        );
        assert!(errors.finish().is_ok());
    }

    #[test]
    fn reports_bare_keys_lists_and_wrong_value_kinds_together() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic, event(x), a::b = "c", data = "f", category = 3),
            &ATTR,
            &mut errors,
        );
        for arg in &args {
            let given = match arg.key.to_string().as_str() {
                "data" => path(arg).optional().map(drop),
                _ => lit_str(arg).optional().map(drop),
            };
            if let Err(error) = given {
                errors.push(error);
            }
        }
        let messages = messages(errors.finish());
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert!(messages[0].contains("`topic` needs a value"));
        assert!(messages[1].contains("found a list"));
        assert!(messages[2].contains("unknown key"));
        assert!(messages[3].contains("expects the path of a function"));
        assert!(messages[4].contains("`category` expects a string literal"));
    }

    #[test]
    fn a_missing_required_key_says_what_to_add() {
        let whole = quote!(x);
        let missing = Given::<LitStr>::Absent.required("topic", &ATTR, TOPIC_HINT, &whole);
        assert_eq!(
            missing.err().unwrap().to_string(),
            "missing `topic` in #[x]: add `topic = \"...\"`, such as `topic = \"comments\"` or `topic = \"ticket:{id}\"`"
        );
        let invalid = Given::<LitStr>::Invalid(syn::Error::new_spanned(&whole, "wrong kind"));
        assert_eq!(
            invalid
                .required("topic", &ATTR, TOPIC_HINT, &whole)
                .err()
                .unwrap()
                .to_string(),
            "wrong kind"
        );
        assert!(matches!(Given::<u8>::Absent.optional(), Ok(None)));
    }

    #[test]
    fn keeps_the_first_of_repeated_keys() {
        let mut errors = Errors::default();
        let args = parse(
            quote!(topic = "a", topic = "b", event = "e"),
            &ATTR,
            &mut errors,
        );
        let args = unique(args, &mut errors);
        assert_eq!(args.len(), 2);
        assert_eq!(
            messages(errors.finish()),
            ["duplicate key `topic`: give it once"]
        );
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
        let args = parse(quote!(topic: "a"), &ATTR, &mut errors);
        assert!(args.is_empty());
        assert_eq!(messages(errors.finish()).len(), 1);
    }
}

//! The names a handler's arguments bind, which `{name}` placeholders refer to first.

use std::collections::BTreeSet;

use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{FnArg, Pat, Token};

/// Every name bound by the argument patterns, including inside destructured extractors such as
/// `Path((org, id)): Path<(String, u64)>` or `State(AppState { db, .. }): State<AppState>`.
pub(crate) fn argument_bindings(inputs: &Punctuated<FnArg, Token![,]>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for input in inputs {
        if let FnArg::Typed(typed) = input {
            collect(&typed.pat, &mut names);
        }
    }
    names
}

fn collect(pat: &Pat, names: &mut BTreeSet<String>) {
    match pat {
        Pat::Ident(p) => {
            names.insert(p.ident.unraw().to_string());
            if let Some((_, sub)) = &p.subpat {
                collect(sub, names);
            }
        }
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| collect(e, names)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| collect(e, names)),
        Pat::Slice(p) => p.elems.iter().for_each(|e| collect(e, names)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect(&f.pat, names)),
        Pat::Reference(p) => collect(&p.pat, names),
        Pat::Paren(p) => collect(&p.pat, names),
        Pat::Type(p) => collect(&p.pat, names),
        // The alternatives of an or-pattern bind the same names.
        Pat::Or(p) => p.cases.iter().take(1).for_each(|c| collect(c, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn bindings(sig: syn::Signature) -> Vec<String> {
        argument_bindings(&sig.inputs).into_iter().collect()
    }

    #[test]
    fn finds_plain_and_destructured_bindings() {
        let sig = parse_quote! {
            async fn h(
                &self,
                mut plain: u8,
                Path(id): Path<u64>,
                Path((org, ref repo)): Path<(String, String)>,
                State(AppState { db, cache: c, .. }): State<AppState>,
                Query(Filter { page: Page(n) }): Query<Filter>,
                &(a, _): &(u8, u8),
                all @ Json(_): Json<Value>,
                _: Extension<X>,
                r#type: String,
            )
        };
        assert_eq!(
            bindings(sig),
            ["a", "all", "c", "db", "id", "n", "org", "plain", "repo", "type"]
        );
    }

    #[test]
    fn a_handler_without_arguments_binds_nothing() {
        assert!(bindings(parse_quote!(async fn h())).is_empty());
    }
}

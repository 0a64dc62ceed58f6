//! Small token helpers shared by the expansions.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};

/// `Some("text")` or `None`, as an `Option<&'static str>` expression.
pub(crate) fn option_str(text: Option<&str>) -> TokenStream {
    match text {
        Some(text) => quote!(::std::option::Option::Some(#text)),
        None => quote!(::std::option::Option::None),
    }
}

/// `ident` with another span, so that an error about the expression it is part of points at
/// the user's tokens rather than at the attribute.
pub(crate) fn respan(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(span);
    ident
}

/// `path(args)`, spanned so that rustc reports the call over all of `user` (its first to last
/// token) rather than on one token: the path on `user`'s first token except its last segment,
/// which with the parentheses takes `user`'s last token. This is the trick of
/// `syn::Error::new_spanned`, for errors rustc reports; used to point a failed trait bound at the
/// user's whole return type.
pub(crate) fn call_over(user: &impl ToTokens, path: TokenStream, args: TokenStream) -> TokenStream {
    let (first, last) = span_range(user);
    let mut path: Vec<TokenTree> = path.into_iter().collect();
    let count = path.len();
    for (i, token) in path.iter_mut().enumerate() {
        token.set_span(if i + 1 == count { last } else { first });
    }
    let mut args = Group::new(Delimiter::Parenthesis, args);
    args.set_span(last);
    quote!(#(#path)* #args)
}

/// `expr` unchanged (through `::std::convert::identity`), reported over all of `user`.
pub(crate) fn spanning(user: &impl ToTokens, expr: TokenStream) -> TokenStream {
    call_over(user, quote!(::std::convert::identity), expr)
}

/// The spans of the first and last tokens of `user`.
fn span_range(user: &impl ToTokens) -> (Span, Span) {
    let mut tokens = user.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
    let last = tokens.last().map_or(first, |t| t.span());
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanning_wraps_the_expression_without_changing_it() {
        let ty: syn::Type = syn::parse_quote!(Result<Json<T>, E>);
        let out = spanning(&ty, quote!(&x)).to_string();
        assert_eq!(out, ":: std :: convert :: identity (& x)");
    }
}

//! `#[subscribe_to_events]`: an async handler becomes a Server-Sent Events endpoint.

mod attr;
mod expand;
mod validate;

use proc_macro2::TokenStream;

use crate::errors::Errors;
use crate::handler;

const ATTRIBUTE: &str = "subscribe_to_events";

/// Expands `#[subscribe_to_events(args)] item`.
pub(crate) fn subscribe_to_events(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func = match handler::parse(item, ATTRIBUTE) {
        Ok(func) => func,
        Err(error_and_item) => return error_and_item,
    };
    let mut errors = Errors::default();
    attr::check_no_args(args, &mut errors);
    let repeated = handler::take_attrs(&mut func.attrs, ATTRIBUTE);
    let mode = validate::validate(&func, &repeated, &mut errors);
    if let Err(error_and_item) = errors.or_emit(&func) {
        return error_and_item;
    }
    expand::expand(func, &mode)
}

//! The attribute and derive macros of [livepush](https://docs.rs/livepush).
//!
//! Use them through the `livepush` crate, which re-exports them: the code they generate names
//! `::livepush` items only (through its hidden `__private` module), so `livepush` is the only
//! dependency a user adds. The two crates are released together and `livepush` depends on this
//! one with an exact version (`=`), so they cannot drift apart.
//!
//! Each macro is parsed (arguments into a plain struct, each key given, given wrong or absent),
//! validated (every rule; all failures reported together, each spanned on the offending token)
//! and expanded (wiring into `::livepush::__private` calls). The topic, name and template rules
//! are those of `livepush-core`, which the runtime applies too. This file holds only the entry
//! points and `expand`, the one place where a result becomes tokens.

extern crate proc_macro;

#[cfg(test)]
mod agreement;
mod args;
mod errors;
mod event_name;
mod handler;
mod publish_event;
mod retain;
#[cfg(test)]
mod snapshot;
mod sse_event;
mod subscribe_to_events;
mod template;
mod tokens;

use proc_macro::TokenStream;

/// Publishes the value an async axum handler returns, after it succeeded.
///
/// `#[publish_event(topic = "...", event = "...", category = "...", data = path::to::fn)]`
///
/// - `topic` (required): a topic template. `{name}` is a handler argument binding (destructured
///   extractors such as `Path(id): Path<u64>` included), read before the handler runs; a name that
///   no argument binds is a field of the published value. `{a.b}` reads a nested field; `{{` and
///   `}}` are literal braces. The literal text follows the topic rule: ASCII letters, digits and
///   `_ - . : / @ # = + ~ *`, at most 256 bytes.
/// - `event`: the SSE event name, 1 to 128 ASCII letters, digits and `_ . : / -` (default: the
///   handler's name).
/// - `category`: a category for `?category=` filters, with the same rule as `event`.
/// - `data`: a `fn(&T) -> impl Serialize` mapping the returned value to what is published, for
///   example only its id.
///
/// The return type must implement `livepush::Publishable` (`Json<T>`, `(StatusCode, Json<T>)`,
/// `Result` of these, ...): only a success (2xx, `Ok`) is published. Publishing fails open: a
/// broker failure is logged and counted, and the response goes out unchanged. Attributes stack;
/// the value is serialized once for all of those without `data`. Each attribute is listed in
/// `livepush::registry` (and the AsyncAPI document).
///
/// ```ignore
/// #[publish_event(topic = "comments", event = "comment_created")]
/// #[publish_event(topic = "comment:{id}", event = "created")]
/// async fn create(Json(new): Json<NewComment>) -> (StatusCode, Json<Comment>) { ... }
/// ```
///
/// # What it does to the handler
///
/// The handler keeps its name, visibility, generics, attributes, arguments and return type, and
/// its body runs as an `async move` block, so `return` and `?` keep their meaning. It gains one
/// argument, an axum extractor inserted first (after any receiver), named `__livepush_publish`
/// (or `__livepush_publish_1`, ... if that name is taken). So the handler's arity is one more
/// than written: call it through a `Router` in tests, not directly, and expect rustdoc of a `pub`
/// handler to show the extra argument.
#[proc_macro_attribute]
pub fn publish_event(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(publish_event::expand(args.into(), item.into()))
}

/// Turns an async axum handler into a Server-Sent Events endpoint.
///
/// `#[subscribe_to_events]` takes no arguments. With an empty body and no return type, the
/// topics come from the query, `?topic=a,b`; the handler's arguments (extractors such as an
/// authenticated user) still run first, and can refuse the request.
///
/// A body that returns `livepush::Topics`, `livepush::Subscription` or
/// `Result<_, E: IntoResponse>` of these chooses the topics itself, after its extractors ran; an
/// `Err` is answered as the response. Each handler is listed in `livepush::registry`.
///
/// ```ignore
/// #[subscribe_to_events]
/// async fn events() {}
///
/// #[subscribe_to_events]
/// async fn my_events(user: AuthUser) -> Result<Topics, StatusCode> {
///     Ok(Topics::one(format!("user:{}", user.id)))
/// }
/// ```
///
/// # What it does to the handler
///
/// The handler keeps its name, visibility, generics, attributes and arguments, and its body
/// runs as an `async move` block. It gains one argument, an axum extractor inserted first (after
/// any receiver), named `__livepush_subscribe` (or `__livepush_subscribe_1`, ... if taken), and
/// its return type becomes `axum::response::Response` (the SSE stream, or the error): `my_events`
/// above is an `async fn(SubscribeContext, AuthUser) -> Response`. Call it through a `Router` in
/// tests, not directly.
#[proc_macro_attribute]
pub fn subscribe_to_events(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(subscribe_to_events::expand(args.into(), item.into()))
}

/// Derives `livepush::SseEvent` for a struct, so that `Hub::emit(&value)` publishes it.
///
/// `#[sse(event = "...", topic = "...", category = "...")]`:
///
/// - `event` (required): the SSE event name, 1 to 128 ASCII letters, digits and `_ . : / -`.
/// - `topic` (required): a topic template whose placeholders name fields (`{user_id}`,
///   `{user.id}`; `{{` and `}}` are literal braces), with the same rules as in
///   `#[publish_event]`.
/// - `category`: a category for `?category=` filters, with the same rule as `event`.
///
/// Several `#[sse(...)]` attributes merge. The type must be a struct without generic
/// parameters, and implement `serde::Serialize` (derive it too: events are sent as JSON). It is
/// listed in `livepush::registry` (`has_mapping_for::<T>()`, the AsyncAPI document).
///
/// ```ignore
/// #[derive(Serialize, SseEvent)]
/// #[sse(event = "sync.completed", topic = "user:{user_id}", category = "data_sync")]
/// struct SyncCompleted { user_id: Uuid, accounts: u32 }
///
/// hub.emit(&SyncCompleted { user_id, accounts: 3 }).await?; // event `sync.completed` on `user:<id>`
/// ```
#[proc_macro_derive(SseEvent, attributes(sse))]
pub fn derive_sse_event(input: TokenStream) -> TokenStream {
    expand(sse_event::expand(input.into()))
}

/// The expansion, or the errors followed by the macro's fallback (see [`errors::Failure`]).
fn expand(result: Result<proc_macro2::TokenStream, errors::Failure>) -> TokenStream {
    result.unwrap_or_else(errors::Failure::into_tokens).into()
}

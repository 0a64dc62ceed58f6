//! The attribute and derive macros of [livepush](https://docs.rs/livepush).
//!
//! Use them through the `livepush` crate, which re-exports them: the code they generate names
//! `::livepush` items, so `livepush` is the only dependency a user adds.
//!
//! Each macro has its own module, split into `attr` (parse the arguments into a plain struct),
//! `validate` (every rule, each failure spanned on the offending token, all failures reported
//! together) and `expand` (wiring into `::livepush::__private` calls).

extern crate proc_macro;

mod args;
mod errors;
mod event_name;
mod handler;
mod publish_event;
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
///   `}}` are literal braces.
/// - `event`: the SSE event name, 1 to 128 ASCII letters, digits and `_ . : / -` (default: the
///   handler's name).
/// - `category`: a category for `?category=` filters, with the same rules as `event`.
/// - `data`: a `fn(&T) -> impl Serialize` mapping the returned value to what is published, for
///   example only its id.
///
/// The return type must implement `livepush::Publishable` (`Json<T>`, `(StatusCode, Json<T>)`,
/// `Result` of these, ...): only a success (2xx, `Ok`) is published. Attributes stack; the value
/// is serialized once for all of those without `data`.
///
/// ```ignore
/// #[publish_event(topic = "comments", event = "comment_created")]
/// #[publish_event(topic = "comment:{id}", event = "created")]
/// async fn create(Json(new): Json<NewComment>) -> (StatusCode, Json<Comment>) { ... }
/// ```
#[proc_macro_attribute]
pub fn publish_event(args: TokenStream, item: TokenStream) -> TokenStream {
    publish_event::publish_event(args.into(), item.into()).into()
}

/// Turns an async axum handler into a Server-Sent Events endpoint.
///
/// With an empty body and no return type, the topics come from the query, `?topic=a,b`. Its
/// arguments (extractors such as an authenticated user) still run first, and can refuse the
/// request.
///
/// A body that returns `Topics`, `Subscription` or `Result<_, E: IntoResponse>` chooses the topics
/// itself, after its extractors ran; an `Err` is answered as the response.
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
#[proc_macro_attribute]
pub fn subscribe_to_events(args: TokenStream, item: TokenStream) -> TokenStream {
    subscribe_to_events::subscribe_to_events(args.into(), item.into()).into()
}

/// Derives `livepush::SseEvent` for a struct with named fields.
///
/// `#[sse(event = "...", topic = "...", category = "...")]`: `event` and `topic` are required,
/// `category` is optional. Placeholders in `topic` name fields (`{user_id}`, `{user.id}`). The
/// type must implement `serde::Serialize`, and is listed in the livepush registry.
///
/// ```ignore
/// #[derive(Serialize, SseEvent)]
/// #[sse(event = "sync.completed", topic = "user:{user_id}", category = "data_sync")]
/// struct SyncCompleted { user_id: Uuid, accounts: u32 }
/// ```
#[proc_macro_derive(SseEvent, attributes(sse))]
pub fn derive_sse_event(input: TokenStream) -> TokenStream {
    sse_event::derive_sse_event(input.into()).into()
}

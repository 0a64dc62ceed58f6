//! # livepush
//!
//! Real-time push for [axum] services over Server-Sent Events, declared with attributes.
//!
//! ```
//! use axum::{http::StatusCode, routing::{get, post}, Json, Router};
//! use livepush::{publish_event, subscribe_to_events, Hub, LivepushRouter};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Comment { id: u64, text: String }
//!
//! // After a 2xx answer, the returned comment goes to every subscriber of `comments`.
//! #[publish_event(topic = "comments", event = "comment_created")]
//! async fn create(Json(comment): Json<Comment>) -> (StatusCode, Json<Comment>) {
//!     (StatusCode::CREATED, Json(comment))
//! }
//!
//! // GET /events?topic=comments is an SSE stream.
//! #[subscribe_to_events]
//! async fn events() {}
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hub = Hub::from_env().expect("valid LIVEPUSH_* settings"); // in-memory unless REDIS_URL is set
//! let app: Router = Router::new()
//!     .route("/comments", post(create))
//!     .route("/events", get(events))
//!     .livepush(&hub); // the hub, /health, /metrics and /events/catalog
//! # drop(app);
//! # }
//! ```
//!
//! ## What is in the box
//! - [`publish_event`] publishes what a handler returns; [`subscribe_to_events`] makes an SSE
//!   endpoint; [`SseEvent`] maps domain event types to SSE events sent with [`Hub::emit`].
//! - [`Hub`]: one per process, built by [`HubBuilder`] or from the environment ([`Config`]).
//! - [`broker`]: in-memory by default, Redis pub/sub with the `redis` feature.
//! - `outbox` (features `outbox-postgres`, `outbox-sqlite`): events written in the app's own
//!   database transaction and relayed after commit, for handlers that write to a database.
//! - [`registry`]: everything the program pushes, collected at link time.
//! - [`frame`]: the SSE wire format, encoded once per event.
//! - [`serve()`]: `axum::serve` with `TCP_NODELAY`, so small events are not held back by Nagle.
//!
//! [axum]: https://docs.rs/axum
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod broker;
mod config;
mod error;
mod event;
mod fanout;
pub mod frame;
mod hub;
mod metrics;
#[cfg(any(feature = "outbox-postgres", feature = "outbox-sqlite"))]
pub mod outbox;
mod publish;
mod queue;
pub mod registry;
mod retry;
mod routes;
mod serve;
mod sse_event;
mod stream;
mod subscribe;
mod topic;

pub use config::{Config, ConfigError, SlowConsumerPolicy};
pub use error::{PublishError, SubscribeError};
pub use event::{
    validate_name, Envelope, EventId, InvalidEventId, InvalidName, Publication, MAX_NAME_LEN,
};
pub use frame::{LAGGED_EVENT, RESET_EVENT};
pub use hub::{BuildError, Hub, HubBuilder};
pub use publish::Publishable;
pub use routes::LivepushRouter;
pub use serve::{serve, NoDelayListener};
pub use sse_event::SseEvent;
pub use subscribe::{IntoSubscription, Subscription};
pub use topic::{Topic, TopicError, Topics, BROADCAST_TOPIC, MAX_TOPIC_LEN};

/// Publishes the value an async axum handler returns, after it succeeded.
///
/// `#[publish_event(topic = "...", event = "...", category = "...", data = path::to::fn)]`:
/// - `topic` (required): a topic template; `{name}` binds a handler argument (including
///   destructured extractors such as `Path(id): Path<u64>`) or else a field of the returned value.
/// - `event`: the SSE event name (default: the handler's name).
/// - `category`: for `?category=` filters.
/// - `data`: a `fn(&T) -> impl Serialize` that maps the returned value to what is published.
///
/// Publishing happens only when the return value is a success (2xx, `Ok`), see [`Publishable`].
/// It fails open: a broker failure is logged and counted, and the response goes out unchanged.
/// Attributes stack; the value is serialized once.
pub use livepush_macros::publish_event;

/// Turns an async handler into an SSE endpoint.
///
/// With an empty body, topics come from `?topic=a,b`. A body that returns [`Topics`],
/// [`Subscription`] or `Result<_, E: IntoResponse>` chooses them after its extractors ran.
pub use livepush_macros::subscribe_to_events;

/// Derives [`SseEvent`] from `#[sse(event = "...", topic = "...", category = "...")]`.
pub use livepush_macros::SseEvent;

/// Every Rust snippet of README.md, compiled (and run unless `no_run`) as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// What the macros expand to. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::publish::{encode, Encoded, PublishContext};
    pub use crate::registry::{EventType, PublishRoute, SubscribeMode, SubscribeRoute};
    pub use crate::subscribe::SubscribeContext;
    pub use axum::response::Response;
    pub use inventory;

    /// Implemented for every `Serialize` type; names the fix when a derived event is not one.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` must implement `serde::Serialize` to be an SSE event",
        label = "add `#[derive(serde::Serialize)]` to this type",
        note = "livepush sends events as JSON"
    )]
    pub trait MustSerialize {}
    impl<T: serde::Serialize + ?Sized> MustSerialize for T {}

    /// Compile-time check that `T` is `Serialize`.
    pub fn assert_serialize<T: MustSerialize + ?Sized>() {}
}

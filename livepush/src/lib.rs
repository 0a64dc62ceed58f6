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
//!     .livepush(&hub); // the hub and /health (mount hub.admin_routes() for /metrics, /events/catalog)
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
//! - [`registry`]: everything the program pushes, collected at link time, also as an AsyncAPI
//!   3.0 document ([`registry::asyncapi`]).
//! - [`Cursor`] / [`WithCursor`]: the `Livepush-Cursor` of a list endpoint, so that a client that
//!   loads a list and then subscribes misses nothing published in between.
//! - [`frame`]: the SSE wire format, encoded once per event.
//! - [`serve()`]: HTTP/1.1 and h2c on one port with header-read, idle, write and drain
//!   deadlines and `TCP_NODELAY`; [`serve_tls`] adds TLS with ALPN `h2` (feature `tls`).
//!
//! [axum]: https://docs.rs/axum
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod asyncapi;
pub mod broker;
mod config;
mod cursor;
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
mod schema;
mod serve;
mod sse_event;
mod stream;
mod subscribe;
mod topic;

pub use config::{Config, ConfigError, SlowConsumerPolicy};
pub use cursor::{Cursor, WithCursor, CURSOR_HEADER};
pub use error::{PublishError, SubscribeError};
pub use event::{
    validate_name, Envelope, EventId, EventName, InvalidEventId, InvalidName, Publication,
    MAX_NAME_LEN,
};
pub use frame::{EXPIRED_EVENT, LAGGED_EVENT, RESET_EVENT};
pub use hub::{BuildError, Hub, HubBuilder};
pub use publish::Publishable;
pub use routes::LivepushRouter;
#[cfg(feature = "tls")]
pub use serve::serve_tls;
pub use serve::{serve, DeadlineIo, NoDelayListener, Serve, ServeConfig};
pub use sse_event::SseEvent;
pub use subscribe::{IntoSubscription, Subscription};
/// rustls, as [`serve_tls`] takes it (`rustls::ServerConfig`, `rustls::pki_types`).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
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
    pub use crate::schema::{NoSchema, Probe, ReturnProbe, Schemas, ViaJsonSchema};
    pub use crate::subscribe::SubscribeContext;

    /// The Redis broker's payload decoder, for the `broker_payload` fuzz target: the envelope,
    /// or `None` (dropped and counted) for anything malformed.
    #[cfg(feature = "redis")]
    pub fn decode_broker_payload(topic: crate::Topic, payload: &[u8]) -> Option<crate::Envelope> {
        crate::broker::redis::decode(topic, payload)
    }
    pub use axum::response::Response;
    pub use inventory;

    /// Implemented for every `Serialize` type; names the fix when a derived event is not one.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` must implement `serde::Serialize` to be an SSE event",
        label = "add `#[derive(serde::Serialize)]` to this type",
        note = "livepush sends events as JSON"
    )]
    pub trait MustSerialize {}
    // Not recommended: rustc then reports the bound of `assert_serialize` with the message above
    // and stops there, rather than listing serde's own implementors of `Serialize`.
    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + ?Sized> MustSerialize for T {}

    /// Compile-time check that `T` is `Serialize`.
    pub fn assert_serialize<T: MustSerialize + ?Sized>() {}

    /// The runtime's topic template matching, for the macro crate's test that the macros and the
    /// runtime read templates alike.
    pub fn template_matches(template: &str, topic: &str) -> bool {
        crate::registry::template_matches(template, topic)
    }

    // The registry entries are `#[non_exhaustive]`: the macros build them through these
    // constructors (one argument per field, in field order), so a new field is not a breaking
    // change for users and needs only a new argument here and in the macros.

    /// The entry of one `#[publish_event]`.
    #[allow(clippy::too_many_arguments)]
    pub const fn publish_route(
        handler: &'static str,
        module: &'static str,
        topic: &'static str,
        event: &'static str,
        category: Option<&'static str>,
        data: Option<&'static str>,
        payload: crate::registry::PayloadSchema,
        file: &'static str,
        line: u32,
    ) -> PublishRoute {
        PublishRoute {
            handler,
            module,
            topic,
            event,
            category,
            data,
            payload,
            file,
            line,
        }
    }

    /// The entry of one `#[subscribe_to_events]`.
    pub const fn subscribe_route(
        handler: &'static str,
        module: &'static str,
        mode: SubscribeMode,
        file: &'static str,
        line: u32,
    ) -> SubscribeRoute {
        SubscribeRoute {
            handler,
            module,
            mode,
            file,
            line,
        }
    }

    /// The entry of one `#[derive(SseEvent)]`.
    #[allow(clippy::too_many_arguments)]
    pub const fn event_type(
        type_name: &'static str,
        module: &'static str,
        event: &'static str,
        topic: &'static str,
        category: Option<&'static str>,
        type_id: fn() -> std::any::TypeId,
        payload: crate::registry::PayloadSchema,
        file: &'static str,
        line: u32,
    ) -> EventType {
        EventType {
            type_name,
            module,
            event,
            topic,
            category,
            type_id,
            payload,
            file,
            line,
        }
    }
}

//! # livepush
//!
//! Real-time push for [axum] services over Server-Sent Events, declared with attributes.
//!
//! ```
//! use axum::{http::StatusCode, routing::{get, post}, Json, Router};
//! use livepush::{publish_event, subscribe_to_events, Hub, RouterExt};
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
//!     // the hub and /health; hub.admin_routes() serves /metrics, /events/catalog and
//!     // /events/asyncapi.json, to mount where only operators reach them
//!     .livepush(&hub);
//! # drop(app);
//! # }
//! ```
//!
//! ## What is in the box
//! - [`publish_event`] publishes what a handler returns; [`subscribe_to_events`] makes an SSE
//!   endpoint; [`SseEvent`] maps domain event types to SSE events sent with [`Hub::emit`].
//! - [`Hub`]: one per process, built by [`HubBuilder`] or from the environment ([`Config`]).
//! - State topics: [`Hub::publish_retained`] with a [`Retain`] (or `retain` in the macros) keeps
//!   a topic's current value, which every new subscriber gets first.
//! - [`broker`]: in-memory by default, Redis pub/sub with the `redis` feature.
//! - `outbox` (features `outbox-postgres`, `outbox-sqlite`): events written in the app's own
//!   database transaction and relayed after commit, for handlers that write to a database.
//! - [`registry`]: everything the program pushes, collected at link time, also as an AsyncAPI
//!   3.0 document ([`registry::asyncapi`]).
//! - [`cursor`]: the `Livepush-Cursor` of a list endpoint, so that a client that loads a list
//!   and then subscribes misses nothing published in between.
//! - [`sse`]: the event names of livepush's own notices (`livepush.reset`, …); every event is
//!   encoded into its SSE frame once.
//! - [`serve()`] (feature `server`, on by default): HTTP/1.1 and h2c on one port with header-read, body-read, idle, write and drain
//!   deadlines and `TCP_NODELAY`; [`serve::serve_tls`] adds TLS with ALPN `h2` (feature `tls`).
//! - [`error`]: every error type.
//!
//! ## How the crate is layered
//!
//! Each module uses only the modules listed before it: those of the layers above, and those
//! before it in its own row. A unit test, `layers`, fails on any other `crate::` path, checks
//! this table against its `LAYERS` (the one order), and checks the children of each folder
//! (`broker/`, `outbox/`, `serve/`, …) against that folder's own order:
//!
//! | layer | modules | what they hold |
//! | --- | --- | --- |
//! | vocabulary | `topic`, `event`, `state`, `config`, `metrics`, `sse_event`, `publishable` | the words: topics, event ids and names, what is retained as state, settings, counters, the domain-event trait, what a handler's return value publishes |
//! | wire format | `sse`, `trace`, `envelope` | the SSE frame, the trace context an event carries (feature `otel`), and the envelope an event travels in, encoded once |
//! | local delivery | `queue`, `recent`, `fanout` | one bounded queue per connection, the recent events of watched topics (for reconnects), and the topic → connections map fed by a [`broker::Delivery`] |
//! | broker seam | `broker` (+ `memory`, `redis`) | what carries events between processes; it sees only the layers above |
//! | core | `error`, `retry`, `presence`, `connections`, `catchup`, `registry`, `position`, `current`, `backlog`, `hub` | the errors, the retry buffer, presence (members, their join and leave events, occupancy), admission guards, coalesced history reads, the map of what is pushed, per-connection positions on a partitioned broker, the current values of state topics a stream gets first, the backlog of a new stream on a partitioned broker, and the [`Hub`] façade over them (every public method of `Hub`, its [`layer`] and its operational routes, in `hub/`) |
//! | HTTP | `publish`, `stream`, `subscribe`, `cursor`, `routes`, `serve`, `outbox` | what handlers, routers and servers see |
//! | test helpers | `testing` | what an app's tests use to see what it pushes (feature `testing`) |
//!
//! Four choices differ from the obvious order. The envelope sits with the wire format, not with
//! the event vocabulary, because it is built *from* a frame (an event is encoded once, when it
//! gets its id); keeping it in `event` made `event` and the wire format use each other. `error`
//! opens the core layer rather than closing the vocabulary: the two HTTP-facing errors wrap the
//! broker's, so it comes after the broker seam, and the vocabulary's own errors (`TopicError`,
//! `InvalidName`, …) stay next to their types and are re-exported from it, so a broker author
//! reads `broker` without reading the hub. And `registry` holds its AsyncAPI rendering and the
//! payload schemas as submodules: the document is a view of the registry, and as sibling modules
//! each used the other; it sits in the core, before `hub`, because the hub's admin routes serve
//! its catalog (what a handler's return value publishes, `Publishable`, is vocabulary, so the
//! registry needs nothing of the HTTP layer). Last, every public method of [`Hub`] is defined in
//! `hub/mod.rs`, so the tower layer that carries it (`hub/layer.rs`, public as [`layer`]) and the
//! handlers of its routes live in the hub's folder.
//!
//! [axum]: https://docs.rs/axum
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// vocabulary
mod config;
mod event;
mod metrics;
mod publishable;
mod sse_event;
mod state;
mod topic;
// wire format
mod envelope;
pub mod sse;
mod trace;
// local delivery
mod fanout;
mod queue;
mod recent;
// broker seam
pub mod broker;
// core
mod backlog;
mod catchup;
mod connections;
mod current;
pub mod error;
mod hub;
mod position;
mod presence;
pub mod registry;
mod retry;
// HTTP
pub mod cursor;
#[cfg(any(feature = "outbox-postgres", feature = "outbox-sqlite"))]
pub mod outbox;
mod publish;
mod routes;
#[cfg(feature = "server")]
pub mod serve;
mod stream;
mod subscribe;
// test helpers
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[cfg(test)]
mod layers;

pub use self::config::{Config, SlowConsumerPolicy};
pub use self::event::{EventId, EventName, Published};
pub use self::hub::{layer, Hub, HubBuilder};
pub use self::publishable::Publishable;
pub use self::routes::RouterExt;
#[cfg(feature = "server")]
pub use self::serve::serve;
pub use self::sse_event::SseEvent;
pub use self::state::Retain;
pub use self::subscribe::{IntoSubscription, Subscription};
pub use self::topic::{Topic, Topics};
pub use livepush_macros::{publish_event, subscribe_to_events, SseEvent};

/// What the macros expand to. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::publish::{encode, Encoded, PublishContext};
    pub use crate::registry::schema::{NoSchema, Probe, ReturnProbe, Schemas, ViaJsonSchema};
    pub use crate::registry::{EventType, PublishRoute, SubscribeMode, SubscribeRoute};
    pub use crate::subscribe::SubscribeContext;

    /// The Redis broker's payload decoder, for the `broker_payload` fuzz target: the envelope,
    /// or `None` for anything malformed (which a listener drops and counts on its hub).
    #[cfg(feature = "redis")]
    pub fn decode_broker_payload(
        topic: crate::Topic,
        payload: &[u8],
    ) -> Option<crate::broker::Envelope> {
        crate::broker::redis::decode(topic, payload).ok()
    }

    /// The SSE frame encoders, for the `frame_roundtrip` fuzz target and the framing tests.
    pub mod frame {
        use bytes::Bytes;

        use crate::{EventId, EventName};

        /// An event with `event:`, one `data:` line per line of `data`, and `id:` last.
        pub fn event(id: EventId, event: &EventName, data: &[u8]) -> Bytes {
            crate::sse::event(id, event, data)
        }

        /// An event without `id:` (livepush's own notices).
        pub fn notice(event: &EventName, data: &[u8]) -> Bytes {
            crate::sse::notice(event, data)
        }

        /// A comment line (heartbeats).
        pub fn comment(text: &str) -> Bytes {
            crate::sse::comment(text)
        }

        /// The `retry:` field.
        pub fn retry(millis: u64) -> Bytes {
            crate::sse::retry(millis)
        }
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
            retained: false,
            retain_ttl_secs: None,
            payload,
            file,
            line,
        }
    }

    /// `route`, retained as state (`retain`, `retain_ttl = ttl`).
    pub const fn retained_route(route: PublishRoute, ttl: Option<u64>) -> PublishRoute {
        PublishRoute {
            retained: true,
            retain_ttl_secs: ttl,
            ..route
        }
    }

    /// `event`, retained as state (`#[sse(retain, retain_ttl = ttl)]`).
    pub const fn retained_event(event: EventType, ttl: Option<u64>) -> EventType {
        EventType {
            retained: true,
            retain_ttl_secs: ttl,
            ..event
        }
    }

    /// The [`Retain`](crate::Retain) of a derived event: `key` inside its topic ("" for the
    /// topic's one value), kept `ttl` seconds.
    pub fn retain(key: String, ttl: Option<u64>) -> crate::Retain {
        crate::Retain::of_attribute(key, ttl)
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
            retained: false,
            retain_ttl_secs: None,
            type_id,
            payload,
            file,
            line,
        }
    }
}

//! The link-time map of everything this binary pushes: publishing routes, subscribing routes and
//! domain event types, collected with [`inventory`] from every `#[publish_event]`,
//! `#[subscribe_to_events]` and `#[derive(SseEvent)]` linked into the program.
//!
//! ```
//! // what does this service push, and where?
//! for route in livepush::registry::publish_routes() {
//!     println!("{} publishes `{}` on {}", route.handler, route.event, route.topic);
//! }
//! let catalog = livepush::registry::catalog();
//! println!("{}", serde_json::to_string_pretty(&catalog).unwrap());
//! // the same as an AsyncAPI 3.0 document (served at /events/asyncapi.json)
//! let document = livepush::registry::asyncapi();
//! assert_eq!(document["asyncapi"], "3.0.0");
//! ```

use std::any::TypeId;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use livepush_core::template::Matcher;

use serde::Serialize;

mod asyncapi;
pub(crate) mod schema;

pub use self::asyncapi::{asyncapi, AsyncApi};
pub use self::schema::{PayloadSchema, Schemas};

/// A handler with `#[publish_event]`: one entry per attribute.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct PublishRoute {
    /// The handler's function name.
    pub handler: &'static str,
    /// The module it is defined in.
    pub module: &'static str,
    /// The topic template.
    pub topic: &'static str,
    /// The SSE event name.
    pub event: &'static str,
    /// The category, if any.
    pub category: Option<&'static str>,
    /// The `data = …` mapping function, if any.
    pub data: Option<&'static str>,
    /// Whether it is state (`retain`): kept as the topic's current value, sent first to new
    /// subscribers.
    pub retained: bool,
    /// The `retain_ttl` in seconds, if any.
    pub retain_ttl_secs: Option<u64>,
    /// The JSON Schema of what is published (the handler's returned type; `{}` with `data = …`
    /// or without the `schemars` feature), for [`asyncapi`].
    #[serde(skip)]
    pub payload: PayloadSchema,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// Where a subscribing handler takes its topics from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubscribeMode {
    /// From `?topic=a,b`.
    Query,
    /// From what the handler body returns.
    Handler,
}

/// A handler with `#[subscribe_to_events]`.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct SubscribeRoute {
    /// The handler's function name.
    pub handler: &'static str,
    /// The module it is defined in.
    pub module: &'static str,
    /// Where its topics come from.
    pub mode: SubscribeMode,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

/// A type with `#[derive(SseEvent)]`.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct EventType {
    /// The type's name.
    pub type_name: &'static str,
    /// The module it is defined in.
    pub module: &'static str,
    /// The SSE event name.
    pub event: &'static str,
    /// The topic template.
    pub topic: &'static str,
    /// The category, if any.
    pub category: Option<&'static str>,
    /// Whether it is state (`#[sse(retain)]`): kept as the topic's current value, sent first
    /// to new subscribers.
    pub retained: bool,
    /// The `retain_ttl` in seconds, if any.
    pub retain_ttl_secs: Option<u64>,
    /// The type's `TypeId`, for [`has_mapping_for`].
    #[serde(skip)]
    pub type_id: fn() -> TypeId,
    /// The JSON Schema of the type (`{}` without the `schemars` feature), for [`asyncapi`].
    #[serde(skip)]
    pub payload: PayloadSchema,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

inventory::collect!(PublishRoute);
inventory::collect!(SubscribeRoute);
inventory::collect!(EventType);

/// Every `#[publish_event]` of the program.
pub fn publish_routes() -> impl Iterator<Item = &'static PublishRoute> {
    inventory::iter::<PublishRoute>.into_iter()
}

/// Every `#[subscribe_to_events]` handler of the program.
pub fn subscribe_routes() -> impl Iterator<Item = &'static SubscribeRoute> {
    inventory::iter::<SubscribeRoute>.into_iter()
}

/// Every `#[derive(SseEvent)]` type of the program.
pub fn event_types() -> impl Iterator<Item = &'static EventType> {
    inventory::iter::<EventType>.into_iter()
}

/// The registered mapping of domain event type `T`, if it derives `SseEvent`.
pub fn event_type_of<T: 'static>() -> Option<&'static EventType> {
    let id = TypeId::of::<T>();
    event_types().find(|e| (e.type_id)() == id)
}

/// Whether domain event type `T` is mapped to an SSE event (derives `SseEvent`).
pub fn has_mapping_for<T: 'static>() -> bool {
    event_type_of::<T>().is_some()
}

/// Every category declared by a publishing route or an event type (public as
/// [`Catalog::categories`]).
pub(crate) fn categories() -> BTreeSet<&'static str> {
    publish_routes()
        .filter_map(|r| r.category)
        .chain(event_types().filter_map(|e| e.category))
        .collect()
}

/// Every topic template published to, by routes or event types (public as
/// [`Catalog::topics`]).
pub(crate) fn topic_templates() -> BTreeSet<&'static str> {
    publish_routes()
        .map(|r| r.topic)
        .chain(event_types().map(|e| e.topic))
        .collect()
}

/// Whether `topic` matches a registered topic template (`{…}` matches one or more characters).
/// Takes time linear in the topic's length per template, whatever the template.
pub(crate) fn is_registered_topic(topic: &str) -> bool {
    registered_matchers().iter().any(|m| m.matches(topic))
}

/// The registered templates, parsed once: the registry is fixed at link time, and subscriptions
/// check every topic against it when unregistered topics are rejected.
fn registered_matchers() -> &'static [Matcher] {
    static MATCHERS: OnceLock<Vec<Matcher>> = OnceLock::new();
    MATCHERS.get_or_init(|| {
        // The macros refuse templates that do not parse, so none is left out here.
        topic_templates()
            .into_iter()
            .filter_map(|t| Matcher::parse(t).ok())
            .collect()
    })
}

/// Matches `topic` against `template`, where each `{name}` stands for a non-empty run of
/// characters and `{{` / `}}` for literal braces. Parses `template` on every call.
pub(crate) fn template_matches(template: &str, topic: &str) -> bool {
    // The grammar is livepush-core's, which the macros parse templates with.
    livepush_core::template::matches(template, topic)
}

/// A machine-readable description of what this program pushes (served at `/events/catalog`).
#[derive(Debug, Serialize)]
pub struct Catalog {
    /// Topic templates published to.
    pub topics: BTreeSet<&'static str>,
    /// Categories declared.
    pub categories: BTreeSet<&'static str>,
    /// Publishing routes.
    pub publish_routes: Vec<&'static PublishRoute>,
    /// Subscribing routes.
    pub subscribe_routes: Vec<&'static SubscribeRoute>,
    /// Domain event types.
    pub event_types: Vec<&'static EventType>,
}

/// Builds the [`Catalog`], sorted so that it reads the same on every run.
pub fn catalog() -> Catalog {
    let mut publish: Vec<_> = publish_routes().collect();
    publish.sort_by_key(|r| (r.module, r.handler, r.topic, r.event));
    let mut subscribe: Vec<_> = subscribe_routes().collect();
    subscribe.sort_by_key(|r| (r.module, r.handler));
    let mut types: Vec<_> = event_types().collect();
    types.sort_by_key(|e| (e.module, e.type_name));
    Catalog {
        topics: topic_templates(),
        categories: categories(),
        publish_routes: publish,
        subscribe_routes: subscribe,
        event_types: types,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_topics() {
        assert!(template_matches("comments", "comments"));
        assert!(!template_matches("comments", "comment"));
        assert!(template_matches("ticket:{id}", "ticket:42"));
        assert!(!template_matches("ticket:{id}", "ticket:"));
        assert!(template_matches("org:{org}:user:{id}", "org:a:b:user:7"));
        assert!(!template_matches("org:{org}:user:{id}", "org:a:team:7"));
        assert!(template_matches("lit{{x}}", "lit{x}"));
    }
}

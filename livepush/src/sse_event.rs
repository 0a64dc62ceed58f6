//! Domain events that know their SSE name, topic and category.

/// A domain event type with a fixed SSE event name, a topic template and an optional category.
///
/// Derive it with `#[derive(SseEvent)]` and `#[sse(event = "...", topic = "...", category = "...")]`;
/// placeholders in the topic template name fields. Publish with [`Hub::emit`](crate::Hub::emit).
/// Every derived type is listed in the [registry](crate::registry), so
/// [`has_mapping_for`](crate::registry::has_mapping_for) answers whether a type reaches clients.
///
/// ```
/// use livepush::SseEvent;
/// use serde::Serialize;
///
/// #[derive(Serialize, SseEvent)]
/// #[sse(event = "ticket.closed", topic = "ticket:{id}", category = "tickets")]
/// struct TicketClosed { id: u64 }
///
/// assert_eq!(TicketClosed::EVENT, "ticket.closed");
/// assert_eq!(TicketClosed { id: 9 }.topic(), "ticket:9");
/// assert!(livepush::registry::has_mapping_for::<TicketClosed>());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an SSE event type",
    label = "add #[derive(SseEvent)] and #[sse(event = \"...\", topic = \"...\")] to this type",
    note = "`Hub::emit` publishes domain events; use `Hub::publish` for plain values"
)]
// No `Serialize` supertrait: its bound would be reported by rustc before the derive's own
// spanned "add `#[derive(serde::Serialize)]`", listing serde's implementors. `Hub::emit`
// requires `Serialize` where it serializes.
pub trait SseEvent {
    /// The SSE `event:` name.
    const EVENT: &'static str;
    /// The topic template, such as `user:{user_id}`.
    const TOPIC: &'static str;
    /// The category, for `?category=` filters.
    const CATEGORY: Option<&'static str>;
    /// The topic of this value: the template with its placeholders filled from fields.
    fn topic(&self) -> String;
    /// `Some` when this event is state, kept as its topic's current value (derived from
    /// `#[sse(retain)]`, with `retain_key = "{field}"` and `retain_ttl = <seconds>`): see
    /// [`Retain`](crate::Retain). The default: not retained.
    fn retain(&self) -> Option<crate::state::Retain> {
        None
    }
}

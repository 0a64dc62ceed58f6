//! The registry as an AsyncAPI 3.0 document (<https://www.asyncapi.com/docs/reference/specification/v3.0.0>).
//!
//! One channel per topic template shape (its `{placeholders}` as parameters; templates that
//! differ only in placeholder names share it), one message per event name with the JSON Schema
//! of its payload, the `livepush.*` notices as messages of every channel, one `receive`
//! operation per channel, and the SSE endpoint as the server.

use std::collections::{BTreeMap, BTreeSet};

use livepush_core::template::{self, Piece};
use serde_json::{json, Map, Value};

use super::{event_types, publish_routes, subscribe_routes, PayloadSchema, Schemas};
use crate::sse::{LAGGED_NAME, RESET_NAME};

/// The AsyncAPI 3.0 document of everything this program pushes, without a server entry.
///
/// Served, with the request's host as the server, at `GET /events/asyncapi.json`. Payload
/// schemas come from `schemars::JsonSchema` impls with the `schemars` feature; other payloads
/// are documented as `{}`.
///
/// ```
/// let document = livepush::registry::asyncapi();
/// assert_eq!(document["asyncapi"], "3.0.0");
/// assert!(document["components"]["messages"]["livepush.reset"].is_object());
/// ```
pub fn asyncapi() -> Value {
    AsyncApi::default().document()
}

/// Settings of an AsyncAPI document: its title and version, and the SSE server.
///
/// ```
/// use livepush::registry::AsyncApi;
///
/// let document = AsyncApi::default()
///     .title("crm")
///     .server("crm.example.com", "/events")
///     .document();
/// assert_eq!(document["servers"]["sse"]["pathname"], "/events");
/// ```
#[derive(Debug, Clone)]
pub struct AsyncApi {
    title: String,
    version: String,
    server: Option<(String, String)>,
}

impl Default for AsyncApi {
    fn default() -> Self {
        AsyncApi {
            title: "livepush events".into(),
            version: "1.0.0".into(),
            server: None,
        }
    }
}

/// What one event name stands for: its payload schemas and categories, over every route and
/// event type that publishes it.
#[derive(Default)]
struct MessageInfo {
    payloads: Vec<Option<PayloadSchema>>,
    categories: BTreeSet<&'static str>,
    sources: BTreeSet<String>,
    /// Published as state (`retain`) by any source: the TTLs given (`None`: kept until
    /// replaced).
    retained: BTreeSet<Option<u64>>,
}

/// A template's shape: its literal text with each placeholder as `None`, whatever its name.
/// `room:{room}` and `room:{room_id}` in two handlers are the same topics, so the same channel.
type Shape = Vec<Option<String>>;

/// One channel: the templates of one shape (the first names the channel) and their events.
#[derive(Default)]
struct ChannelInfo {
    templates: BTreeSet<&'static str>,
    events: BTreeSet<&'static str>,
}

impl AsyncApi {
    /// The document's `info.title`.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The document's `info.version` (the version of your API, not of AsyncAPI).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Names the SSE endpoint clients subscribe at: `host` (with port) and its path.
    pub fn server(mut self, host: impl Into<String>, pathname: impl Into<String>) -> Self {
        self.server = Some((host.into(), pathname.into()));
        self
    }

    /// Builds the document, sorted so that it reads the same on every run.
    pub fn document(&self) -> Value {
        let messages = messages();
        let mut schemas = Schemas::new();
        let mut components_messages = Map::new();
        for (event, info) in &messages {
            components_messages.insert(key(event), message(event, info, &mut schemas));
        }
        for (name, notice) in notices().into_iter().chain(presence_notices()) {
            components_messages.insert(name.into(), notice);
        }

        let topics = publish_routes()
            .map(|route| (route.topic, route.event))
            .chain(event_types().map(|event| (event.topic, event.event)));
        let mut channels = Map::new();
        let mut operations = Map::new();
        for info in channels_by_shape(topics).values() {
            let (id, channel, operation) = self.channel(info);
            channels.insert(id.clone(), channel);
            operations.insert(format!("receive_{id}"), operation);
        }

        let mut subscribe: Vec<Value> = subscribe_routes()
            .map(|r| json!({ "handler": format!("{}::{}", r.module, r.handler), "topics_from": r.mode }))
            .collect();
        subscribe.sort_by_key(|v| v["handler"].as_str().map(str::to_owned));
        let mut document = json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": self.title,
                "version": self.version,
                "description": "Server-Sent Events: `GET <server>?topic=a,b&category=c` streams frames with `id:`, `event:` (a message name below) and `data:` (its JSON payload). Reconnect with `Last-Event-ID` (or `?lastEventId=`) to receive what came after that id.",
            },
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": {
                "messages": components_messages,
                "schemas": schemas.into_definitions(),
            },
            "x-livepush-subscribe-routes": subscribe,
            "x-livepush-categories": super::categories(),
        });
        if let Some((host, pathname)) = &self.server {
            document["servers"] = json!({
                "sse": {
                    "host": host,
                    "pathname": pathname,
                    "protocol": "http",
                    "description": "The SSE endpoint (text/event-stream); 429 with Retry-After when over a connection cap, 503 while shutting down.",
                }
            });
        }
        document
    }

    /// A channel's id, its JSON and its `receive` operation. The first template (in sort order)
    /// names the channel and gives its address; the description names the others, so a reader
    /// who searches for either spelling finds it.
    fn channel(&self, info: &ChannelInfo) -> (String, Value, Value) {
        let mut templates = info.templates.iter();
        let template = templates.next().copied().unwrap_or_default();
        let also: Vec<String> = templates.map(|t| format!("`{t}`")).collect();
        let also = match also.is_empty() {
            true => String::new(),
            false => format!(" (also written {} by other handlers)", also.join(", ")),
        };
        let id = key(template);
        let (address, parameters) = address_and_parameters(template);
        let mut refs = Map::new();
        for event in info.events.iter().copied().chain([RESET_NAME, LAGGED_NAME]) {
            let k = key(event);
            refs.insert(
                k.clone(),
                json!({ "$ref": format!("#/components/messages/{k}") }),
            );
        }
        let operation_messages: Vec<Value> = refs
            .keys()
            .map(|k| json!({ "$ref": format!("#/channels/{id}/messages/{k}") }))
            .collect();
        let mut channel = json!({
            "address": address,
            "title": template,
            "description": format!("Topic `{template}`{also}: subscribe with `?topic=` and a topic this template matches."),
            "messages": refs,
        });
        if !parameters.is_empty() {
            channel["parameters"] = Value::Object(parameters);
        }
        if self.server.is_some() {
            channel["servers"] = json!([{ "$ref": "#/servers/sse" }]);
        }
        let operation = json!({
            "action": "receive",
            "channel": { "$ref": format!("#/channels/{id}") },
            "summary": format!("Events published on `{template}`"),
            "messages": operation_messages,
        });
        (id, channel, operation)
    }
}

/// Every event name published, by routes or event types, with what publishes it.
fn messages() -> BTreeMap<&'static str, MessageInfo> {
    let mut messages: BTreeMap<&'static str, MessageInfo> = BTreeMap::new();
    for route in publish_routes() {
        let info = messages.entry(route.event).or_default();
        // `data = f` publishes what `f` returns, a type the macro does not name.
        info.payloads
            .push(route.data.is_none().then_some(route.payload));
        info.categories.extend(route.category);
        info.sources
            .insert(format!("{}::{}", route.module, route.handler));
        if route.retained {
            info.retained.insert(route.retain_ttl_secs);
        }
    }
    for event in event_types() {
        let info = messages.entry(event.event).or_default();
        info.payloads.push(Some(event.payload));
        info.categories.extend(event.category);
        info.sources
            .insert(format!("{}::{}", event.module, event.type_name));
        if event.retained {
            info.retained.insert(event.retain_ttl_secs);
        }
    }
    messages
}

/// The channels of `(template, event)` pairs, one per template shape.
fn channels_by_shape(
    topics: impl IntoIterator<Item = (&'static str, &'static str)>,
) -> BTreeMap<Shape, ChannelInfo> {
    let mut channels: BTreeMap<Shape, ChannelInfo> = BTreeMap::new();
    for (template, event) in topics {
        let channel = channels.entry(shape(template)).or_default();
        channel.templates.insert(template);
        channel.events.insert(event);
    }
    channels
}

/// The shape of `template`. The macros refuse templates that do not parse; were one here, it
/// would be its own shape, taken as literal text.
fn shape(template: &str) -> Shape {
    match template::parse(template) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Some(text),
                Piece::Hole(_) => None,
            })
            .collect(),
        Err(_) => vec![Some(template.to_owned())],
    }
}

/// The message of one event name.
fn message(event: &str, info: &MessageInfo, schemas: &mut Schemas) -> Value {
    let mut payloads: Vec<Value> = Vec::new();
    for payload in &info.payloads {
        let schema = payload
            .and_then(|f| f(schemas))
            .unwrap_or_else(|| json!({}));
        if !payloads.contains(&schema) {
            payloads.push(schema);
        }
    }
    // An empty schema admits anything, so one unknown payload makes the union unknown.
    let payload = if payloads.len() == 1 || payloads.iter().any(|p| p == &json!({})) {
        payloads.into_iter().next().unwrap_or_else(|| json!({}))
    } else {
        json!({ "oneOf": payloads })
    };
    let mut message = json!({
        "name": event,
        "title": event,
        "summary": format!("SSE `event: {event}`, published by {}", info.sources.iter().cloned().collect::<Vec<_>>().join(", ")),
        "contentType": "application/json",
        "payload": payload,
    });
    let mut tags: Vec<Value> = info
        .categories
        .iter()
        .map(|c| json!({ "name": c, "description": "category (`?category=` filter)" }))
        .collect();
    if !info.retained.is_empty() {
        // State: the broker keeps the newest as the topic's current value, which a new
        // subscriber (or one told to reset) gets first, with its id, before live events.
        tags.push(json!({ "name": "state", "description": "retained: the current value is sent first to every new subscriber" }));
        let ttls: Vec<Value> = info
            .retained
            .iter()
            .map(|ttl| ttl.map_or(Value::Null, |secs| json!(secs)))
            .collect();
        message["x-livepush-retained"] = json!({ "ttlSeconds": ttls });
    }
    if !tags.is_empty() {
        message["tags"] = Value::Array(tags);
    }
    message
}

/// The notices every stream may carry besides the published events.
fn notices() -> [(&'static str, Value); 2] {
    [
        (
            RESET_NAME,
            json!({
                "name": RESET_NAME,
                "title": RESET_NAME,
                "summary": "Events may have been missed: reload your state, then go on from this frame's id (it is the Last-Event-ID to resume from).",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "reason": { "type": "string", "description": "why: history_unavailable, state_unavailable (the current values could not be read), a broker fault, a retry-buffer overflow" },
                        "last_event_id": {
                            "description": "the Last-Event-ID the client asked to resume after: a plain id (a number), or on a Redis Cluster deployment whose connection spans several partitions the position vector `{P}.{p}-{seq}...` (base 36, a string; see docs/multi-instance.md)",
                            "oneOf": [
                                { "type": "integer", "minimum": 0 },
                                { "type": "string", "pattern": "^[0-9a-z]+(\\.[0-9a-z]+-[0-9a-z]+)+$" },
                            ],
                        },
                        "lost": { "type": "integer", "minimum": 0, "description": "publications given up by the retry buffer" },
                    },
                },
            }),
        ),
        (
            LAGGED_NAME,
            json!({
                "name": LAGGED_NAME,
                "title": LAGGED_NAME,
                "summary": "This client read too slowly and `missed` events were dropped for it (no id: the stream goes on).",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["missed"],
                    "properties": { "missed": { "type": "integer", "minimum": 1 } },
                },
            }),
        ),
    ]
}

/// The presence notices: sent only to streams whose subscription asked for them
/// (`Subscription::presence_events`), so they are components for clients to use, not messages
/// of every channel. None carries an id.
fn presence_notices() -> [(&'static str, Value); 4] {
    let member = json!({
        "type": "object",
        "required": ["key"],
        "properties": {
            "key": { "type": "string", "description": "the member key" },
            "connections": { "type": "integer", "minimum": 1, "description": "its open streams, all instances together" },
            "info": { "description": "the JSON info its subscription gave" },
        },
    });
    let change = json!({
        "type": "object",
        "required": ["topic", "key"],
        "properties": {
            "topic": { "type": "string" },
            "key": { "type": "string" },
            "info": { "description": "the JSON info its subscription gave" },
        },
    });
    let notice = |name: &'static str, summary: &str, payload: Value| {
        (
            name,
            json!({
                "name": name,
                "title": name,
                "summary": summary,
                "contentType": "application/json",
                "payload": payload,
            }),
        )
    };
    [
        notice(
            "livepush.presence",
            "The members of the topic, first on a stream that asked for presence events (no id).",
            json!({
                "type": "object",
                "required": ["topic", "count", "connections", "members"],
                "properties": {
                    "topic": { "type": "string" },
                    "count": { "type": "integer", "minimum": 0 },
                    "connections": { "type": "integer", "minimum": 0 },
                    "members": { "type": "array", "items": member },
                },
            }),
        ),
        notice(
            "livepush.join",
            "A member's first stream on the topic opened, on any instance (no id).",
            change.clone(),
        ),
        notice(
            "livepush.leave",
            "A member's last stream on the topic ended after the grace period, or its instance died (no id).",
            change,
        ),
        notice(
            "livepush.presence_diff",
            "Several members came or went within one tick, at most about ten a second (no id).",
            json!({
                "type": "object",
                "required": ["topic", "joins", "leaves"],
                "properties": {
                    "topic": { "type": "string" },
                    "joins": { "type": "array", "items": member },
                    "leaves": { "type": "array", "items": member },
                },
            }),
        ),
    ]
}

/// A component or channel key: AsyncAPI allows `[A-Za-z0-9._-]`.
fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The channel address of a topic template and its parameters. A placeholder that names a
/// nested field (`{org.id}`) becomes `{org_id}`, since parameter names allow no dots.
fn address_and_parameters(template: &str) -> (String, Map<String, Value>) {
    let Ok(pieces) = template::parse(template) else {
        return (template.to_owned(), Map::new());
    };
    let mut address = String::new();
    let mut parameters = Map::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => address.push_str(&text),
            Piece::Hole(names) => {
                let param = names.join("_");
                address.push('{');
                address.push_str(&param);
                address.push('}');
                let name = names.join(".");
                parameters.insert(
                    param,
                    json!({ "description": format!("fills `{{{name}}}` of the topic template") }),
                );
            }
        }
    }
    (address, parameters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_addresses_with_parameters() {
        let (address, parameters) = address_and_parameters("org:{org.id}:user:{id}");
        assert_eq!(address, "org:{org_id}:user:{id}");
        assert_eq!(parameters.keys().collect::<Vec<_>>(), ["id", "org_id"]);
        assert_eq!(key("comment:{id}"), "comment__id_");
    }

    #[test]
    fn templates_of_one_shape_are_one_channel_that_names_them_all() {
        let channels = channels_by_shape([
            ("room:{room_id}", "left"),
            ("room:{room}", "joined"),
            ("room:{room}:typing", "typing"),
            ("lobby", "joined"),
        ]);
        assert_eq!(channels.len(), 3);
        let room = &channels[&shape("room:{room}")];
        assert_eq!(
            room.templates.iter().copied().collect::<Vec<_>>(),
            ["room:{room_id}", "room:{room}"]
        );
        let (id, channel, operation) = AsyncApi::default().channel(room);
        assert_eq!(id, "room__room_id_");
        assert_eq!(channel["address"], "room:{room_id}");
        assert_eq!(channel["title"], "room:{room_id}");
        assert!(
            channel["description"]
                .as_str()
                .unwrap()
                .contains("also written `room:{room}`"),
            "{channel}"
        );
        let messages: Vec<&String> = channel["messages"].as_object().unwrap().keys().collect();
        assert_eq!(
            messages,
            ["joined", "left", "livepush.lagged", "livepush.reset"]
        );
        assert_eq!(operation["messages"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_shape_keeps_literal_text_and_forgets_placeholder_names() {
        assert_eq!(shape("a:{x}:b"), shape("a:{y.z}:b"));
        assert_ne!(shape("a:{x}:b"), shape("a:{x}:c"));
        assert_ne!(shape("a:{x}"), shape("a:{x}{y}"));
        assert_ne!(shape("a:{x}"), shape("a:x"));
    }
}

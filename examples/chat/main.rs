//! # chat: rooms with presence, join/leave events, occupancy hooks and a room topic line
//!
//! Each room `R` is the topic `room:R`. A page subscribes as a member (its user name) with
//! presence events on, so it gets the members of the room first (`livepush.presence`), then
//! `livepush.join` / `livepush.leave` as people come and go on any instance, and the room's
//! messages. A user with several tabs is one member; a reload within the grace period
//! (`LIVEPUSH_PRESENCE_GRACE_MS`, 3 s) is no leave and no join. With `REDIS_URL` (or `NATS_URL`),
//! every instance sharing the broker answers the same presence, and a killed instance's members
//! leave everywhere within a second.
//!
//! Run:   cargo run --bin chat                       (in memory)
//!        REDIS_URL=redis://127.0.0.1:6379 PORT=3001 cargo run --bin chat   (one of several)
//!        NATS_URL=nats://127.0.0.1:4222 PORT=3001 cargo run --bin chat     (NATS JetStream)
//! Open:  http://127.0.0.1:3000/?room=lobby&user=ann (and another tab with `user=bob`)
//!
//! ```sh
//! curl -N 'localhost:3000/rooms/lobby/events?user=ann'            # presence, joins, messages
//! curl -N 'localhost:3000/rooms/lobby/events?user=bot&presence=off' # a member, messages only
//! curl -X POST -H 'content-type: application/json' -d '{"user":"bob","text":"hi"}' \
//!      localhost:3000/rooms/lobby/messages                         # 201, event `message`
//! curl -X PUT -H 'content-type: application/json' -d '{"text":"Friday release"}' \
//!      localhost:3000/rooms/lobby/topic                            # 200, event `room_topic`
//! curl localhost:3000/rooms/lobby/presence                         # who is here, all instances
//! curl -N 'localhost:3000/events?topic=room:lobby'                # the plain stream, no member
//! ```
//!
//! `?user=` stands in for authentication in this demo: anyone can claim any name. A real
//! service takes the member key from its auth extractor (see the `tickets` example), so nobody
//! can appear as someone else.
//!
//! The occupancy hook logs when a room gets its first listener anywhere and when its last one
//! leaves (or its instance dies): the place to start and stop a per-room producer.

#[path = "../common/mod.rs"]
mod common;
mod page;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use livepush::broker::{Occupancy, Presence};
use livepush::{subscribe_to_events, Hub, RouterExt, SseEvent, Subscription, Topic, Topics};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use common::api::{ApiError, ApiJson, ApiPath};
use common::clock::now_rfc3339;

/// The longest message, room-topic text or user name, in characters.
const MAX_TEXT: usize = 2000;
/// The longest user name, in characters.
const MAX_USER: usize = 64;

/// A message, pushed to the room as `message`.
#[derive(Debug, Clone, Serialize, SseEvent, JsonSchema)]
#[sse(event = "message", topic = "room:{room}")]
struct Message {
    #[serde(skip)]
    room: String,
    id: String,
    user: String,
    text: String,
    at: String,
}

/// The room's topic line, pushed as `room_topic` and retained: the broker keeps the latest one,
/// which every new subscriber gets first (after the presence snapshot), before live events.
#[derive(Debug, Clone, Serialize, SseEvent, JsonSchema)]
#[sse(event = "room_topic", topic = "room:{room}", retain)]
struct RoomTopic {
    #[serde(skip)]
    room: String,
    text: String,
}

/// The topic of room `room`, or 400 when `room:{room}` is not a valid topic.
fn room_topic(room: &str) -> Result<Topic, ApiError> {
    Topic::new(format!("room:{room}")).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            format!("room {room:?} is not a valid room name: {e}"),
        )
    })
}

/// A text field: not blank, at most [`MAX_TEXT`] characters.
fn checked_text(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("`{field}` must not be empty")));
    }
    let len = text.chars().count();
    if len > max {
        return Err(ApiError::invalid(format!(
            "`{field}` has {len} characters; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// A message id unique across instances: the time, this process and a counter.
fn message_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "{millis:x}-{:x}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Deserialize)]
struct Member {
    user: Option<String>,
    /// `off`: the member is counted, but its stream gets no member list, joins or leaves.
    presence: Option<String>,
}

/// `GET /rooms/{room}/events?user=NAME[&presence=off]`: the room's stream for member `NAME`,
/// presence events on (off for a client that shows no member list: it is still a member).
#[subscribe_to_events]
async fn room_events(
    ApiPath(room): ApiPath<String>,
    Query(member): Query<Member>,
) -> Result<Subscription, ApiError> {
    let topic = room_topic(&room)?;
    let user = member.user.unwrap_or_default();
    checked_text("user", &user, MAX_USER)?;
    let subscription = Subscription::new(Topics::one(topic.as_str()))
        .member(user.clone(), serde_json::json!({ "name": user }));
    Ok(match member.presence.as_deref() {
        Some("off") => subscription,
        None | Some("on") => subscription.presence_events(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`presence` must be `on` or `off`, not {other:?}"
            )))
        }
    })
}

#[derive(Deserialize)]
struct NewMessage {
    user: String,
    text: String,
}

/// `POST /rooms/{room}/messages` `{"user","text"}`: 201 with the message, pushed as `message`.
async fn post_message(
    hub: axum::Extension<Hub>,
    ApiPath(room): ApiPath<String>,
    ApiJson(new): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    room_topic(&room)?;
    checked_text("user", &new.user, MAX_USER)?;
    checked_text("text", &new.text, MAX_TEXT)?;
    let message = Message {
        room,
        id: message_id(),
        user: new.user,
        text: new.text,
        at: now_rfc3339(),
    };
    hub.emit(&message).await.map_err(not_pushed)?;
    Ok((StatusCode::CREATED, Json(message)))
}

#[derive(Deserialize)]
struct NewTopic {
    text: String,
}

/// `PUT /rooms/{room}/topic` `{"text"}`: 200 with `{"text"}`, pushed as `room_topic`.
async fn put_topic(
    hub: axum::Extension<Hub>,
    ApiPath(room): ApiPath<String>,
    ApiJson(new): ApiJson<NewTopic>,
) -> Result<Json<RoomTopic>, ApiError> {
    room_topic(&room)?;
    checked_text("text", &new.text, MAX_TEXT)?;
    let line = RoomTopic {
        room,
        text: new.text,
    };
    // retained, as its type says (`#[sse(retain)]`)
    hub.emit(&line).await.map_err(not_pushed)?;
    Ok(Json(line))
}

/// 503 with a JSON message when the broker refused the event: the client learns that nothing
/// was pushed (a broker outage with the retry buffer on is `Published::Buffered`, a success).
fn not_pushed(error: livepush::error::PublishError) -> ApiError {
    tracing::warn!(%error, "not pushed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_pushed",
        format!("not pushed: {error}"),
    )
}

/// `GET /events?topic=room:lobby`: the plain stream every example serves (no member, no
/// presence events).
#[subscribe_to_events]
async fn events() {}

/// `GET /rooms/{room}/presence`: who is in the room, on every instance sharing the broker.
async fn presence(
    hub: axum::Extension<Hub>,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<Presence>, ApiError> {
    let topic = room_topic(&room)?;
    hub.presence(&topic).await.map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "presence_unavailable",
            e.to_string(),
        )
    })
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let hub = common::hub_from_env_with(|builder| {
        builder.on_occupancy(|topic, occupancy| match occupancy {
            Occupancy::Occupied => tracing::info!(%topic, "room occupied"),
            Occupancy::Vacated => tracing::info!(%topic, "room vacated"),
            _ => {}
        })
    });
    let app = Router::new()
        .route("/", get(page::index))
        .route("/page.js", get(page::script))
        .route("/events", get(events))
        .route("/rooms/{room}/events", get(room_events))
        .route("/rooms/{room}/messages", post(post_message))
        .route("/rooms/{room}/topic", put(put_topic))
        .route("/rooms/{room}/presence", get(presence))
        .livepush(&hub)
        .merge(hub.admin_routes());
    common::serve("chat", app, &hub).await;
}

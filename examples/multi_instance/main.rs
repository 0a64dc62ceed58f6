//! # multi_instance: two processes, one Redis (or one NATS)
//!
//! Chat rooms served by several instances of one app, as behind a load balancer. A message
//! posted to any instance reaches the subscribers of every instance through Redis pub/sub; with
//! `LIVEPUSH_REPLAY` on, a client that reconnects to a *different* instance with its
//! `Last-Event-ID` gets what it missed from the Redis stream. The app keeps no state of its own.
//! With `NATS_URL` in place of `REDIS_URL` (`nats-server -js`) the same goes through a NATS
//! JetStream stream (docs/nats.md).
//!
//! Run (three terminals; needs `redis-server`):
//!
//! ```sh
//! redis-server --port 6379 --save '' --appendonly no
//! REDIS_URL=redis://127.0.0.1:6379 LIVEPUSH_REPLAY=1000 PORT=3000 cargo run --bin multi_instance
//! REDIS_URL=redis://127.0.0.1:6379 LIVEPUSH_REPLAY=1000 PORT=3001 cargo run --bin multi_instance
//! ```
//!
//! or, on NATS: `nats-server -js` and `NATS_URL=nats://127.0.0.1:4222` in place of `REDIS_URL`.
//!
//! Publish on one, see it on the other:
//!
//! ```sh
//! curl -N 'localhost:3001/events?topic=room:lobby'
//! curl -X POST -H 'content-type: application/json' -d '{"author":"ann","text":"hello"}' \
//!      localhost:3000/rooms/lobby/messages
//! ```
//!
//! Replay after switching instance: note the `id:` of the last event the curl on 3001 printed
//! (say 1), stop it, post two more messages to 3000, then resume on 3000 from that id:
//!
//! ```sh
//! curl -N -H 'Last-Event-ID: 1' 'localhost:3000/events?topic=room:lobby'   # the two missed, then live
//! ```
//!
//! Browsers do this by themselves: `EventSource` sends `Last-Event-ID` when it reconnects, to
//! whichever instance the load balancer picks. docs/deployment.md has an nginx configuration for
//! two instances, and docs/multi-instance.md the details.
//!
//! | route | answer | published |
//! | --- | --- | --- |
//! | `POST /rooms/{room}/messages` `{"author","text"}` | 201 the message | `message_posted` on `room:{room}` |
//! | `GET /instance` | which instance answered, its broker and replay setting | |
//! | `GET /events?topic=room:lobby` | SSE | |
//!
//! Without `REDIS_URL` or `NATS_URL` it runs on the in-memory broker, and each instance sees only its own
//! messages (it says so at start-up).

#[path = "../common/mod.rs"]
mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, Hub, RouterExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use common::api::{ApiError, ApiJson, ApiPath};
use common::clock::now_rfc3339;

/// Which process this is, as shown to clients.
#[derive(Clone)]
struct Instance {
    name: String,
    hub: Hub,
}

#[derive(Deserialize)]
struct NewMessage {
    author: String,
    text: String,
}

#[derive(Serialize)]
struct Message {
    room: String,
    author: String,
    text: String,
    /// The instance that took the POST; subscribers on other instances see a name not theirs.
    instance: String,
    sent_at: String,
}

/// `{room}` binds the path argument: the message goes to `room:<room>`, on every instance.
#[publish_event(topic = "room:{room}", event = "message_posted")]
async fn post_message(
    State(instance): State<Instance>,
    ApiPath(room): ApiPath<String>,
    ApiJson(new): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let room_ok = !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !room_ok {
        return Err(ApiError::invalid(
            "a room name is 1 to 64 letters, digits, `-` or `_`",
        ));
    }
    let (author, text) = (new.author.trim(), new.text.trim());
    if author.is_empty() || text.is_empty() || author.len() > 80 || text.len() > 2000 {
        return Err(ApiError::invalid(
            "`author` (1 to 80 bytes) and `text` (1 to 2000 bytes) are required",
        ));
    }
    let message = Message {
        room,
        author: author.to_owned(),
        text: text.to_owned(),
        instance: instance.name,
        sent_at: now_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(message)))
}

async fn whoami(State(instance): State<Instance>) -> Json<Value> {
    Json(json!({
        "instance": instance.name,
        "broker": instance.hub.broker_kind(),
        "replay": instance.hub.config().replay(),
    }))
}

/// `GET /events?topic=room:lobby`.
#[subscribe_to_events]
async fn events() {}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let hub = common::hub_from_env();
    if hub.broker_kind() == "memory" {
        tracing::warn!(
            "neither REDIS_URL nor NATS_URL is set: in-memory broker, so this instance sees only \
             its own messages"
        );
    }
    if hub.config().replay() == 0 {
        tracing::info!(
            "LIVEPUSH_REPLAY is 0: no replay after a reconnect (try LIVEPUSH_REPLAY=1000)"
        );
    }
    let (host, port) = common::listen_address();
    let instance = Instance {
        name: format!("{host}:{port}"),
        hub: hub.clone(),
    };
    let app = Router::new()
        .route("/rooms/{room}/messages", post(post_message))
        .route("/instance", get(whoami))
        .route("/events", get(events))
        .with_state(instance)
        .livepush(&hub)
        // /metrics, /events/catalog and /events/asyncapi.json: open here, as a demo (see
        // docs/deployment.md on mounting them where only operators reach them)
        .merge(hub.admin_routes());
    common::serve("multi_instance", app, &hub).await;
}

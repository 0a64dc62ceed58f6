//! # tickets: per-resource topics, a bearer-token extractor, per-topic authorization
//!
//! A help desk. Each ticket has its own topic, `ticket:{id}` (templated from the handler's
//! `Path(id)`), and each workspace one, `workspace:{workspace}` (templated from a field of the
//! returned ticket). Every request carries a bearer token; a user may subscribe only to the
//! tickets and the workspace they belong to.
//!
//! Run:   cargo run --bin tickets
//!
//! Demo tokens (`Authorization: Bearer <token>`):
//!
//! | token | user | workspace | tickets |
//! | --- | --- | --- | --- |
//! | `alice-token` | alice | `acme` | 1, 2 |
//! | `bob-token` | bob | `acme` | 1, 2 |
//! | `carol-token` | carol | `globex` | 3 |
//! | `ops-token` | ops (an operator) | | `/metrics`, `/events/catalog`, `/events/asyncapi.json` |
//!
//! The admin routes (`hub.admin_routes()`) describe the service from the inside: only an
//! operator's token opens them. Any other known user gets 403, as on a topic they may not see.
//!
//! ```sh
//! curl -N -H 'authorization: Bearer alice-token' 'localhost:3000/events?topic=ticket:1,workspace:acme'
//! curl -X POST -H 'authorization: Bearer bob-token' -H 'content-type: application/json' \
//!      -d '{"text":"on it"}' localhost:3000/tickets/1/comments          # alice sees comment_added
//! curl -X PATCH -H 'authorization: Bearer bob-token' -H 'content-type: application/json' \
//!      -d '{"status":"closed"}' localhost:3000/tickets/1                  # alice sees ticket_updated twice
//! curl -i 'localhost:3000/events?topic=ticket:1'                            # 401: no token
//! curl -i -H 'authorization: Bearer carol-token' 'localhost:3000/events?topic=ticket:1'  # 403
//! ```
//!
//! | route | answer | published |
//! | --- | --- | --- |
//! | `GET /tickets` | the caller's workspace's tickets | |
//! | `POST /tickets` `{"title"}` | 201 the ticket | `ticket_created` on `workspace:{workspace}` |
//! | `GET /tickets/{id}` | the ticket | |
//! | `PATCH /tickets/{id}` `{"status"}` (`open`, `pending`, `closed`) | 200 the ticket | `ticket_updated` on `ticket:{id}` and `workspace:{workspace}` |
//! | `POST /tickets/{id}/comments` `{"text"}` | 201 the comment | `comment_added` on `ticket:{id}` |
//! | `GET /events?topic=ticket:1,workspace:acme` | SSE | |
//!
//! No or unknown token: 401 with `WWW-Authenticate: Bearer`. A ticket of another workspace: 404
//! on the API (its existence is not revealed), 403 on `/events`. Both with a JSON body.
//! Browsers' `EventSource` cannot send headers: serve pages from the same site and authenticate
//! with a cookie, which `AuthUser` could read just as well.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, RouterExt, Topic};
use serde::{Deserialize, Serialize};

use common::api::{ApiError, ApiJson, ApiPath};
use common::clock::now_rfc3339;

/// Someone the API knows, found from their bearer token.
#[derive(Debug, Clone)]
struct User {
    name: &'static str,
    /// The workspace whose tickets they see; an operator belongs to none.
    workspace: &'static str,
    /// May read the admin routes (metrics, catalog), which no workspace user may.
    operator: bool,
}

/// The demo's users. A real service checks a session or a signed token (JWT) here, and the
/// operator role is a claim of that token, not a user name.
fn user_for_token(token: &str) -> Option<User> {
    let (name, workspace, operator) = match token {
        "alice-token" => ("alice", "acme", false),
        "bob-token" => ("bob", "acme", false),
        "carol-token" => ("carol", "globex", false),
        "ops-token" => ("ops", "", true),
        _ => return None,
    };
    Some(User {
        name,
        workspace,
        operator,
    })
}

fn user_from_headers(headers: &HeaderMap) -> Result<User, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    user_for_token(token.trim()).ok_or_else(|| ApiError::unauthorized("unknown or expired token"))
}

/// Middleware of the admin routes: 401 without a known bearer token, 403 unless it is an
/// operator's (authentication is not authorization: any user's token used to open them).
async fn require_operator(
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let user = user_from_headers(&headers)?;
    if !user.operator {
        return Err(ApiError::forbidden(format!(
            "{} is not an operator: the admin routes need an operator's token",
            user.name
        )));
    }
    Ok(next.run(request).await)
}

/// The authenticated caller: a handler that takes it answers 401 to anonymous requests before
/// its body runs, whether it publishes, subscribes or neither.
struct AuthUser(User);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        user_from_headers(&parts.headers).map(AuthUser)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Open,
    Pending,
    Closed,
}

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: u64,
    workspace: &'static str,
    title: String,
    status: Status,
    opened_by: &'static str,
    updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
struct TicketComment {
    ticket_id: u64,
    author: &'static str,
    text: String,
    created_at: String,
}

#[derive(Deserialize)]
struct NewTicket {
    title: String,
}

#[derive(Deserialize)]
struct StatusChange {
    status: Status,
}

#[derive(Deserialize)]
struct NewComment {
    text: String,
}

#[derive(Default)]
struct Tickets {
    next_id: u64,
    by_id: BTreeMap<u64, Ticket>,
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Tickets>>);

impl Store {
    fn seeded() -> Store {
        let store = Store::default();
        for (workspace, title, by) in [
            ("acme", "Printer on fire", "alice"),
            ("acme", "VPN drops every hour", "bob"),
            ("globex", "Invoice totals off by one cent", "carol"),
        ] {
            store.insert(workspace, title.to_owned(), by);
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Tickets> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, workspace: &'static str, title: String, opened_by: &'static str) -> Ticket {
        let mut tickets = self.lock();
        tickets.next_id += 1;
        let ticket = Ticket {
            id: tickets.next_id,
            workspace,
            title,
            status: Status::Open,
            opened_by,
            updated_at: now_rfc3339(),
        };
        tickets.by_id.insert(ticket.id, ticket.clone());
        ticket
    }

    fn workspace_of(&self, id: u64) -> Option<&'static str> {
        self.lock().by_id.get(&id).map(|t| t.workspace)
    }

    /// The ticket, if `user` may see it. Another workspace's ticket is "not found" rather than
    /// "forbidden", so ids do not reveal what exists elsewhere.
    fn visible(&self, user: &User, id: u64) -> Result<Ticket, ApiError> {
        match self.lock().by_id.get(&id) {
            Some(t) if t.workspace == user.workspace => Ok(t.clone()),
            _ => Err(ApiError::not_found(format!(
                "no ticket {id} in your workspace"
            ))),
        }
    }

    /// Whether `user` may subscribe to `topic`: their workspace's topic and its tickets' topics.
    fn may_subscribe(&self, user: &User, topic: &Topic) -> bool {
        match topic.as_str().split_once(':') {
            Some(("workspace", ws)) => ws == user.workspace,
            Some(("ticket", id)) => id
                .parse()
                .ok()
                .and_then(|id| self.workspace_of(id))
                .is_some_and(|ws| ws == user.workspace),
            _ => false,
        }
    }
}

async fn list_tickets(State(store): State<Store>, AuthUser(user): AuthUser) -> Json<Vec<Ticket>> {
    let tickets = store.lock();
    Json(
        tickets
            .by_id
            .values()
            .filter(|t| t.workspace == user.workspace)
            .cloned()
            .collect(),
    )
}

async fn get_ticket(
    State(store): State<Store>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Ticket>, ApiError> {
    store.visible(&user, id).map(Json)
}

/// `{workspace}` is no argument of the handler, so it is read from the returned ticket.
#[publish_event(topic = "workspace:{workspace}", event = "ticket_created")]
async fn create_ticket(
    State(store): State<Store>,
    AuthUser(user): AuthUser,
    ApiJson(new): ApiJson<NewTicket>,
) -> Result<(StatusCode, Json<Ticket>), ApiError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("`title` must be 1 to 200 characters"));
    }
    let ticket = store.insert(user.workspace, title.to_owned(), user.name);
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// Two topics, one value: the ticket's watchers and the workspace's board both hear of it.
#[publish_event(topic = "ticket:{id}", event = "ticket_updated")]
#[publish_event(topic = "workspace:{workspace}", event = "ticket_updated")]
async fn update_ticket(
    State(store): State<Store>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<u64>,
    ApiJson(change): ApiJson<StatusChange>,
) -> Result<Json<Ticket>, ApiError> {
    store.visible(&user, id)?;
    let mut tickets = store.lock();
    let ticket = tickets
        .by_id
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found(format!("no ticket {id}")))?;
    ticket.status = change.status;
    ticket.updated_at = now_rfc3339();
    Ok(Json(ticket.clone()))
}

/// `{id}` binds the `Path(id)` argument, read before the handler runs.
#[publish_event(topic = "ticket:{id}", event = "comment_added")]
async fn add_comment(
    State(store): State<Store>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<u64>,
    ApiJson(new): ApiJson<NewComment>,
) -> Result<(StatusCode, Json<TicketComment>), ApiError> {
    store.visible(&user, id)?;
    let text = new.text.trim();
    if text.is_empty() || text.chars().count() > 2000 {
        return Err(ApiError::invalid("`text` must be 1 to 2000 characters"));
    }
    let comment = TicketComment {
        ticket_id: id,
        author: user.name,
        text: text.to_owned(),
        created_at: now_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(comment)))
}

/// `GET /events?topic=ticket:1,workspace:acme`. `AuthUser` answers 401 before anything else;
/// then the hub's authorize hook checks every topic (403 for the first one refused).
#[subscribe_to_events]
async fn events(_user: AuthUser) {}

fn router(store: Store) -> Router<()> {
    Router::new()
        .route("/tickets", get(list_tickets).post(create_ticket))
        .route("/tickets/{id}", get(get_ticket).patch(update_ticket))
        .route("/tickets/{id}/comments", post(add_comment))
        .route("/events", get(events))
        .with_state(store)
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let store = Store::seeded();
    let checker = store.clone();
    // The hook sees the request (headers, extensions) and one topic at a time; it runs after the
    // handler's extractors, before the stream starts.
    let hub = common::hub_from_env_with(|builder| {
        builder.authorize(move |request, topic| {
            let store = checker.clone();
            async move {
                user_from_headers(&request.headers)
                    .is_ok_and(|user| store.may_subscribe(&user, &topic))
            }
        })
    });
    // `/metrics` and `/events/catalog` describe the service from the inside (handler names,
    // source files): operators only.
    let admin = hub
        .admin_routes()
        .route_layer(axum::middleware::from_fn(require_operator));
    let app = router(store).livepush(&hub).merge(admin);
    common::serve("tickets", app, &hub).await;
}

//! The tickets app: users and their bearer tokens, the tickets store, the handlers, and the
//! hub's authorize hook. `main.rs` serves it; the tests (`tests/it/tickets.rs`) call it
//! in-process with `livepush::testing`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, Hub, HubBuilder, RouterExt, Topic};
use serde::{Deserialize, Serialize};

use crate::common::api::{ApiError, ApiJson, ApiPath};
use crate::common::clock::now_rfc3339;

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
pub struct Store(Arc<Mutex<Tickets>>);

impl Store {
    /// The demo's three tickets: 1 and 2 in `acme`, 3 in `globex`.
    pub fn seeded() -> Store {
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

/// `builder` with the hook that lets a user subscribe only to their workspace's topic and its
/// tickets' topics. The hook sees the request (headers, extensions) and one topic at a time; it
/// runs after the handler's extractors, before the stream starts.
pub fn authorized(builder: HubBuilder, store: Store) -> HubBuilder {
    builder.authorize(move |request, topic| {
        let store = store.clone();
        async move {
            user_from_headers(&request.headers).is_ok_and(|user| store.may_subscribe(&user, &topic))
        }
    })
}

/// The whole app on `hub` (built by [`authorized`]): the API, `/events`, and the operational
/// routes. `/metrics`, `/events/catalog` and the admin page describe the service from the
/// inside (handler names, source files): operators only.
pub fn router(store: Store, hub: &Hub) -> Router {
    let admin = hub
        .admin_routes()
        .route_layer(axum::middleware::from_fn(require_operator));
    Router::new()
        .route("/tickets", get(list_tickets).post(create_ticket))
        .route("/tickets/{id}", get(get_ticket).patch(update_ticket))
        .route("/tickets/{id}/comments", post(add_comment))
        .route("/events", get(events))
        .with_state(store)
        .livepush(hub)
        .merge(admin)
}

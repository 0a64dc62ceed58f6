//! The crm_comments app: an in-memory comment store, its JSON API, and the page.
//!
//! `router(&hub)` builds everything; `main.rs` serves it and the tests start it in-process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{extract::State, Json, Router};
use livepush::{publish_event, subscribe_to_events, Cursor, Hub, LivepushRouter, WithCursor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::api::{ApiError, ApiJson, ApiPath};
use crate::common::clock::now_rfc3339;

/// The live page: HTML, and its script bundled with the TypeScript client (`page.rs`).
const INDEX_HTML: &str = include_str!("index.html");

#[path = "page.rs"]
mod page;

/// Longest author name, in characters.
pub const MAX_AUTHOR_CHARS: usize = 80;
/// Longest comment text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// A comment, as stored, answered and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    pub id: u64,
    pub author: String,
    pub text: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The body of `POST /comments`.
#[derive(Debug, Deserialize)]
pub struct NewComment {
    author: String,
    text: String,
}

/// The body of `PUT /comments/{id}`: the fields to change (at least one).
#[derive(Debug, Deserialize)]
pub struct CommentChange {
    author: Option<String>,
    text: Option<String>,
}

#[derive(Default)]
struct Comments {
    next_id: u64,
    by_id: BTreeMap<u64, Comment>,
}

/// The comments of this process. A real service keeps them in its database.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Comments>>);

impl Store {
    fn lock(&self) -> MutexGuard<'_, Comments> {
        // A panic while holding the lock leaves the map consistent (every write is one insert
        // or remove), so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The whole app: the page, the comment API, `/events`, and livepush's operational routes.
pub fn router(hub: &Hub) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/page.js", get(page::script))
        .route("/comments", get(list_comments).post(create_comment))
        .route(
            "/comments/{id}",
            get(get_comment).put(update_comment).delete(delete_comment),
        )
        .route("/events", get(events))
        .with_state(Store::default())
        .livepush(hub)
        // /metrics and /events/catalog: open here, as a demo (see the README on mounting them)
        .merge(hub.admin_routes())
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

/// `GET /events?topic=comments`: the live stream.
#[subscribe_to_events]
async fn events() {}

/// `GET /comments`: every comment, oldest first, with the `Livepush-Cursor` to subscribe from
/// (read before the list, see [`Cursor`]).
async fn list_comments(
    cursor: Cursor,
    State(store): State<Store>,
) -> WithCursor<Json<Vec<Comment>>> {
    cursor.with(Json(store.lock().by_id.values().cloned().collect()))
}

/// `GET /comments/{id}`.
async fn get_comment(
    State(store): State<Store>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Comment>, ApiError> {
    store
        .lock()
        .by_id
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| unknown(id))
}

/// `POST /comments`: 201 with the new comment, which every subscriber of `comments` receives as
/// `comment_created`.
#[publish_event(topic = "comments", event = "comment_created")]
async fn create_comment(
    State(store): State<Store>,
    ApiJson(new): ApiJson<NewComment>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let author = checked("author", &new.author, MAX_AUTHOR_CHARS)?;
    let text = checked("text", &new.text, MAX_TEXT_CHARS)?;
    let mut comments = store.lock();
    comments.next_id += 1;
    let comment = Comment {
        id: comments.next_id,
        author,
        text,
        created_at: now_rfc3339(),
        updated_at: None,
    };
    comments.by_id.insert(comment.id, comment.clone());
    Ok((StatusCode::CREATED, Json(comment)))
}

/// `PUT /comments/{id}`: 200 with the changed comment, published as `comment_updated`.
#[publish_event(topic = "comments", event = "comment_updated")]
async fn update_comment(
    State(store): State<Store>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(change): ApiJson<CommentChange>,
) -> Result<Json<Comment>, ApiError> {
    if change.author.is_none() && change.text.is_none() {
        return Err(ApiError::invalid("give `author`, `text` or both"));
    }
    let author = change
        .author
        .map(|a| checked("author", &a, MAX_AUTHOR_CHARS))
        .transpose()?;
    let text = change
        .text
        .map(|t| checked("text", &t, MAX_TEXT_CHARS))
        .transpose()?;
    let mut comments = store.lock();
    let comment = comments.by_id.get_mut(&id).ok_or_else(|| unknown(id))?;
    if let Some(author) = author {
        comment.author = author;
    }
    if let Some(text) = text {
        comment.text = text;
    }
    comment.updated_at = Some(now_rfc3339());
    Ok(Json(comment.clone()))
}

/// `DELETE /comments/{id}`: 200 with the deleted comment, published as `comment_deleted`.
#[publish_event(topic = "comments", event = "comment_deleted")]
async fn delete_comment(
    State(store): State<Store>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Comment>, ApiError> {
    store
        .lock()
        .by_id
        .remove(&id)
        .map(Json)
        .ok_or_else(|| unknown(id))
}

/// `value` trimmed, if it is not empty and at most `max` characters long.
fn checked(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(format!("`{field}` must not be empty")));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(ApiError::invalid(format!(
            "`{field}` is {chars} characters long; the limit is {max}"
        )));
    }
    Ok(value.to_owned())
}

fn unknown(id: u64) -> ApiError {
    ApiError::not_found(format!("no comment with id {id}"))
}

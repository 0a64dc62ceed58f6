//! The crm_comments app: comments in a database (SQLite or PostgreSQL, through `sqlx`), their
//! JSON API, and the page. Every change is written with its event in one transaction (the
//! outbox), so an event reaches subscribers if and only if its change committed.
//!
//! `Db::open(url)` connects and migrates, `router(&hub, db)` builds everything; `main.rs`
//! serves it and the tests start it in-process.
#![allow(dead_code)] // the tests include this file and use part of it

use std::str::FromStr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{extract::State, Extension, Json, Router};
use livepush::cursor::WithCursor;
use livepush::outbox::{Outbox, OutboxError};
use livepush::{subscribe_to_events, Hub, RouterExt, SseEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

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

// Published as `comment_created` on `comments` (the comment as answered). Plain comments, not
// docs, on these three: a doc comment would make schemars describe the wrapper instead of
// documenting `Comment` itself as the payload (`#[schemars(transparent)]` needs no attributes).
#[derive(Serialize, SseEvent, JsonSchema)]
#[sse(event = "comment_created", topic = "comments")]
#[schemars(transparent)]
pub struct CommentCreated(pub Comment);

// Published as `comment_updated` on `comments`.
#[derive(Serialize, SseEvent, JsonSchema)]
#[sse(event = "comment_updated", topic = "comments")]
#[schemars(transparent)]
pub struct CommentUpdated(pub Comment);

// Published as `comment_deleted` on `comments`.
#[derive(Serialize, SseEvent, JsonSchema)]
#[sse(event = "comment_deleted", topic = "comments")]
#[schemars(transparent)]
pub struct CommentDeleted(pub Comment);

/// Where the comments live when `DATABASE_URL` is unset: a file in the working directory,
/// created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://crm_comments.db?mode=rwc";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("examples/crm_comments/migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("examples/crm_comments/migrations/postgres");

/// The comment store: a pool of the database and its outbox.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    outbox: Outbox,
    kind: &'static str,
}

type CommentRow = (i64, String, String, String, Option<String>);

const COLUMNS: &str = "id, author, text, created_at, updated_at";

impl Db {
    /// Connects to `url` (`sqlite:…` or `postgres://…`), applies the migrations and creates the
    /// outbox table. Waits up to 10 s for a database that is starting.
    pub async fn open(url: &str) -> Result<Db, String> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(format!(
                "DATABASE_URL must start with sqlite: or postgres:// (got {:?})",
                url.split(':').next().unwrap_or_default()
            ));
        }
        let options = AnyConnectOptions::from_str(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            // a database that is down answers 503 within this, instead of hanging the request
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // readers do not block the writer; several processes share the file
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let outbox = Outbox::connect(url).map_err(|e| e.to_string())?;
        let migrator = if sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        let mut last = String::new();
        for _ in 0..20 {
            let ready = async {
                migrator.run(&pool).await.map_err(|e| e.to_string())?;
                outbox.ensure_schema().await.map_err(|e| e.to_string())
            };
            match ready.await {
                Ok(()) => {
                    let kind = if sqlite { "SQLite" } else { "PostgreSQL" };
                    return Ok(Db { pool, outbox, kind });
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("cannot prepare the database: {last}"))
    }

    /// `"SQLite"` or `"PostgreSQL"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The outbox, for starting its relay.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

fn comment((id, author, text, created_at, updated_at): CommentRow) -> Comment {
    Comment {
        id: id as u64,
        author,
        text,
        created_at,
        updated_at,
    }
}

/// A database failure as the handler's answer: 503 when the database cannot be reached (retry
/// later), 500 otherwise; nothing was published either way.
fn db_error(e: impl Into<OutboxError>) -> ApiError {
    let e = e.into();
    tracing::warn!(error = %e, "database error");
    if e.is_unavailable() || is_busy(&e) {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database cannot be reached right now; try again",
        )
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database_error",
            "the database refused the change",
        )
    }
}

/// SQLite's "database is locked" (another process held the write lock past the busy timeout).
fn is_busy(e: &OutboxError) -> bool {
    matches!(e, OutboxError::Database(sqlx::Error::Database(d)) if d.code().is_some_and(|c| c == "5" || c == "6"))
}

/// The whole app: the page, the comment API, `/events`, and livepush's operational routes.
pub fn router(hub: &Hub, db: Db) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/page.js", get(page::script))
        .route("/comments", get(list_comments).post(create_comment))
        .route(
            "/comments/{id}",
            get(get_comment).put(update_comment).delete(delete_comment),
        )
        .route("/events", get(events))
        .with_state(db)
        .livepush(hub)
        // /metrics, /events/catalog and /events/asyncapi.json: open here, as a demo (see
        // docs/deployment.md on mounting them where only operators reach them)
        .merge(hub.admin_routes())
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

/// `GET /events?topic=comments`: the live stream.
#[subscribe_to_events]
async fn events() {}

/// `GET /comments`: every comment, oldest first, with the `Livepush-Cursor` to subscribe from:
/// read by the outbox in the list's transaction ([`Outbox::cursor`]), it yields exactly the
/// events of the changes committed after the list was read.
async fn list_comments(
    Extension(hub): Extension<Hub>,
    State(db): State<Db>,
) -> Result<WithCursor<Json<Vec<Comment>>>, ApiError> {
    let mut tx = db.pool.begin().await.map_err(db_error)?;
    let cursor = db.outbox.cursor(&hub, &mut tx).await.map_err(db_error)?;
    let rows: Vec<CommentRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM comments ORDER BY id"))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(cursor
        .with(Json(rows.into_iter().map(comment).collect()))
        .await)
}

/// `GET /comments/{id}`.
async fn get_comment(
    State(db): State<Db>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Comment>, ApiError> {
    let row: Option<CommentRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM comments WHERE id = $1"))
            .bind(db_id(id)?)
            .fetch_optional(&db.pool)
            .await
            .map_err(db_error)?;
    row.map(comment).map(Json).ok_or_else(|| unknown(id))
}

/// `POST /comments`: 201 with the new comment, which every subscriber of `comments` receives as
/// `comment_created` once the insert committed.
async fn create_comment(
    State(db): State<Db>,
    ApiJson(new): ApiJson<NewComment>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let author = checked("author", &new.author, MAX_AUTHOR_CHARS)?;
    let text = checked("text", &new.text, MAX_TEXT_CHARS)?;
    let mut tx = db.pool.begin().await.map_err(db_error)?;
    let row: CommentRow = sqlx::query_as(&format!(
        "INSERT INTO comments (author, text, created_at) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(author)
    .bind(text)
    .bind(now_rfc3339())
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let created = comment(row);
    db.outbox
        .commit_emit(tx, &CommentCreated(created.clone()))
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PUT /comments/{id}`: 200 with the changed comment, published as `comment_updated`.
async fn update_comment(
    State(db): State<Db>,
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
    let mut tx = db.pool.begin().await.map_err(db_error)?;
    let row: Option<CommentRow> = sqlx::query_as(&format!(
        "UPDATE comments SET author = COALESCE($1, author), text = COALESCE($2, text), \
         updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
    ))
    .bind(author)
    .bind(text)
    .bind(now_rfc3339())
    .bind(db_id(id)?)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    // Unknown id: the transaction rolls back when dropped, and nothing is published.
    let updated = comment(row.ok_or_else(|| unknown(id))?);
    db.outbox
        .commit_emit(tx, &CommentUpdated(updated.clone()))
        .await
        .map_err(db_error)?;
    Ok(Json(updated))
}

/// `DELETE /comments/{id}`: 200 with the deleted comment, published as `comment_deleted`.
async fn delete_comment(
    State(db): State<Db>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Comment>, ApiError> {
    let mut tx = db.pool.begin().await.map_err(db_error)?;
    let row: Option<CommentRow> = sqlx::query_as(&format!(
        "DELETE FROM comments WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(db_id(id)?)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let deleted = comment(row.ok_or_else(|| unknown(id))?);
    db.outbox
        .commit_emit(tx, &CommentDeleted(deleted.clone()))
        .await
        .map_err(db_error)?;
    Ok(Json(deleted))
}

/// The id as the database stores it (a signed 64-bit integer).
fn db_id(id: u64) -> Result<i64, ApiError> {
    i64::try_from(id).map_err(|_| unknown(id))
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

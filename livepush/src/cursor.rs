//! Load-then-subscribe without a gap: the stream position a list endpoint read its data at.
//!
//! A page that loads `GET /comments` and then subscribes misses what was published in between,
//! unless the list tells it where the stream stood. [`Cursor`] is that position; [`WithCursor`]
//! sends it as the `Livepush-Cursor` header. A client that subscribes with it as
//! `Last-Event-ID` (or `?lastEventId=`) gets every event published after it (replay on), or a
//! `livepush.reset` when the history cannot vouch for it (replay off or trimmed), and then
//! reloads the list.
//!
//! ```
//! use axum::{extract::State, Json};
//! use livepush::cursor::{Cursor, WithCursor};
//! # #[derive(Clone, Default)] struct Db;
//! # impl Db { fn all(&self) -> Vec<String> { vec![] } }
//!
//! // The cursor is read when the extractor runs, before the handler reads the list.
//! async fn list(cursor: Cursor, State(db): State<Db>) -> WithCursor<Json<Vec<String>>> {
//!     cursor.with(Json(db.all()))
//! }
//! # let _ = axum::Router::<Db>::new().route("/", axum::routing::get(list));
//! ```
//!
//! # Why the position is read first
//! Events are published after the write they describe. Reading the position before the data
//! means that every write missing from the list is published after the position, so the client
//! receives it; a write that made it into the list and was published after the position reaches
//! the client too, so apply events idempotently (upsert and delete by key, as the TypeScript
//! client's examples do).
//!
//! # Exact, with the transactional outbox
//! When the list and its events live in one database, [`Outbox::cursor`](crate::outbox::Outbox::cursor)
//! reads the cursor in the list's own transaction, and subscribing with it yields exactly the
//! events of the rows written after the list was read: none of a row the list holds.
//!
//! ```no_run
//! # #[cfg(feature = "outbox-postgres")]
//! # async fn list(hub: livepush::Hub, pool: sqlx::PgPool, outbox: livepush::outbox::Outbox)
//! #     -> Result<livepush::cursor::WithCursor<axum::Json<Vec<String>>>, livepush::outbox::OutboxError> {
//! let mut tx = pool.begin().await?;
//! let cursor = outbox.cursor(&hub, &mut tx).await?; // first in the transaction
//! let texts: Vec<String> = sqlx::query_scalar("SELECT text FROM comments ORDER BY id")
//!     .fetch_all(&mut *tx)
//!     .await?;
//! tx.commit().await?;
//! Ok(cursor.with(axum::Json(texts)).await)
//! # }
//! ```
//!
//! On a Redis Cluster the position is the vector of every partition's newest id
//! ([`StreamPosition::Partitions`], read by [`Hub::stream_position`]); [`Hub::position`] refuses
//! there, naming it.
//!
//! The value is still a plain event id (the event the relay gave the last row the list holds),
//! so browsers keep it as `Last-Event-ID` and the TypeScript client sends it as `lastEventId`.
//! What it costs:
//! - *PostgreSQL*: [`Outbox::publish`](crate::outbox::Outbox::publish) takes a shared advisory
//!   lock of the outbox table (one more lock in the statement that already takes the topic's),
//!   and the cursor takes it exclusively until the list's transaction ends: the list waits for
//!   the transactions writing outbox rows at that moment to commit, and writers wait while the
//!   list reads. Keep the list's transaction short, and publish last in writers' transactions
//!   (as for the topic lock). The transaction must be READ COMMITTED, the default.
//! - *SQLite*: nothing is locked (one writer at a time already orders rows by id).
//! - *Both*: after the transaction, the response waits until the relay has published the rows
//!   that were committed but not yet relayed when the list was read (a relay round: milliseconds
//!   in-process, up to a 50 ms poll for a SQLite relay in another process), at most
//!   [`Outbox::cursor_wait`](crate::outbox::Outbox::cursor_wait) (2 s). A relay that is down or
//!   far behind makes the cursor fall back to the broker position read with the list: nothing is
//!   lost, and events of rows the list holds may follow once more, as with this module's
//!   extractor (a warning is logged). Without a broker position (broker down), no header.
//!
//! [`OutboxCursor`](crate::outbox::OutboxCursor) gives the argument in full.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::event::EventId;
use crate::hub::Hub;
pub use crate::hub::StreamPosition;

/// The header a list endpoint sends its [`Cursor`] in: `Livepush-Cursor`.
pub const CURSOR_HEADER: &str = "livepush-cursor";

/// The stream position when the request was extracted; `None` when the broker could not tell
/// (then no header is sent and clients subscribe from now).
///
/// An axum extractor: it needs the hub layer (`.livepush(&hub)`) on the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Option<StreamPosition>);

impl Cursor {
    /// A cursor at the broker event id `id`: subscribing with it yields the events with higher
    /// ids.
    pub fn at(id: EventId) -> Self {
        Cursor(Some(StreamPosition::Id(id)))
    }

    /// A cursor at `position` (a plain id or a partition vector).
    pub fn at_position(position: StreamPosition) -> Self {
        Cursor(Some(position))
    }

    /// No known position: the response goes out without the header.
    #[cfg_attr(
        not(any(feature = "outbox-postgres", feature = "outbox-sqlite")),
        allow(dead_code)
    )]
    pub(crate) fn unknown() -> Self {
        Cursor(None)
    }

    /// The position as a plain id, if known and one sequence (`None` on a partitioned broker:
    /// see [`Cursor::position`]).
    pub fn id(&self) -> Option<EventId> {
        self.0.as_ref().and_then(StreamPosition::id)
    }

    /// The position, if known.
    pub fn position(&self) -> Option<&StreamPosition> {
        self.0.as_ref()
    }

    /// Reads the position of `hub` now ([`Hub::stream_position`]).
    pub async fn read(hub: &Hub) -> Self {
        match hub.stream_position().await {
            Ok(position) => Cursor(Some(position)),
            Err(error) => {
                tracing::warn!(%error, "stream position unavailable; the list goes out without a cursor");
                Cursor(None)
            }
        }
    }

    /// `response` with this cursor in its `Livepush-Cursor` header.
    pub fn with<T>(self, response: T) -> WithCursor<T> {
        WithCursor {
            cursor: self,
            response,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Cursor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Hub>() {
            Some(hub) => Ok(Cursor::read(hub).await),
            None => {
                tracing::error!("a `Cursor` extractor ran without a livepush Hub: add `.livepush(&hub)` to the router after its routes");
                Err(crate::error::SubscribeError::HubMissing.into_response())
            }
        }
    }
}

/// A response with a `Livepush-Cursor` header; built by [`Cursor::with`].
#[derive(Debug)]
pub struct WithCursor<T> {
    cursor: Cursor,
    response: T,
}

impl<T: IntoResponse> IntoResponse for WithCursor<T> {
    fn into_response(self) -> Response {
        let mut response = self.response.into_response();
        if let Some(position) = &self.cursor.0 {
            if let Ok(value) = HeaderValue::from_str(&position.to_string()) {
                response.headers_mut().insert(CURSOR_HEADER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;

    #[tokio::test]
    async fn the_cursor_is_the_newest_id() {
        let hub = Hub::builder().build().unwrap();
        let id = hub.publish("t", "e", &1).await.unwrap().id().unwrap();
        let cursor = Cursor::read(&hub).await;
        assert_eq!(cursor.id(), Some(id));
        let response = cursor.with(Json(1)).into_response();
        assert_eq!(response.headers()[CURSOR_HEADER], id.to_string().as_str());
    }

    #[test]
    fn an_unknown_cursor_sends_no_header() {
        let response = Cursor(None).with(Json(1)).into_response();
        assert!(response.headers().get(CURSOR_HEADER).is_none());
    }
}

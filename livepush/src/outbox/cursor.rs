//! The exact load-then-subscribe cursor of a list read from the outbox's database.
//!
//! The argument is on [`OutboxCursor`].

use std::time::Duration;

use axum::response::IntoResponse;

use super::store::{Progress, Wait};
use super::{now_micros, Outbox, OutboxConnection, OutboxError};
use crate::cursor::{Cursor, StreamPosition, WithCursor};
use crate::event::EventId;
use crate::hub::Hub;

/// More rows than this not relayed when the list is read: the relay is far behind, and the cursor
/// falls back at once instead of waiting for them.
const MAX_PENDING: i64 = 1000;

/// How long the broker may take to tell its position while the cursor holds the boundary.
const POSITION_TIMEOUT: Duration = Duration::from_secs(1);

/// What a list transaction saw of the outbox, read by [`Outbox::cursor`]: where a client that
/// loads this list subscribes from, once the relay has published what the list holds.
///
/// Turn it into the `Livepush-Cursor` header with [`OutboxCursor::with`] after the list's
/// transaction ended.
///
/// # Why it is exact
/// A [`Cursor`] must be a broker event id `C` such that the events of the rows the list holds
/// have ids up to `C` and the events of every later row ids above `C`. Two facts give it:
///
/// 1. **A boundary in the outbox.** The list's transaction sees a set of outbox rows, and every
///    row it does not see commits after every row it sees:
///    - *SQLite* has one writer at a time and `AUTOINCREMENT` ids, so rows commit in id order and
///      the list's read snapshot holds exactly the rows up to its newest id `M`.
///    - *PostgreSQL* hands out sequence values that commit in any order, so the newest id proves
///      nothing by itself. Every [`Outbox::publish`](super::Outbox::publish) takes a *shared*
///      transaction-scoped advisory lock of the table before it inserts, and the cursor takes the
///      *exclusive* one first in the list's (READ COMMITTED) transaction: it waits for the
///      transactions that are writing outbox rows to end, and no new one writes until the list's
///      transaction ends. So the rows the list sees are exactly the rows committed before it, and
///      every other row gets its id and commits after the list's transaction.
/// 2. **The relay keeps that boundary.** It publishes committed rows in id order, and a round
///    that sees a row committed after the boundary also sees every row before it (PostgreSQL
///    snapshots and SQLite's grow by whole commits): the rows before the boundary get the lower
///    event ids.
///
/// So `C` is the highest event id the rows before the boundary get, once the relay has published
/// them, and at least the broker's position `P` read with the boundary (every row relayed before
/// it has an id up to it; with no row left to wait for, `C = P`). Where `P` is read:
/// - *PostgreSQL*: under the lock, after the rows not relayed yet: nothing after the boundary can
///   be published before the lock is released, so those rows are all the cursor waits for.
/// - *SQLite*: before the snapshot, so rows committed after it are published after `P`. Event ids
///   follow row ids there, so the event of the newest relayed row up to `M` is the highest.
///
/// [`OutboxCursor::with`] waits for the relay to get there, up to
/// [`Outbox::cursor_wait`](super::Outbox::cursor_wait); past it (a relay that is down or far
/// behind) it falls back to that position, which loses nothing but may repeat events of rows the
/// list already holds, as the plain [`Cursor`] extractor does.
///
/// # On a Redis Cluster
/// A partitioned broker has one id sequence per partition, and the rows' events get ids of
/// several of them, so no single highest id proves the boundary. There the cursor is the
/// position vector read with the boundary ([`Hub::stream_position`](crate::Hub::stream_position)):
/// nothing is lost, and events of rows the list already holds may follow once more (at least
/// once, as the plain [`Cursor`] extractor), without waiting for the relay.
#[must_use = "send it with the list: `cursor.with(response).await`"]
pub struct OutboxCursor {
    outbox: Outbox,
    /// The broker's position when the boundary was read; `None` when the broker did not answer
    /// (the list then goes out without a cursor).
    floor: Option<StreamPosition>,
    wait: Wait,
    /// When the boundary was read (Unix µs): rows not relayed yet that are older than the wait
    /// mean a relay that is down or far behind.
    read_at: i64,
}

/// What the list's transaction read, per database.
#[doc(hidden)]
#[non_exhaustive]
pub enum Boundary {
    /// PostgreSQL, under the exclusive lock: the rows not relayed yet (at most
    /// `MAX_PENDING + 1`).
    Pending(Vec<i64>),
    /// SQLite: the newest row id in the list's snapshot (0: none).
    Newest(i64),
}

impl Outbox {
    /// The exact `Livepush-Cursor` of a list read in `tx`: call it first in the transaction that
    /// reads the list, and send the list with [`OutboxCursor::with`] after the transaction ended.
    /// Subscribing with the cursor as `Last-Event-ID` yields every event of the rows written after
    /// the list was read, and none of the rows it holds.
    ///
    /// ```no_run
    /// # #[cfg(feature = "outbox-sqlite")]
    /// # mod demo {
    /// use axum::{extract::State, http::StatusCode, Extension, Json};
    /// use livepush::cursor::WithCursor;
    /// use livepush::{outbox::Outbox, Hub};
    ///
    /// #[derive(Clone)]
    /// struct App { db: sqlx::SqlitePool, outbox: Outbox }
    ///
    /// fn unavailable(e: impl std::fmt::Display) -> StatusCode {
    ///     tracing::warn!(%e, "database");
    ///     StatusCode::SERVICE_UNAVAILABLE
    /// }
    ///
    /// async fn list(
    ///     Extension(hub): Extension<Hub>, // added by `.livepush(&hub)`
    ///     State(app): State<App>,
    /// ) -> Result<WithCursor<Json<Vec<String>>>, StatusCode> {
    ///     let mut tx = app.db.begin().await.map_err(unavailable)?;
    ///     // first in the transaction
    ///     let cursor = app.outbox.cursor(&hub, &mut tx).await.map_err(unavailable)?;
    ///     let texts = sqlx::query_scalar("SELECT text FROM comments ORDER BY id")
    ///         .fetch_all(&mut *tx)
    ///         .await
    ///         .map_err(unavailable)?;
    ///     // on PostgreSQL, writers wait until here: keep the transaction short
    ///     tx.commit().await.map_err(unavailable)?;
    ///     Ok(cursor.with(Json(texts)).await)
    /// }
    /// # fn routed() -> axum::Router<App> { axum::Router::new().route("/", axum::routing::get(list)) }
    /// # }
    /// ```
    ///
    /// On PostgreSQL it takes the outbox's exclusive advisory lock until `tx` ends, after the
    /// transactions writing outbox rows ended, so [`Outbox::publish`] waits meanwhile; `tx` must
    /// be READ COMMITTED (PostgreSQL's default: [`OutboxError::Isolation`] otherwise). On SQLite
    /// it reads in `tx`'s snapshot and locks nothing. Both ask the hub's broker for its position
    /// once. Rows must be written through [`Outbox::publish`] (or `commit`, `emit`).
    pub async fn cursor<DB>(
        &self,
        hub: &Hub,
        tx: &mut sqlx::Transaction<'_, DB>,
    ) -> Result<OutboxCursor, OutboxError>
    where
        DB: sqlx::Database,
        DB::Connection: OutboxConnection,
    {
        let conn: &mut DB::Connection = tx;
        let table = self.inner.table.as_str();
        let read_at = now_micros();
        let (floor, wait) = if conn.is_postgres() {
            // Lock, then the rows not relayed, then the position: every row relayed before the
            // position was read has an event id up to it, and nothing after the boundary can be
            // relayed before the lock is released.
            let pending = match conn.read_outbox_boundary(table, MAX_PENDING + 1).await? {
                Boundary::Pending(rows) => rows,
                Boundary::Newest(_) => unreachable_boundary(),
            };
            let floor = position(hub).await;
            let wait = if pending.len() as i64 > MAX_PENDING {
                Wait::Behind
            } else if pending.is_empty() {
                Wait::Nothing
            } else {
                Wait::Rows(pending)
            };
            (floor, wait)
        } else {
            // The position first: rows committed after the snapshot below are relayed after it.
            let floor = position(hub).await;
            let newest = match conn.read_outbox_boundary(table, 0).await? {
                Boundary::Newest(id) => id,
                Boundary::Pending(_) => unreachable_boundary(),
            };
            let wait = if newest > 0 {
                Wait::UpTo(newest)
            } else {
                Wait::Nothing
            };
            (floor, wait)
        };
        Ok(OutboxCursor {
            outbox: self.clone(),
            floor,
            wait,
            read_at,
        })
    }
}

/// A connection answers the boundary of its own database: a PostgreSQL one never a SQLite one's.
fn unreachable_boundary() -> ! {
    unreachable!("an outbox connection read the boundary of another database")
}

async fn position(hub: &Hub) -> Option<StreamPosition> {
    match tokio::time::timeout(POSITION_TIMEOUT, hub.stream_position()).await {
        Ok(Ok(id)) => Some(id),
        Ok(Err(error)) => {
            tracing::warn!(%error, "stream position unavailable; the list goes out without a cursor");
            None
        }
        Err(_) => {
            tracing::warn!(
                "the broker did not tell its position within {POSITION_TIMEOUT:?}; the list goes out without a cursor"
            );
            None
        }
    }
}

impl OutboxCursor {
    /// `response` with the cursor in its `Livepush-Cursor` header, once the relay has published
    /// the rows the list holds (see [`Outbox::cursor_wait`](super::Outbox::cursor_wait)). Call it
    /// after the list's transaction ended: on PostgreSQL, the writers the cursor holds back wait
    /// until then.
    pub async fn with<T: IntoResponse>(self, response: T) -> WithCursor<T> {
        self.resolve().await.with(response)
    }

    /// The cursor, once the relay has published the rows the list holds ([`OutboxCursor::with`]
    /// without a response).
    pub async fn resolve(self) -> Cursor {
        let floor = match self.floor {
            None => return Cursor::unknown(),
            // A partitioned broker (Redis Cluster): the rows' events get ids of several
            // sequences, which no single "highest id" orders, so the cursor is the position
            // vector read with the boundary (at least once, as the `Cursor` extractor).
            Some(StreamPosition::Partitions(vector)) => {
                return Cursor::at_position(StreamPosition::Partitions(vector))
            }
            Some(StreamPosition::Id(floor)) => floor,
        };
        let inner = &self.outbox.inner;
        let wait = inner.cursor_wait;
        let rows = match &self.wait {
            Wait::Nothing => return Cursor::at(floor),
            Wait::Behind => {
                tracing::warn!(
                    "more than {MAX_PENDING} outbox rows wait for the relay: the list's cursor may repeat events of rows it holds"
                );
                return Cursor::at(floor);
            }
            Wait::Rows(_) | Wait::UpTo(_) => &self.wait,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut step = Duration::from_millis(2);
        loop {
            // Registered before the read, so a round that ends in between still wakes us.
            let relayed = inner.relayed.notified();
            tokio::pin!(relayed);
            relayed.as_mut().enable();
            match inner.store.progress(&inner.table, rows).await {
                Ok(Progress {
                    pending: 0,
                    newest_event,
                    ..
                }) => {
                    let id = newest_event.map_or(0, |e| e.max(0) as u64);
                    return Cursor::at(EventId::new(id.max(floor.get())));
                }
                Ok(Progress { oldest_pending, .. }) => {
                    // Written before the list was read and still not relayed after the whole
                    // wait: the relay is down or far behind; do not make every list wait for it.
                    let stale = oldest_pending
                        .is_some_and(|at| at < self.read_at - wait.as_micros() as i64);
                    if stale {
                        tracing::warn!("outbox rows older than the cursor wait are not relayed yet: the list's cursor may repeat events of rows it holds");
                        return Cursor::at(floor);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the outbox's progress; the list's cursor may repeat events of rows it holds");
                    return Cursor::at(floor);
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    ?wait,
                    "the outbox relay did not publish the list's rows within the cursor wait; the cursor may repeat events of rows the list holds"
                );
                return Cursor::at(floor);
            }
            // Woken by a relay of this process; polled for relays of other processes.
            let _ = tokio::time::timeout(step.min(deadline - now), relayed).await;
            step = (step * 2).min(Duration::from_millis(50));
        }
    }
}

impl std::fmt::Debug for OutboxCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxCursor")
            .field("floor", &self.floor)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

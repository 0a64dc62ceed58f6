//! The transactional outbox: events written in the application's own database transaction,
//! visible to subscribers if and only if it commits.
//!
//! A handler that writes to a database and then publishes has a window between the two: a
//! process that dies there (a deploy, an OOM kill) leaves the row without its event, and every
//! open page stale. With the outbox, the event is a row of the outbox table written in the same
//! transaction; a [relay](Relay) publishes committed rows to the hub's broker, in commit order,
//! at least once, and marks them. Each row is published with the dedupe key
//! `outbox:<outbox id>:<row id>` ([`Broker::publish_once`](crate::broker::Broker::publish_once)),
//! so a relay that crashed between publishing a row and marking it, and publishes it again, gives
//! subscribers the event once, with the id of the first publication (within
//! [`DEDUPE_WINDOW`](crate::broker::DEDUPE_WINDOW), 10 minutes).
//!
//! ```no_run
//! # #[cfg(feature = "outbox-postgres")]
//! # async fn handler(pool: sqlx::PgPool, outbox: livepush::outbox::Outbox) -> Result<(), livepush::outbox::OutboxError> {
//! let mut tx = pool.begin().await?;
//! let id: i64 = sqlx::query_scalar("INSERT INTO comments (text) VALUES ($1) RETURNING id")
//!     .bind("hi")
//!     .fetch_one(&mut *tx)
//!     .await?;
//! // written with the comment; published by the relay once (and only if) this commits
//! outbox.commit(tx, "comments", "comment_created", &serde_json::json!({ "id": id })).await?;
//! # Ok(()) }
//! ```
//!
//! # Order and concurrency
//! Rows of one topic are relayed in commit order: on PostgreSQL, [`Outbox::publish`] takes a
//! transaction-scoped advisory lock on the topic before it inserts, so two transactions that
//! publish to one topic commit in the order of their row ids (publish last, just before the
//! commit, to hold that lock briefly); SQLite has one writer at a time. One relay works at a
//! time, whatever the number of processes: a round runs in a transaction that holds an
//! advisory lock (PostgreSQL, `pg_try_advisory_xact_lock`: the others skip the round) or the
//! write lock (SQLite, `BEGIN IMMEDIATE`), and marks the rows it published before it commits.
//! A relay that dies mid-round leaves its rows unmarked (the transaction rolls back), and the
//! next round, in any process, publishes them again, deduped by the broker.
//!
//! # Lists and their cursor
//! [`Outbox::cursor`], read first in the transaction that reads a list, gives the list an exact
//! `Livepush-Cursor` ([`OutboxCursor`]): subscribing with it yields the events of every row
//! written after the list was read and none of a row the list holds. On PostgreSQL it relies on
//! a shared advisory lock of the table that [`Outbox::publish`] takes (with the topic's) and that
//! the cursor takes exclusively until the list's transaction ends. [`OutboxCursor`] gives the
//! argument; [`crate::cursor`] and `docs/outbox.md` the costs.
//!
//! # Waking up
//! PostgreSQL: [`Outbox::publish`] sends `NOTIFY <table>` with an empty payload (delivered at
//! commit, never near the 8,000-byte limit), every relay `LISTEN`s, and polls as a fallback
//! (default every 500 ms) for notifications lost while its listening connection was down. SQLite
//! has no notifications: [`Outbox::commit`] wakes the relays of its own process, and relays
//! poll (default every 50 ms) for commits of other processes.
//!
//! # The table
//! [`Outbox::ensure_schema`] creates it if needed (the relay calls it too): `livepush_outbox`
//! by default (`id`, `topic`, `event`, `category`, `data` (the compact JSON as published),
//! `created_at` and `relayed_at` in Unix microseconds, `event_id`), with a partial index on
//! the rows not relayed yet, and `livepush_outbox_meta`, which holds the random id of this
//! outbox used in dedupe keys (so two databases on one Redis never dedupe each other's rows).
//! Relayed rows older than the retention (default 1 hour) are deleted by the relay.

mod cursor;
mod locks;
#[cfg(feature = "outbox-postgres")]
mod postgres;
mod relay;
#[cfg(feature = "outbox-sqlite")]
mod sqlite;
mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use crate::error::{to_json, PublishError};
use crate::hub::checked_publication;
use crate::sse_event::SseEvent;
use crate::trace::Trace;

#[doc(hidden)]
pub use cursor::Boundary;
pub use cursor::OutboxCursor;
use locks::{cursor_lock_key, topic_lock_key, PG_CURSOR_LOCK, PG_LOCK_AND_NOTIFY};
pub use relay::{Relay, RelayHandle};
use store::Store;

/// The default outbox table.
pub const DEFAULT_TABLE: &str = "livepush_outbox";

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event cannot be published (invalid topic or name, does not serialize, too large):
    /// nothing was written.
    #[error(transparent)]
    Invalid(#[from] PublishError),
    /// The database failed: for [`Outbox::publish`], the transaction should be rolled back (it
    /// is when dropped).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The URL names a database this build has no outbox for.
    #[error("unsupported outbox database {scheme:?}: use postgres:// (feature `outbox-postgres`) or sqlite: (feature `outbox-sqlite`)")]
    Unsupported {
        /// The URL's scheme.
        scheme: String,
    },
    /// The table name is not a plain SQL identifier.
    #[error("invalid outbox table name {name:?}: use 1 to 48 lowercase ASCII letters, digits and _, not starting with a digit")]
    InvalidTable {
        /// The name refused.
        name: String,
    },
    /// [`Outbox::cursor`] ran in a PostgreSQL transaction that is not READ COMMITTED (its
    /// snapshot predates the lock that makes the cursor exact).
    #[error(
        "Outbox::cursor needs a READ COMMITTED transaction (PostgreSQL's default), not {level}"
    )]
    Isolation {
        /// The transaction's isolation level, as PostgreSQL names it (`repeatable read`…).
        level: String,
    },
}

impl OutboxError {
    /// Whether the database could not be reached or did not answer (as opposed to refusing a
    /// statement): a handler answers 503 for it.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            OutboxError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

/// Where events are written in transactions, and relayed from. Cheap to clone.
///
/// Build it on a pool ([`Outbox::postgres`], [`Outbox::sqlite`]) or from a URL
/// ([`Outbox::connect`]); the relay uses that pool. [`Outbox::publish`] works in a transaction
/// of any pool of the same database, including `sqlx::Any` ones.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// A validated identifier: safe to put into SQL text.
    table: String,
    store: Store,
    max_event_bytes: usize,
    /// Woken by [`Outbox::commit`]: the relays of this process look at once.
    wake: Arc<Notify>,
    /// Notified (all waiters) after each relay round of this process committed: cursors waiting
    /// for their rows look again.
    relayed: Arc<Notify>,
    /// How long [`OutboxCursor::with`] waits for the relay.
    cursor_wait: Duration,
}

/// A lazily connecting pool for `url`, of the backend its scheme names.
fn connect(url: &str) -> Result<Store, OutboxError> {
    #[cfg(feature = "outbox-postgres")]
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Ok(Arc::new(postgres::Postgres::connect(url)?));
    }
    #[cfg(feature = "outbox-sqlite")]
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(sqlite::Sqlite::connect(url)?));
    }
    Err(OutboxError::Unsupported {
        scheme: scheme_of(url).to_owned(),
    })
}

/// The scheme of a database URL, for the error that names an unsupported one.
fn scheme_of(url: &str) -> &str {
    url.split(':').next().unwrap_or_default()
}

/// Whether `name` is a plain SQL identifier: the one text the outbox puts into SQL.
fn is_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The default of [`Outbox::cursor_wait`].
const DEFAULT_CURSOR_WAIT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("table", &self.inner.table)
            .field("database", &self.inner.store.kind())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox in the PostgreSQL database of `pool`, table [`DEFAULT_TABLE`].
    #[cfg(feature = "outbox-postgres")]
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self::with_store(Arc::new(postgres::Postgres(pool)))
    }

    /// An outbox in the SQLite database of `pool`, table [`DEFAULT_TABLE`].
    #[cfg(feature = "outbox-sqlite")]
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        Self::with_store(Arc::new(sqlite::Sqlite(pool)))
    }

    /// An outbox in the database at `url` (`postgres://…`, `sqlite:…`), with a small pool of
    /// its own for the relay. Connects lazily: succeeds while the database is down.
    pub fn connect(url: &str) -> Result<Self, OutboxError> {
        Ok(Self::with_store(connect(url)?))
    }

    fn with_store(store: Store) -> Self {
        Outbox {
            inner: Arc::new(Inner {
                table: DEFAULT_TABLE.to_owned(),
                store,
                max_event_bytes: crate::config::Config::default().max_event_bytes,
                wake: Arc::new(Notify::new()),
                relayed: Arc::new(Notify::new()),
                cursor_wait: DEFAULT_CURSOR_WAIT,
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    table: old.table.clone(),
                    store: old.store.clone(),
                    max_event_bytes: old.max_event_bytes,
                    wake: old.wake.clone(),
                    relayed: old.relayed.clone(),
                    cursor_wait: old.cursor_wait,
                };
                change(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Uses table `name` (and `name_meta`) instead of [`DEFAULT_TABLE`].
    pub fn table(self, name: &str) -> Result<Self, OutboxError> {
        if !is_table_name(name) {
            return Err(OutboxError::InvalidTable {
                name: name.to_owned(),
            });
        }
        Ok(self.edit(|inner| inner.table = name.to_owned()))
    }

    /// Refuses to write events larger than `bytes` (default 64 KiB, as the hub's
    /// `max_event_bytes`; keep the two equal).
    pub fn max_event_bytes(self, bytes: usize) -> Self {
        self.edit(|inner| inner.max_event_bytes = bytes)
    }

    /// How long [`OutboxCursor::with`] waits for the relay to publish the rows a list holds
    /// (default 2 s) before it falls back to a cursor that may repeat some of them. A relay that
    /// keeps up takes a round (milliseconds; a 50 ms poll for a SQLite relay in another process).
    pub fn cursor_wait(self, wait: Duration) -> Self {
        self.edit(|inner| inner.cursor_wait = wait)
    }

    /// The outbox table's name.
    pub fn table_name(&self) -> &str {
        &self.inner.table
    }

    /// Creates the outbox tables and index if they do not exist (idempotent, safe to run from
    /// several processes at once).
    pub async fn ensure_schema(&self) -> Result<(), OutboxError> {
        self.inner.store.ensure_schema(&self.inner.table).await?;
        Ok(())
    }

    /// Writes `data` (serialized to JSON once) as event `event` on `topic` into the outbox, in
    /// the transaction (or connection) `conn`: the relay publishes it once the transaction
    /// commits, and never if it rolls back. Returns the row id.
    ///
    /// `conn` is `&mut tx` or `&mut *tx` of a `sqlx::Transaction` on PostgreSQL, SQLite or
    /// `Any`. Validates like [`Hub::publish`](crate::Hub::publish): an invalid event is refused
    /// before anything is written. On PostgreSQL it locks the topic until the transaction ends,
    /// so publish last, just before committing.
    pub async fn publish<C, T>(
        &self,
        conn: &mut C,
        topic: impl AsRef<str>,
        event: &str,
        data: &T,
    ) -> Result<i64, OutboxError>
    where
        C: OutboxConnection + ?Sized,
        T: Serialize + ?Sized,
    {
        let data = to_json(data)?;
        self.publish_json(conn, topic.as_ref(), event, None, data)
            .await
    }

    /// Writes a domain event ([`SseEvent`]) to the topic its template names, like
    /// [`Hub::emit`](crate::Hub::emit), in the transaction `conn`.
    pub async fn emit<C, E>(&self, conn: &mut C, event: &E) -> Result<i64, OutboxError>
    where
        C: OutboxConnection + ?Sized,
        E: SseEvent + Serialize,
    {
        let data = to_json(event)?;
        self.publish_json(conn, &event.topic(), E::EVENT, E::CATEGORY, data)
            .await
    }

    async fn publish_json<C>(
        &self,
        conn: &mut C,
        topic: &str,
        event: &str,
        category: Option<&str>,
        data: Bytes,
    ) -> Result<i64, OutboxError>
    where
        C: OutboxConnection + ?Sized,
    {
        let checked = checked_publication(
            topic,
            event,
            category,
            data,
            self.inner.max_event_bytes,
            written_trace(topic, event),
        )?;
        let data = std::str::from_utf8(&checked.data)
            .map_err(|e| PublishError::Serialize(serde::ser::Error::custom(e)))?;
        let row = NewRow {
            table: &self.inner.table,
            topic: checked.topic.as_str(),
            // The trace context rides on the event column, as on a broker's wire: no schema
            // change, and rows written without it read as before.
            event: &checked.trace.event_line(&checked.event),
            category: checked.category.as_deref(),
            data,
            created_at: now_micros(),
        };
        Ok(conn.insert_outbox_row(&row).await?)
    }

    /// Writes the event into `tx` ([`Outbox::publish`]), commits, and wakes the relays of this
    /// process: the whole outbox path of a handler in one call.
    ///
    /// ```no_run
    /// # #[cfg(feature = "outbox-sqlite")]
    /// # async fn create(pool: sqlx::SqlitePool, outbox: livepush::outbox::Outbox) -> Result<(), livepush::outbox::OutboxError> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO notes (text) VALUES ($1)").bind("hi").execute(&mut *tx).await?;
    /// outbox.commit(tx, "notes", "note_created", &serde_json::json!({ "text": "hi" })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit<DB, T>(
        &self,
        mut tx: sqlx::Transaction<'_, DB>,
        topic: impl AsRef<str>,
        event: &str,
        data: &T,
    ) -> Result<i64, OutboxError>
    where
        DB: sqlx::Database,
        DB::Connection: OutboxConnection,
        T: Serialize + ?Sized,
    {
        let row = self.publish(&mut *tx, topic, event, data).await?;
        tx.commit().await?;
        self.wake();
        Ok(row)
    }

    /// [`Outbox::emit`] into `tx`, then commits and wakes the relays of this process.
    pub async fn commit_emit<DB, E>(
        &self,
        mut tx: sqlx::Transaction<'_, DB>,
        event: &E,
    ) -> Result<i64, OutboxError>
    where
        DB: sqlx::Database,
        DB::Connection: OutboxConnection,
        E: SseEvent + Serialize,
    {
        let row = self.emit(&mut *tx, event).await?;
        tx.commit().await?;
        self.wake();
        Ok(row)
    }

    /// Tells the relays of this process that a transaction with outbox rows committed (what
    /// [`Outbox::commit`] does after committing). Without it they find the rows by
    /// `NOTIFY` (PostgreSQL) or by polling.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// A relay of this outbox into `hub`'s broker, to configure and [start](Relay::start).
    pub fn relay(&self, hub: &crate::hub::Hub) -> Relay {
        Relay::new(self.clone(), hub.clone())
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// An outbox row to insert.
#[doc(hidden)]
pub struct NewRow<'a> {
    table: &'a str,
    topic: &'a str,
    event: &'a str,
    category: Option<&'a str>,
    data: &'a str,
    created_at: i64,
}

/// A connection or transaction that [`Outbox::publish`] can write to: PostgreSQL, SQLite and
/// `Any` connections, and `sqlx::Transaction`s of them (`&mut tx` or `&mut *tx`).
#[async_trait]
pub trait OutboxConnection: Send {
    /// Inserts the row (and on PostgreSQL takes the table's shared lock and its topic's lock,
    /// and queues the NOTIFY); returns its id.
    #[doc(hidden)]
    async fn insert_outbox_row(&mut self, row: &NewRow<'_>) -> Result<i64, sqlx::Error>;

    /// Whether this is a PostgreSQL connection (else SQLite).
    #[doc(hidden)]
    fn is_postgres(&self) -> bool;

    /// [`Outbox::cursor`]'s read in the list's transaction: on PostgreSQL, the table's exclusive
    /// lock, then up to `limit` rows not relayed; on SQLite, the newest row id.
    #[doc(hidden)]
    async fn read_outbox_boundary(
        &mut self,
        table: &str,
        limit: i64,
    ) -> Result<Boundary, OutboxError>;
}

#[async_trait]
impl<DB> OutboxConnection for sqlx::Transaction<'_, DB>
where
    DB: sqlx::Database,
    DB::Connection: OutboxConnection,
{
    async fn insert_outbox_row(&mut self, row: &NewRow<'_>) -> Result<i64, sqlx::Error> {
        (**self).insert_outbox_row(row).await
    }

    fn is_postgres(&self) -> bool {
        (**self).is_postgres()
    }

    async fn read_outbox_boundary(
        &mut self,
        table: &str,
        limit: i64,
    ) -> Result<Boundary, OutboxError> {
        (**self).read_outbox_boundary(table, limit).await
    }
}

/// The trace context of an event written now: that of a `livepush.publish` span (feature
/// `otel`), a child of the current span, which every delivery of the row's event links to; under
/// an unsampled trace, that trace's context, and outside any trace none (no span: see `Trace`).
#[cfg(feature = "otel")]
fn written_trace(topic: &str, event: &str) -> Trace {
    if let Some(trace) = Trace::unrecorded_current() {
        return trace;
    }
    tracing::info_span!(
        "livepush.publish",
        topic,
        event,
        otel.kind = "producer",
        messaging.system = "livepush",
        messaging.operation.type = "create",
        messaging.destination.name = topic,
        livepush.outbox = true,
    )
    .in_scope(Trace::current)
}

/// Without the `otel` feature there is no context to carry.
#[cfg(not(feature = "otel"))]
fn written_trace(_topic: &str, _event: &str) -> Trace {
    Trace::NONE
}

fn pending_ids_sql(table: &str) -> String {
    format!("SELECT id FROM {table} WHERE relayed_at IS NULL ORDER BY id LIMIT $1")
}

fn newest_id_sql(table: &str) -> String {
    format!("SELECT COALESCE(MAX(id), 0) FROM {table}")
}

fn insert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (topic, event, category, data, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id"
    )
}

/// The same statements for each connection type (sqlx's binds are typed per database).
macro_rules! insert_row {
    ($conn:expr, $row:expr, lock: $lock:expr) => {{
        let row = $row;
        if $lock {
            sqlx::query(PG_LOCK_AND_NOTIFY)
                .bind(topic_lock_key(row.table, row.topic))
                .bind(row.table)
                .bind(cursor_lock_key(row.table))
                .execute(&mut *$conn)
                .await?;
        }
        sqlx::query_scalar(&insert_sql(row.table))
            .bind(row.topic)
            .bind(row.event)
            .bind(row.category)
            .bind(row.data)
            .bind(row.created_at)
            .fetch_one(&mut *$conn)
            .await
    }};
}

/// The same boundary read for each connection type.
macro_rules! read_boundary {
    ($conn:expr, $table:expr, $limit:expr, postgres: $postgres:expr) => {{
        let table: &str = $table;
        if $postgres {
            let isolation: String = sqlx::query_scalar(PG_CURSOR_LOCK)
                .bind(cursor_lock_key(table))
                .fetch_one(&mut *$conn)
                .await?;
            if isolation != "read committed" {
                return Err(OutboxError::Isolation { level: isolation });
            }
            let pending: Vec<i64> = sqlx::query_scalar(&pending_ids_sql(table))
                .bind($limit)
                .fetch_all(&mut *$conn)
                .await?;
            Ok(Boundary::Pending(pending))
        } else {
            let newest: i64 = sqlx::query_scalar(&newest_id_sql(table))
                .fetch_one(&mut *$conn)
                .await?;
            Ok(Boundary::Newest(newest))
        }
    }};
}

#[cfg(feature = "outbox-postgres")]
#[async_trait]
impl OutboxConnection for sqlx::PgConnection {
    async fn insert_outbox_row(&mut self, row: &NewRow<'_>) -> Result<i64, sqlx::Error> {
        insert_row!(self, row, lock: true)
    }

    fn is_postgres(&self) -> bool {
        true
    }

    async fn read_outbox_boundary(
        &mut self,
        table: &str,
        limit: i64,
    ) -> Result<Boundary, OutboxError> {
        read_boundary!(self, table, limit, postgres: true)
    }
}

#[cfg(feature = "outbox-sqlite")]
#[async_trait]
impl OutboxConnection for sqlx::SqliteConnection {
    async fn insert_outbox_row(&mut self, row: &NewRow<'_>) -> Result<i64, sqlx::Error> {
        insert_row!(self, row, lock: false)
    }

    fn is_postgres(&self) -> bool {
        false
    }

    async fn read_outbox_boundary(
        &mut self,
        table: &str,
        limit: i64,
    ) -> Result<Boundary, OutboxError> {
        read_boundary!(self, table, limit, postgres: false)
    }
}

#[async_trait]
impl OutboxConnection for sqlx::AnyConnection {
    async fn insert_outbox_row(&mut self, row: &NewRow<'_>) -> Result<i64, sqlx::Error> {
        let postgres = self.is_postgres();
        insert_row!(self, row, lock: postgres)
    }

    fn is_postgres(&self) -> bool {
        self.backend_name() == "PostgreSQL"
    }

    async fn read_outbox_boundary(
        &mut self,
        table: &str,
        limit: i64,
    ) -> Result<Boundary, OutboxError> {
        let postgres = self.is_postgres();
        read_boundary!(self, table, limit, postgres: postgres)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_name_is_a_plain_identifier() {
        for good in ["livepush_outbox", "o", "box_2", &"a".repeat(48)] {
            assert!(is_table_name(good), "{good}");
        }
        for bad in [
            "",
            "2box",
            "Box",
            "box;drop table x",
            "box-1",
            "bö",
            "box name",
            &"a".repeat(49),
        ] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn an_unsupported_url_is_named_by_its_scheme() {
        assert_eq!(scheme_of("mysql://u@h/db"), "mysql");
        assert_eq!(scheme_of(""), "");
        let Err(error) = Outbox::connect("mysql://u@h/db") else {
            panic!("mysql is no outbox database");
        };
        assert!(matches!(error, OutboxError::Unsupported { ref scheme } if scheme == "mysql"));
        assert!(error.to_string().contains("\"mysql\""), "{error}");
    }

    #[test]
    fn an_insert_binds_every_value_and_returns_the_id() {
        assert_eq!(
            insert_sql("box"),
            "INSERT INTO box (topic, event, category, data, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id"
        );
    }

    #[test]
    fn the_boundary_reads_pending_ids_in_order_or_the_newest_id() {
        assert_eq!(
            pending_ids_sql("box"),
            "SELECT id FROM box WHERE relayed_at IS NULL ORDER BY id LIMIT $1"
        );
        // An empty table has boundary 0: the cursor then waits for nothing.
        assert_eq!(newest_id_sql("box"), "SELECT COALESCE(MAX(id), 0) FROM box");
    }
}

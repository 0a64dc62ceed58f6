//! The outbox's SQL, per database: the schema, and what a relay round reads and writes.
//!
//! Table names are validated identifiers ([`Outbox::table`](super::Outbox::table)), the only
//! text put into SQL; every value is bound.

use futures_util::future::BoxFuture;

use super::cursor::Wait;
use super::OutboxError;

/// One committed row, as a relay reads it.
pub(super) struct PendingRow {
    pub(super) id: i64,
    pub(super) topic: String,
    pub(super) event: String,
    pub(super) category: Option<String>,
    pub(super) data: String,
}

type RowTuple = (i64, String, String, Option<String>, String);

impl From<RowTuple> for PendingRow {
    fn from((id, topic, event, category, data): RowTuple) -> Self {
        PendingRow {
            id,
            topic,
            event,
            category,
            data,
        }
    }
}

/// How far the relay got with the rows an [`OutboxCursor`](super::OutboxCursor) waits for.
pub(super) struct Progress {
    /// Rows among them not relayed yet.
    pub(super) pending: i64,
    /// The highest event id they got (`None`: none published, or all deleted since).
    pub(super) newest_event: Option<i64>,
    /// When the oldest of the pending ones was written (Unix µs).
    pub(super) oldest_pending: Option<i64>,
}

/// PostgreSQL: the rows a cursor waits for, by id (deleted ones were relayed long ago).
#[cfg(feature = "outbox-postgres")]
fn progress_rows_sql(table: &str) -> String {
    format!(
        "SELECT COUNT(*) FILTER (WHERE relayed_at IS NULL), MAX(event_id), \
         MIN(created_at) FILTER (WHERE relayed_at IS NULL) FROM {table} WHERE id = ANY($1)"
    )
}

/// SQLite: every row up to `$1`; event ids grow with row ids there, so the newest relayed row
/// with an event id has the highest (primary key order, then the partial index for the rest).
#[cfg(feature = "outbox-sqlite")]
fn progress_up_to_sql(table: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM {table} WHERE relayed_at IS NULL AND id <= $1), \
         (SELECT event_id FROM {table} WHERE id <= $1 AND event_id IS NOT NULL ORDER BY id DESC LIMIT 1), \
         (SELECT MIN(created_at) FROM {table} WHERE relayed_at IS NULL AND id <= $1)"
    )
}

/// The relay's pool.
#[derive(Clone)]
pub(super) enum Store {
    #[cfg(feature = "outbox-postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "outbox-sqlite")]
    Sqlite(sqlx::SqlitePool),
}

/// A relay round's transaction: it holds the relay lock until committed or dropped (a dropped
/// one rolls back, leaving its rows unmarked for the next round).
pub(super) enum RoundTx {
    #[cfg(feature = "outbox-postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    #[cfg(feature = "outbox-sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

fn pending_sql(table: &str) -> String {
    format!(
        "SELECT id, topic, event, category, data FROM {table} \
         WHERE relayed_at IS NULL ORDER BY id LIMIT $1"
    )
}

fn oldest_sql(table: &str) -> String {
    format!("SELECT created_at FROM {table} WHERE relayed_at IS NULL ORDER BY id LIMIT 1")
}

fn cleanup_sql(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE relayed_at IS NOT NULL AND relayed_at < $1 ORDER BY id LIMIT 10000)"
    )
}

fn instance_sql(table: &str) -> String {
    format!("SELECT instance FROM {table}_meta LIMIT 1")
}

#[cfg(feature = "outbox-postgres")]
fn postgres_schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id BIGSERIAL PRIMARY KEY,
            topic TEXT NOT NULL,
            event TEXT NOT NULL,
            category TEXT,
            data TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            relayed_at BIGINT,
            event_id BIGINT
        );
        CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (id) WHERE relayed_at IS NULL;
        CREATE TABLE IF NOT EXISTS {table}_meta (instance TEXT NOT NULL);
        INSERT INTO {table}_meta (instance)
            SELECT md5(random()::text || clock_timestamp()::text)
            WHERE NOT EXISTS (SELECT 1 FROM {table}_meta);"
    )
}

#[cfg(feature = "outbox-sqlite")]
fn sqlite_schema(table: &str) -> String {
    // AUTOINCREMENT: row ids are never reused after a cleanup, so a dedupe key names one row.
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL,
            event TEXT NOT NULL,
            category TEXT,
            data TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            relayed_at INTEGER,
            event_id INTEGER
        );
        CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (id) WHERE relayed_at IS NULL;
        CREATE TABLE IF NOT EXISTS {table}_meta (instance TEXT NOT NULL);
        INSERT INTO {table}_meta (instance)
            SELECT lower(hex(randomblob(16)))
            WHERE NOT EXISTS (SELECT 1 FROM {table}_meta);"
    )
}

impl Store {
    pub(super) fn kind(&self) -> &'static str {
        match *self {
            #[cfg(feature = "outbox-postgres")]
            Store::Postgres(_) => "postgres",
            #[cfg(feature = "outbox-sqlite")]
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// A lazily connecting pool for `url`.
    pub(super) fn connect(url: &str) -> Result<Store, OutboxError> {
        #[cfg(feature = "outbox-postgres")]
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(3)
                .acquire_timeout(std::time::Duration::from_secs(3))
                .connect_lazy(url)?;
            return Ok(Store::Postgres(pool));
        }
        #[cfg(feature = "outbox-sqlite")]
        if url.starts_with("sqlite:") {
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(5));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_lazy_with(options);
            return Ok(Store::Sqlite(pool));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(OutboxError::Unsupported(scheme.to_owned()))
    }

    pub(super) fn ensure_schema<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match self {
                #[cfg(feature = "outbox-postgres")]
                Store::Postgres(pool) => {
                    // Concurrent CREATE ... IF NOT EXISTS can still collide on PostgreSQL's
                    // catalogs: one process at a time.
                    // Already there (every start but the first): no DDL, and none of the
                    // "already exists, skipping" notices it would log.
                    let exists: bool = sqlx::query_scalar(
                        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                    )
                    .bind(table)
                    .bind(format!("{table}_meta"))
                    .fetch_one(pool)
                    .await?;
                    if exists {
                        return Ok(());
                    }
                    let mut tx = pool.begin().await?;
                    sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked")
                    .bind(format!("livepush_schema:{table}"))
                    .execute(&mut *tx)
                    .await?;
                    for statement in postgres_schema(table)
                        .split(';')
                        .filter(|s| !s.trim().is_empty())
                    {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
                #[cfg(feature = "outbox-sqlite")]
                Store::Sqlite(pool) => {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    for statement in sqlite_schema(table)
                        .split(';')
                        .filter(|s| !s.trim().is_empty())
                    {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
            }
        })
    }

    /// The random id of this outbox, for dedupe keys.
    pub(super) fn instance<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, Result<String, sqlx::Error>> {
        Box::pin(async move {
            let sql = instance_sql(table);
            match self {
                #[cfg(feature = "outbox-postgres")]
                Store::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
                #[cfg(feature = "outbox-sqlite")]
                Store::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
            }
        })
    }

    /// Begins a round: `None` when another relay holds the lock (PostgreSQL) — it relays.
    pub(super) fn begin_round<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoundTx>, sqlx::Error>> {
        let _ = table; // SQLite's write lock needs no name
        Box::pin(async move {
            match self {
                #[cfg(feature = "outbox-postgres")]
                Store::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    let locked: bool = sqlx::query_scalar(
                        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                    )
                    .bind(format!("livepush_relay:{table}"))
                    .fetch_one(&mut *tx)
                    .await?;
                    Ok(locked.then_some(RoundTx::Postgres(tx)))
                }
                // The write lock: relays (and writers) of every process take turns.
                #[cfg(feature = "outbox-sqlite")]
                Store::Sqlite(pool) => Ok(Some(RoundTx::Sqlite(
                    pool.begin_with("BEGIN IMMEDIATE").await?,
                ))),
            }
        })
    }

    /// When the oldest committed row not relayed yet was written (Unix µs), if any.
    pub(super) fn oldest_pending<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, sqlx::Error>> {
        Box::pin(async move {
            let sql = oldest_sql(table);
            match self {
                #[cfg(feature = "outbox-postgres")]
                Store::Postgres(pool) => sqlx::query_scalar(&sql).fetch_optional(pool).await,
                #[cfg(feature = "outbox-sqlite")]
                Store::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_optional(pool).await,
            }
        })
    }

    /// Deletes up to 10,000 rows relayed before `before` (Unix µs); returns how many.
    pub(super) fn cleanup<'a>(
        &'a self,
        table: &'a str,
        before: i64,
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let sql = cleanup_sql(table);
            let done = match self {
                #[cfg(feature = "outbox-postgres")]
                Store::Postgres(pool) => sqlx::query(&sql)
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected(),
                #[cfg(feature = "outbox-sqlite")]
                Store::Sqlite(pool) => sqlx::query(&sql)
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            };
            Ok(done)
        })
    }

    /// How far the relay got with the rows a cursor waits for.
    pub(super) fn progress<'a>(
        &'a self,
        table: &'a str,
        wait: &'a Wait,
    ) -> BoxFuture<'a, Result<Progress, sqlx::Error>> {
        Box::pin(async move {
            let (pending, newest_event, oldest_pending): (i64, Option<i64>, Option<i64>) =
                match (self, wait) {
                    #[cfg(feature = "outbox-postgres")]
                    (Store::Postgres(pool), Wait::Rows(rows)) => {
                        sqlx::query_as(&progress_rows_sql(table))
                            .bind(rows)
                            .fetch_one(pool)
                            .await?
                    }
                    #[cfg(feature = "outbox-sqlite")]
                    (Store::Sqlite(pool), Wait::UpTo(id)) => {
                        sqlx::query_as(&progress_up_to_sql(table))
                            .bind(id)
                            .fetch_one(pool)
                            .await?
                    }
                    // Nothing to wait for (the cursor does not ask), or another database's rule.
                    _ => (0, None, None),
                };
            Ok(Progress {
                pending,
                newest_event,
                oldest_pending,
            })
        })
    }

    #[cfg(feature = "outbox-postgres")]
    pub(super) fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match self {
            Store::Postgres(pool) => Some(pool),
            #[cfg(feature = "outbox-sqlite")]
            Store::Sqlite(_) => None,
        }
    }
}

impl RoundTx {
    /// Up to `limit` committed rows not relayed yet, oldest first.
    pub(super) fn pending<'a>(
        &'a mut self,
        table: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<PendingRow>, sqlx::Error>> {
        Box::pin(async move {
            let sql = pending_sql(table);
            let rows: Vec<RowTuple> = match self {
                #[cfg(feature = "outbox-postgres")]
                RoundTx::Postgres(tx) => {
                    sqlx::query_as(&sql)
                        .bind(limit)
                        .fetch_all(&mut **tx)
                        .await?
                }
                #[cfg(feature = "outbox-sqlite")]
                RoundTx::Sqlite(tx) => {
                    sqlx::query_as(&sql)
                        .bind(limit)
                        .fetch_all(&mut **tx)
                        .await?
                }
            };
            Ok(rows.into_iter().map(PendingRow::from).collect())
        })
    }

    /// Marks rows relayed at `now` (Unix µs) with the event id each got (`None`: given up).
    pub(super) fn mark<'a>(
        &'a mut self,
        table: &'a str,
        now: i64,
        done: &'a [(i64, Option<i64>)],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            if done.is_empty() {
                return Ok(());
            }
            match self {
                #[cfg(feature = "outbox-postgres")]
                RoundTx::Postgres(tx) => {
                    let ids: Vec<i64> = done.iter().map(|(id, _)| *id).collect();
                    let event_ids: Vec<Option<i64>> = done.iter().map(|(_, e)| *e).collect();
                    sqlx::query(&format!(
                        "UPDATE {table} AS o SET relayed_at = $1, event_id = v.event_id \
                     FROM UNNEST($2::bigint[], $3::bigint[]) AS v(id, event_id) WHERE o.id = v.id"
                    ))
                    .bind(now)
                    .bind(ids)
                    .bind(event_ids)
                    .execute(&mut **tx)
                    .await?;
                }
                #[cfg(feature = "outbox-sqlite")]
                RoundTx::Sqlite(tx) => {
                    let sql =
                        format!("UPDATE {table} SET relayed_at = $1, event_id = $2 WHERE id = $3");
                    for (id, event_id) in done {
                        sqlx::query(&sql)
                            .bind(now)
                            .bind(*event_id)
                            .bind(*id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            Ok(())
        })
    }

    pub(super) fn commit(self) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match self {
                #[cfg(feature = "outbox-postgres")]
                RoundTx::Postgres(tx) => tx.commit().await,
                #[cfg(feature = "outbox-sqlite")]
                RoundTx::Sqlite(tx) => tx.commit().await,
            }
        })
    }
}

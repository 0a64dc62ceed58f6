//! The outbox on SQLite: its schema, and a relay round under the database's write lock.

use std::time::Duration;

use async_trait::async_trait;

use super::store::{
    cleanup_sql, instance_sql, oldest_sql, pending_sql, statements, Backend, PendingRow, Progress,
    Round, RowTuple, Wait,
};
use super::OutboxError;

/// An outbox's pool on SQLite.
pub(super) struct Sqlite(pub(super) sqlx::SqlitePool);

impl Sqlite {
    /// A lazily connecting pool for `url`, in WAL mode (readers do not wait for the relay).
    pub(super) fn connect(url: &str) -> Result<Self, OutboxError> {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Sqlite(pool))
    }
}

pub(super) fn schema(table: &str) -> String {
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

/// Every row up to `$1`; event ids grow with row ids there, so the newest relayed row with an
/// event id has the highest (primary key order, then the partial index for the rest).
pub(super) fn progress_up_to_sql(table: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM {table} WHERE relayed_at IS NULL AND id <= $1), \
         (SELECT event_id FROM {table} WHERE id <= $1 AND event_id IS NOT NULL ORDER BY id DESC LIMIT 1), \
         (SELECT MIN(created_at) FROM {table} WHERE relayed_at IS NULL AND id <= $1)"
    )
}

pub(super) fn mark_sql(table: &str) -> String {
    format!("UPDATE {table} SET relayed_at = $1, event_id = $2 WHERE id = $3")
}

#[async_trait]
impl Backend for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    /// SQLite has no NOTIFY: commits of other processes are found by polling.
    fn default_poll(&self) -> Duration {
        Duration::from_millis(50)
    }

    async fn ensure_schema(&self, table: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        for statement in statements(&schema(table)) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    async fn instance(&self, table: &str) -> Result<String, sqlx::Error> {
        sqlx::query_scalar(&instance_sql(table))
            .fetch_one(&self.0)
            .await
    }

    /// The write lock: relays (and writers) of every process take turns; it needs no name.
    async fn begin_round(&self, _table: &str) -> Result<Option<Box<dyn Round>>, sqlx::Error> {
        let tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Some(Box::new(SqliteRound(tx))))
    }

    async fn oldest_pending(&self, table: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(&oldest_sql(table))
            .fetch_optional(&self.0)
            .await
    }

    async fn cleanup(&self, table: &str, before: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(&cleanup_sql(table))
            .bind(before)
            .execute(&self.0)
            .await?;
        Ok(done.rows_affected())
    }

    async fn progress(&self, table: &str, wait: &Wait) -> Result<Progress, sqlx::Error> {
        // A SQLite cursor waits for every row up to an id; it never asks for another rule.
        let Wait::UpTo(id) = wait else {
            return Ok(Progress::default());
        };
        let row: (i64, Option<i64>, Option<i64>) = sqlx::query_as(&progress_up_to_sql(table))
            .bind(id)
            .fetch_one(&self.0)
            .await?;
        Ok(row.into())
    }
}

/// A round's transaction, holding the database's write lock.
struct SqliteRound(sqlx::Transaction<'static, sqlx::Sqlite>);

#[async_trait]
impl Round for SqliteRound {
    async fn pending(&mut self, table: &str, limit: i64) -> Result<Vec<PendingRow>, sqlx::Error> {
        let rows: Vec<RowTuple> = sqlx::query_as(&pending_sql(table))
            .bind(limit)
            .fetch_all(&mut *self.0)
            .await?;
        Ok(rows.into_iter().map(PendingRow::from).collect())
    }

    async fn mark(
        &mut self,
        table: &str,
        now: i64,
        done: &[(i64, Option<i64>)],
    ) -> Result<(), sqlx::Error> {
        let sql = mark_sql(table);
        for (id, event_id) in done {
            sqlx::query(&sql)
                .bind(now)
                .bind(*event_id)
                .bind(*id)
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_never_reuses_row_ids() {
        let script = schema("box");
        let parts: Vec<&str> = statements(&script).collect();
        assert_eq!(parts.len(), 4, "{parts:?}");
        // A dedupe key names one row for ever: ids are not reused after a cleanup.
        assert!(parts[0].contains("id INTEGER PRIMARY KEY AUTOINCREMENT"));
        assert!(parts[1].contains("ON box (id) WHERE relayed_at IS NULL"));
        assert!(parts[3].contains("INSERT INTO box_meta (instance)"));
    }

    #[test]
    fn progress_reads_every_row_up_to_the_boundary() {
        let sql = progress_up_to_sql("box");
        assert_eq!(sql.matches("id <= $1").count(), 3, "{sql}");
        assert!(sql.contains("ORDER BY id DESC LIMIT 1"));
    }

    #[test]
    fn marking_binds_every_value() {
        assert_eq!(
            mark_sql("box"),
            "UPDATE box SET relayed_at = $1, event_id = $2 WHERE id = $3"
        );
    }
}

//! The outbox on PostgreSQL: its schema, and a relay round under a tried advisory lock.

use std::time::Duration;

use async_trait::async_trait;

use super::locks::{relay_lock_key, schema_lock_key, PG_SCHEMA_LOCK, PG_TRY_RELAY_LOCK};
use super::store::{
    cleanup_sql, instance_sql, oldest_sql, pending_sql, statements, Backend, PendingRow, Progress,
    Round, RowTuple, Wait,
};
use super::OutboxError;

/// An outbox's pool on PostgreSQL.
pub(super) struct Postgres(pub(super) sqlx::PgPool);

impl Postgres {
    /// A lazily connecting pool for `url`.
    pub(super) fn connect(url: &str) -> Result<Self, OutboxError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)?;
        Ok(Postgres(pool))
    }
}

pub(super) fn schema(table: &str) -> String {
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

/// The rows a cursor waits for, by id (deleted ones were relayed long ago).
pub(super) fn progress_rows_sql(table: &str) -> String {
    format!(
        "SELECT COUNT(*) FILTER (WHERE relayed_at IS NULL), MAX(event_id), \
         MIN(created_at) FILTER (WHERE relayed_at IS NULL) FROM {table} WHERE id = ANY($1)"
    )
}

/// One statement marks the whole batch, each row with its own event id.
pub(super) fn mark_sql(table: &str) -> String {
    format!(
        "UPDATE {table} AS o SET relayed_at = $1, event_id = v.event_id \
         FROM UNNEST($2::bigint[], $3::bigint[]) AS v(id, event_id) WHERE o.id = v.id"
    )
}

#[async_trait]
impl Backend for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// NOTIFY wakes the relay; the poll only covers notifications lost while reconnecting.
    fn default_poll(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn ensure_schema(&self, table: &str) -> Result<(), sqlx::Error> {
        // Already there (every start but the first): no DDL, and none of the "already exists,
        // skipping" notices it would log.
        let exists: bool = sqlx::query_scalar(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
        )
        .bind(table)
        .bind(format!("{table}_meta"))
        .fetch_one(&self.0)
        .await?;
        if exists {
            return Ok(());
        }
        let mut tx = self.0.begin().await?;
        sqlx::query(PG_SCHEMA_LOCK)
            .bind(schema_lock_key(table))
            .execute(&mut *tx)
            .await?;
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

    async fn begin_round(&self, table: &str) -> Result<Option<Box<dyn Round>>, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let locked: bool = sqlx::query_scalar(PG_TRY_RELAY_LOCK)
            .bind(relay_lock_key(table))
            .fetch_one(&mut *tx)
            .await?;
        Ok(locked.then(|| Box::new(PgRound(tx)) as Box<dyn Round>))
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
        // A PostgreSQL cursor waits for rows by id; it never asks for another rule.
        let Wait::Rows(rows) = wait else {
            return Ok(Progress::default());
        };
        let row: (i64, Option<i64>, Option<i64>) = sqlx::query_as(&progress_rows_sql(table))
            .bind(rows)
            .fetch_one(&self.0)
            .await?;
        Ok(row.into())
    }

    fn notify_pool(&self) -> Option<&sqlx::PgPool> {
        Some(&self.0)
    }
}

/// A round's transaction, holding the relay lock.
struct PgRound(sqlx::Transaction<'static, sqlx::Postgres>);

#[async_trait]
impl Round for PgRound {
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
        if done.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = done.iter().map(|(id, _)| *id).collect();
        let event_ids: Vec<Option<i64>> = done.iter().map(|(_, e)| *e).collect();
        sqlx::query(&mark_sql(table))
            .bind(now)
            .bind(ids)
            .bind(event_ids)
            .execute(&mut *self.0)
            .await?;
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
    fn the_schema_is_four_idempotent_statements() {
        let script = schema("box");
        let parts: Vec<&str> = statements(&script).collect();
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert!(parts[0].contains("CREATE TABLE IF NOT EXISTS box ("));
        assert!(parts[0].contains("id BIGSERIAL PRIMARY KEY"));
        assert!(parts[1].contains(
            "CREATE INDEX IF NOT EXISTS box_pending ON box (id) WHERE relayed_at IS NULL"
        ));
        assert!(parts[2].contains("CREATE TABLE IF NOT EXISTS box_meta"));
        // The instance id is written once, whoever creates the table first.
        assert!(parts[3].contains("WHERE NOT EXISTS (SELECT 1 FROM box_meta)"));
    }

    #[test]
    fn progress_counts_only_the_waited_rows() {
        let sql = progress_rows_sql("box");
        assert!(sql.ends_with("FROM box WHERE id = ANY($1)"));
        assert!(sql.contains("COUNT(*) FILTER (WHERE relayed_at IS NULL)"));
        assert!(sql.contains("MAX(event_id)"));
    }

    #[test]
    fn one_statement_marks_a_batch() {
        let sql = mark_sql("box");
        assert!(sql.starts_with("UPDATE box AS o SET relayed_at = $1, event_id = v.event_id"));
        assert!(sql.contains("UNNEST($2::bigint[], $3::bigint[]) AS v(id, event_id)"));
    }
}

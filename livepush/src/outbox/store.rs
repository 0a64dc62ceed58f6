//! The outbox's storage seam: what a relay round and a waiting cursor ask of the database, as a
//! private [`Backend`] trait that each database implements once ([`super::postgres`],
//! [`super::sqlite`]), and the SQL both share. The outbox's front (`mod.rs`) picks the backend.
//!
//! Table names are validated identifiers ([`Outbox::table`](super::Outbox::table)), the only
//! text put into SQL; every value is bound.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The relay's pool, whichever database it is in. Cheap to clone.
pub(super) type Store = Arc<dyn Backend>;

/// One database's answers to the relay and the cursor. Implemented once per database, so no
/// method dispatches on which database it is.
#[async_trait]
pub(super) trait Backend: Send + Sync {
    /// The database's name, for logs and `Debug`.
    fn kind(&self) -> &'static str;

    /// How often a relay looks for rows without being woken.
    fn default_poll(&self) -> Duration;

    /// Creates the outbox tables and index if they do not exist.
    async fn ensure_schema(&self, table: &str) -> Result<(), sqlx::Error>;

    /// The random id of this outbox, for dedupe keys.
    async fn instance(&self, table: &str) -> Result<String, sqlx::Error>;

    /// Begins a round: `None` when another relay holds the lock — it relays.
    async fn begin_round(&self, table: &str) -> Result<Option<Box<dyn Round>>, sqlx::Error>;

    /// When the oldest committed row not relayed yet was written (Unix µs), if any.
    async fn oldest_pending(&self, table: &str) -> Result<Option<i64>, sqlx::Error>;

    /// Deletes up to 10,000 rows relayed before `before` (Unix µs); returns how many.
    async fn cleanup(&self, table: &str, before: i64) -> Result<u64, sqlx::Error>;

    /// How far the relay got with the rows a cursor waits for.
    async fn progress(&self, table: &str, wait: &Wait) -> Result<Progress, sqlx::Error>;

    /// The pool a relay LISTENs on for NOTIFY (PostgreSQL only).
    #[cfg(feature = "outbox-postgres")]
    fn notify_pool(&self) -> Option<&sqlx::PgPool> {
        None
    }
}

/// A relay round's transaction: it holds the relay lock until committed or dropped (a dropped
/// one rolls back, leaving its rows unmarked for the next round).
#[async_trait]
pub(super) trait Round: Send {
    /// Up to `limit` committed rows not relayed yet, oldest first.
    async fn pending(&mut self, table: &str, limit: i64) -> Result<Vec<PendingRow>, sqlx::Error>;

    /// Marks rows relayed at `now` (Unix µs) with the event id each got (`None`: given up).
    async fn mark(
        &mut self,
        table: &str,
        now: i64,
        done: &[(i64, Option<i64>)],
    ) -> Result<(), sqlx::Error>;

    /// Commits the round, releasing the relay lock.
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
}

/// The rows whose event ids a cursor still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wait {
    /// None: the floor is the cursor.
    Nothing,
    /// PostgreSQL: these rows were committed but not relayed when the boundary was read.
    Rows(Vec<i64>),
    /// SQLite: every row up to this id (events follow row ids there).
    UpTo(i64),
    /// Too many rows not relayed: fall back at once.
    Behind,
}

/// One committed row, as a relay reads it.
pub(super) struct PendingRow {
    pub(super) id: i64,
    pub(super) topic: String,
    pub(super) event: String,
    pub(super) category: Option<String>,
    pub(super) data: String,
}

/// A [`PendingRow`] as [`pending_sql`] selects it.
pub(super) type RowTuple = (i64, String, String, Option<String>, String);

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
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    /// Rows among them not relayed yet.
    pub(super) pending: i64,
    /// The highest event id they got (`None`: none published, or all deleted since).
    pub(super) newest_event: Option<i64>,
    /// When the oldest of the pending ones was written (Unix µs).
    pub(super) oldest_pending: Option<i64>,
}

impl From<(i64, Option<i64>, Option<i64>)> for Progress {
    fn from((pending, newest_event, oldest_pending): (i64, Option<i64>, Option<i64>)) -> Self {
        Progress {
            pending,
            newest_event,
            oldest_pending,
        }
    }
}

/// A round's batch: committed rows not relayed yet, in id (commit) order.
pub(super) fn pending_sql(table: &str) -> String {
    format!(
        "SELECT id, topic, event, category, data FROM {table} \
         WHERE relayed_at IS NULL ORDER BY id LIMIT $1"
    )
}

pub(super) fn oldest_sql(table: &str) -> String {
    format!("SELECT created_at FROM {table} WHERE relayed_at IS NULL ORDER BY id LIMIT 1")
}

/// Bounded, so that a cleanup after a long outage does not hold the table for long.
pub(super) fn cleanup_sql(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE relayed_at IS NOT NULL AND relayed_at < $1 ORDER BY id LIMIT 10000)"
    )
}

pub(super) fn instance_sql(table: &str) -> String {
    format!("SELECT instance FROM {table}_meta LIMIT 1")
}

/// The statements of a schema script, one at a time (drivers run one statement per query).
pub(super) fn statements(script: &str) -> impl Iterator<Item = &str> {
    script.split(';').filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_is_oldest_first_and_bounded() {
        let sql = pending_sql("box");
        assert!(sql.starts_with("SELECT id, topic, event, category, data FROM box "));
        assert!(sql.contains("WHERE relayed_at IS NULL"));
        assert!(sql.ends_with("ORDER BY id LIMIT $1"));
    }

    #[test]
    fn cleanup_deletes_only_relayed_rows_older_than_the_bound() {
        let sql = cleanup_sql("box");
        assert!(sql.starts_with("DELETE FROM box WHERE id IN (SELECT id FROM box "));
        assert!(sql.contains("relayed_at IS NOT NULL AND relayed_at < $1"));
        assert!(sql.contains("LIMIT 10000"));
    }

    #[test]
    fn lag_and_instance_read_their_own_tables() {
        assert_eq!(
            oldest_sql("box"),
            "SELECT created_at FROM box WHERE relayed_at IS NULL ORDER BY id LIMIT 1"
        );
        assert_eq!(instance_sql("box"), "SELECT instance FROM box_meta LIMIT 1");
    }

    #[test]
    fn a_schema_script_splits_into_its_statements() {
        let parts: Vec<&str> = statements("CREATE a; ;\n CREATE b;\n").collect();
        assert_eq!(parts, ["CREATE a", "\n CREATE b"]);
    }
}

//! The PostgreSQL advisory locks of an outbox table: who takes which, and their keys.
//!
//! Every key names its table, so two outboxes in one database never wait for each other, and
//! names its purpose, so the locks of one table never collide. PostgreSQL hashes a key with
//! `hashtextextended(key, 0)`.
//!
//! The relay's and the schema's locks are taken only by the PostgreSQL backend; a build without
//! it still holds them here, next to the writers' (which `sqlx::Any` connections may need).
#![cfg_attr(not(feature = "outbox-postgres"), allow(dead_code))]

/// Taken while the schema is created: concurrent `CREATE … IF NOT EXISTS` can still collide on
/// PostgreSQL's catalogs, so one process at a time.
pub(super) fn schema_lock_key(table: &str) -> String {
    format!("livepush_schema:{table}")
}

/// Held by the relay for a round (tried, never waited for): one relay works at a time.
pub(super) fn relay_lock_key(table: &str) -> String {
    format!("livepush_relay:{table}")
}

/// Shared by the writers of `table`, taken exclusively by a cursor (see
/// [`OutboxCursor`](super::OutboxCursor)).
pub(super) fn cursor_lock_key(table: &str) -> String {
    format!("livepush_cursor:{table}")
}

/// Held by a writer of `topic` until its transaction ends: the rows of one topic commit in the
/// order they got their ids.
pub(super) fn topic_lock_key(table: &str, topic: &str) -> String {
    format!("{table}:{topic}")
}

/// The locks and NOTIFY of a PostgreSQL insert: `SELECT 1` so that no driver has to decode
/// `void`. (The planner keeps volatile calls of a subquery's unused outputs.) The table's shared
/// lock (`$3`, see [`cursor_lock_key`]) is taken first, in the inner subquery: a transaction
/// that holds a topic's lock then always holds the shared one too, so a cursor waiting for the
/// exclusive one never closes a cycle of waits.
pub(super) const PG_LOCK_AND_NOTIFY: &str =
    "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0)), pg_notify($2, '') \
     FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended($3, 0))) AS shared) AS locked";

/// [`Outbox::cursor`](super::Outbox::cursor) on PostgreSQL: the table's exclusive lock (it waits
/// for the transactions that hold the shared one, writing outbox rows, to end), and the
/// isolation level, which must let the statements after it see what those transactions
/// committed.
pub(super) const PG_CURSOR_LOCK: &str = "SELECT current_setting('transaction_isolation') FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked";

/// The relay's round lock, tried: `false` when another relay holds it.
pub(super) const PG_TRY_RELAY_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))";

/// The schema lock, waited for; `SELECT 1` so that no driver has to decode `void`.
pub(super) const PG_SCHEMA_LOCK: &str =
    "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locks_of_one_table_are_distinct() {
        let keys = [
            schema_lock_key("box"),
            relay_lock_key("box"),
            cursor_lock_key("box"),
            topic_lock_key("box", "comments"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn every_lock_names_its_table() {
        for key in [
            schema_lock_key("box"),
            relay_lock_key("box"),
            cursor_lock_key("box"),
            topic_lock_key("box", "t"),
        ] {
            assert!(key.contains("box"), "{key}");
        }
        assert_ne!(relay_lock_key("a"), relay_lock_key("b"));
        assert_ne!(cursor_lock_key("a"), cursor_lock_key("b"));
        assert_ne!(topic_lock_key("a", "t"), topic_lock_key("b", "t"));
    }

    #[test]
    fn a_topic_lock_cannot_pose_as_a_table_lock() {
        // Table names are identifiers (no ':'), so "livepush_relay:box" is never a topic key
        // of a table: its table part would have to be "livepush_relay", a relay key's prefix.
        assert_eq!(topic_lock_key("box", "comment:7"), "box:comment:7");
        assert_eq!(relay_lock_key("box"), "livepush_relay:box");
        assert_eq!(cursor_lock_key("box"), "livepush_cursor:box");
        assert_eq!(schema_lock_key("box"), "livepush_schema:box");
    }

    #[test]
    fn a_writer_takes_the_shared_lock_before_its_topic_lock() {
        // Inner subquery first: the shared lock of the table ($3), then the topic's ($1).
        let shared = PG_LOCK_AND_NOTIFY.find("pg_advisory_xact_lock_shared(hashtextextended($3");
        let topic = PG_LOCK_AND_NOTIFY.find("pg_advisory_xact_lock(hashtextextended($1");
        assert!(shared.is_some() && topic.is_some());
        assert!(PG_LOCK_AND_NOTIFY.contains("pg_notify($2, '')"));
        assert!(PG_CURSOR_LOCK.contains("pg_advisory_xact_lock(hashtextextended($1, 0))"));
        assert!(PG_TRY_RELAY_LOCK.contains("pg_try_advisory_xact_lock"));
    }
}

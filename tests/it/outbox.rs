//! The transactional outbox on real databases (SQLite and PostgreSQL), in-process: a rollback
//! publishes nothing, a commit publishes once, a relay that dies between publishing and
//! marking is taken over without a duplicate, and rows committed while the broker is down go
//! out in order once it is back: on the in-memory broker, Redis and NATS JetStream.
//!
//! PostgreSQL tests run on the server `LIVEPUSH_TEST_POSTGRES_URL` names (`scripts/test.sh` starts
//! one; see `tests/it/support/database.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livepush::outbox::Outbox;
use livepush::{Hub, HubBuilder, RouterExt};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::support;
use crate::support::{
    eventually, metric, NatsServer, Postgres, RedisServer, Sqlite, SseClient, TestServer,
};

/// A broker server the outbox relays into, which a test can kill and start again with its data.
trait BrokerServer {
    fn builder(&self) -> HubBuilder;
    fn kill(&mut self);
    fn restart(&mut self);
}

impl BrokerServer for RedisServer {
    fn builder(&self) -> HubBuilder {
        Hub::builder().redis(self.url())
    }
    fn kill(&mut self) {
        RedisServer::kill(self)
    }
    fn restart(&mut self) {
        RedisServer::restart(self)
    }
}

impl BrokerServer for NatsServer {
    fn builder(&self) -> HubBuilder {
        Hub::builder().nats(self.url())
    }
    fn kill(&mut self) {
        NatsServer::kill(self)
    }
    fn restart(&mut self) {
        NatsServer::restart(self, false)
    }
}

/// The app's own table, next to the outbox.
async fn app_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap();
    if url.starts_with("sqlite:") {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS notes (n BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// A hub served with `/events`, an outbox on `url` with its schema, and the app's pool.
struct Setup {
    hub: Hub,
    server: TestServer,
    outbox: Outbox,
    pool: AnyPool,
}

async fn setup(url: &str, hub: Hub) -> Setup {
    let pool = app_pool(url).await;
    let outbox = Outbox::connect(url).unwrap();
    outbox.ensure_schema().await.unwrap();
    let app = axum::Router::new()
        .route("/events", axum::routing::get(events))
        .livepush(&hub);
    Setup {
        server: TestServer::start(app).await,
        hub,
        outbox,
        pool,
    }
}

#[livepush::subscribe_to_events]
async fn events() {}

/// Writes note `n` and its event `note` on `notes` in one transaction and commits it.
async fn commit_note(s: &Setup, n: i64) {
    let mut tx = s.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (n) VALUES ($1)")
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    s.outbox
        .commit(tx, "notes", "note", &json!({ "n": n }))
        .await
        .unwrap();
}

/// The `n` of the next `note` event (resets and other events skipped).
async fn next_note(sub: &mut SseClient) -> (String, i64) {
    loop {
        let e = sub.next().await;
        if e.event == "note" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            return (e.id, v["n"].as_i64().unwrap());
        }
        assert_eq!(e.event, "livepush.reset", "unexpected event {e:?}");
    }
}

async fn rollback_publishes_nothing_and_commit_publishes_once(url: &str) {
    let s = setup(url, Hub::builder().build().unwrap()).await;
    let _relay = s.outbox.relay(&s.hub).start();
    let mut sub = SseClient::connect(&s.server.url("/events?topic=notes")).await;

    // Rolled back explicitly, and dropped without a commit: neither is ever published.
    let mut tx = s.pool.begin().await.unwrap();
    s.outbox
        .publish(&mut *tx, "notes", "note", &json!({ "n": -1 }))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    {
        let mut tx = s.pool.begin().await.unwrap();
        s.outbox
            .publish(&mut tx, "notes", "note", &json!({ "n": -2 }))
            .await
            .unwrap();
    }
    commit_note(&s, 1).await;
    assert_eq!(next_note(&mut sub).await.1, 1, "only the committed note");
    sub.assert_quiet(Duration::from_millis(700), "one commit, one event")
        .await;
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM livepush_outbox WHERE relayed_at IS NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
    assert_eq!(
        metric(&s.hub.metrics_text(), "livepush_outbox_relayed_total"),
        1.0
    );
}

#[tokio::test]
async fn sqlite_a_rolled_back_transaction_publishes_nothing_and_a_committed_one_exactly_once() {
    let db = Sqlite::create();
    rollback_publishes_nothing_and_commit_publishes_once(&db.url).await;
}

#[tokio::test]
async fn postgres_a_rolled_back_transaction_publishes_nothing_and_a_committed_one_exactly_once() {
    let db = Postgres::create().await;
    rollback_publishes_nothing_and_commit_publishes_once(&db.url).await;
}

async fn a_relay_dying_between_publish_and_mark_duplicates_nothing(url: &str) {
    let s = setup(url, Hub::builder().build().unwrap()).await;
    let mut sub = SseClient::connect(&s.server.url("/events?topic=notes")).await;
    for n in 0..10 {
        commit_note(&s, n).await;
    }
    // The first relay publishes rows up to the fifth and "dies" before marking any of them.
    let published = Arc::new(AtomicUsize::new(0));
    let seen = published.clone();
    let first = s
        .outbox
        .relay(&s.hub)
        .fault_after_publish(move |_| seen.fetch_add(1, Ordering::SeqCst) + 1 == 5)
        .start();
    eventually("the first relay died", || async { first.is_finished() }).await;
    assert_eq!(published.load(Ordering::SeqCst), 5);
    let unmarked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM livepush_outbox WHERE relayed_at IS NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(unmarked, 10, "the dead relay marked nothing");

    let _second = s.outbox.relay(&s.hub).start();
    let mut ids = HashSet::new();
    for n in 0..10 {
        let (id, got) = next_note(&mut sub).await;
        assert_eq!(got, n, "in commit order, each once");
        assert!(ids.insert(id), "a new id for every row");
    }
    sub.assert_quiet(
        Duration::from_millis(700),
        "the five rows published twice reached the subscriber once",
    )
    .await;
}

#[tokio::test]
async fn sqlite_a_relay_that_dies_between_publish_and_mark_is_taken_over_without_a_duplicate() {
    let db = Sqlite::create();
    a_relay_dying_between_publish_and_mark_duplicates_nothing(&db.url).await;
}

#[tokio::test]
async fn postgres_a_relay_that_dies_between_publish_and_mark_is_taken_over_without_a_duplicate() {
    let db = Postgres::create().await;
    a_relay_dying_between_publish_and_mark_duplicates_nothing(&db.url).await;
}

/// A relay that dies after publishing row 3 into `broker` and before marking it is taken over;
/// the broker's dedupe (`publish_once`) keeps the republished rows from reaching subscribers
/// twice.
async fn a_relay_dying_into_a_broker_duplicates_nothing(broker: &impl BrokerServer) {
    let db = Sqlite::create();
    let hub = broker.builder().build().unwrap();
    support::wait_until_ready(&hub).await;
    let s = setup(&db.url, hub).await;
    let mut sub = SseClient::connect(&s.server.url("/events?topic=notes")).await;
    for n in 0..6 {
        commit_note(&s, n).await;
    }
    let first = s
        .outbox
        .relay(&s.hub)
        .fault_after_publish(|row| row == 3)
        .start();
    eventually("the first relay died", || async { first.is_finished() }).await;
    let _second = s.outbox.relay(&s.hub).start();
    for n in 0..6 {
        assert_eq!(next_note(&mut sub).await.1, n);
    }
    sub.assert_quiet(
        Duration::from_millis(700),
        "the broker deduped the republished rows",
    )
    .await;
}

#[tokio::test]
async fn redis_a_relay_that_dies_between_publish_and_mark_is_taken_over_without_a_duplicate() {
    a_relay_dying_into_a_broker_duplicates_nothing(&RedisServer::start()).await;
}

#[tokio::test]
async fn nats_a_relay_that_dies_between_publish_and_mark_is_taken_over_without_a_duplicate() {
    a_relay_dying_into_a_broker_duplicates_nothing(&NatsServer::start()).await;
}

async fn rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back(
    url: &str,
    broker: &mut impl BrokerServer,
) {
    let hub = broker
        .builder()
        .replay(1000, Duration::from_secs(600))
        .build()
        .unwrap();
    support::wait_until_ready(&hub).await;
    let s = setup(url, hub).await;
    let _relay = s.outbox.relay(&s.hub).start();
    let mut sub = SseClient::connect(&s.server.url("/events?topic=notes")).await;
    commit_note(&s, 0).await;
    assert_eq!(next_note(&mut sub).await.1, 0);

    broker.kill();
    for n in 1..=50 {
        commit_note(&s, n).await;
    }
    eventually("the relay counts its failed rounds", || async {
        metric(&s.hub.metrics_text(), "livepush_outbox_errors_total") >= 1.0
    })
    .await;
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM livepush_outbox WHERE relayed_at IS NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(pending, 50, "nothing is marked while the broker is down");
    eventually("the lag grows while rows wait for the broker", || async {
        metric(&s.hub.metrics_text(), "livepush_outbox_lag_seconds") >= 0.5
    })
    .await;
    broker.restart();
    for n in 1..=50 {
        assert_eq!(next_note(&mut sub).await.1, n, "in order, once");
    }
    sub.assert_quiet(Duration::from_millis(700), "no duplicate after the outage")
        .await;
    eventually("no lag once every row went out", || async {
        metric(&s.hub.metrics_text(), "livepush_outbox_lag_seconds") == 0.0
    })
    .await;
}

#[tokio::test]
async fn relayed_rows_are_deleted_after_the_retention_and_kept_before() {
    // The relay logs each cleanup run (this test runs on one thread, so the capture sees it).
    const CLEANUP_RAN: &str = "outbox: cleanup ran";
    let (logs, _guard) = support::capture_logs("livepush=debug");
    let db = Sqlite::create();
    let s = setup(&db.url, Hub::builder().build().unwrap()).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM livepush_outbox")
            .fetch_one(&s.pool)
            .await
            .unwrap()
    };
    let mut sub = SseClient::connect(&s.server.url("/events?topic=notes")).await;
    {
        // default retention (1 h): relayed rows stay, even with frequent cleanups
        let relay = s
            .outbox
            .relay(&s.hub)
            .cleanup_every(Duration::from_millis(20))
            .start();
        for n in 1..=3 {
            commit_note(&s, n).await;
            assert_eq!(next_note(&mut sub).await.1, n);
        }
        // kept across several cleanups that ran after the last row was relayed
        let ran = || logs.text().matches(CLEANUP_RAN).count();
        let before = ran();
        eventually("three more cleanups ran", || async { ran() >= before + 3 }).await;
        assert_eq!(count().await, 3, "within the retention, rows are kept");
        relay.shutdown().await;
    }
    let _relay = s
        .outbox
        .relay(&s.hub)
        .retention(Duration::from_millis(100))
        .cleanup_every(Duration::from_millis(20))
        .start();
    commit_note(&s, 4).await;
    assert_eq!(next_note(&mut sub).await.1, 4);
    eventually("relayed rows past the retention are deleted", || async {
        count().await == 0
    })
    .await;
    sub.assert_quiet(
        Duration::from_millis(300),
        "deleting rows publishes nothing",
    )
    .await;
}

#[tokio::test]
async fn sqlite_rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back() {
    let db = Sqlite::create();
    let mut redis = RedisServer::start();
    rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back(&db.url, &mut redis)
        .await;
}

#[tokio::test]
async fn sqlite_rows_committed_while_nats_is_down_go_out_in_order_once_it_is_back() {
    let db = Sqlite::create();
    let mut nats = NatsServer::start();
    rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back(&db.url, &mut nats)
        .await;
}

#[tokio::test]
async fn postgres_rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back() {
    let db = Postgres::create().await;
    let mut redis = RedisServer::start();
    rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back(&db.url, &mut redis)
        .await;
}

#[tokio::test]
async fn postgres_rows_committed_while_nats_is_down_go_out_in_order_once_it_is_back() {
    let db = Postgres::create().await;
    let mut nats = NatsServer::start();
    rows_committed_while_the_broker_is_down_go_out_in_order_once_it_is_back(&db.url, &mut nats)
        .await;
}

#[tokio::test]
async fn an_invalid_event_is_refused_before_anything_is_written() {
    let db = Sqlite::create();
    let s = setup(&db.url, Hub::builder().build().unwrap()).await;
    let mut tx = s.pool.begin().await.unwrap();
    let refused = s
        .outbox
        .publish(&mut *tx, "bad topic", "note", &json!({}))
        .await;
    assert!(
        matches!(refused, Err(livepush::outbox::OutboxError::Invalid(_))),
        "{refused:?}"
    );
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM livepush_outbox")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

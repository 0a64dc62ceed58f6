//! `Livepush-Cursor` on `GET /comments`: subscribing with it as `Last-Event-ID` yields exactly
//! the events published after the list was read (replay on), or a reset (replay off, behind).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Event;
use tokio::sync::watch;

use livepush::outbox::{Outbox, OutboxError, RelayHandle};
use livepush::sse::RESET;
use livepush::Hub;
use serde_json::{json, Value};

use crate::app;
use crate::support::{http, Example, Postgres, RedisServer, Sqlite, SseClient, TestServer};

/// crm_comments on a database of its own (a SQLite file, or PostgreSQL) with its outbox relay,
/// and a watcher stream that tells when the relay has published a comment.
struct Crm {
    server: TestServer,
    watcher: SseClient,
    _relay: RelayHandle,
    _database: Database,
}

/// The database a test's crm_comments keeps its comments in, dropped with it.
enum Database {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl Database {
    fn url(&self) -> &str {
        match self {
            Database::Sqlite(file) => &file.url,
            Database::Postgres(pg) => &pg.url,
        }
    }
}

impl std::ops::Deref for Crm {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

async fn start(hub: &Hub) -> Crm {
    start_on(hub, Database::Sqlite(Sqlite::create())).await
}

async fn start_on(hub: &Hub, database: Database) -> Crm {
    let db = app::Db::open(database.url()).await.unwrap();
    let relay = db.outbox().relay(hub).start();
    let server = TestServer::start(app::router(hub, db)).await;
    let watcher = SseClient::connect(&server.url("/events?topic=comments")).await;
    Crm {
        server,
        watcher,
        _relay: relay,
        _database: database,
    }
}

/// Posts a comment and waits until the relay has published it (the watcher saw it), so the
/// stream's position is past it.
async fn post(crm: &mut Crm, text: &str) -> Value {
    let response = http()
        .post(crm.server.url("/comments"))
        .json(&json!({ "author": "a", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    loop {
        let event = crm.watcher.next().await;
        if serde_json::from_str::<Value>(&event.data).is_ok_and(|d| d["text"] == text) {
            break;
        }
    }
    response.json().await.unwrap()
}

/// The list and its cursor.
async fn list(server: &TestServer) -> (Vec<Value>, String) {
    list_at(&server.url("")).await
}

/// The list and its cursor, from the server at `base`.
async fn list_at(base: &str) -> (Vec<Value>, String) {
    let response = http().get(format!("{base}/comments")).send().await.unwrap();
    let cursor = response
        .headers()
        .get("livepush-cursor")
        .expect("GET /comments carries Livepush-Cursor")
        .to_str()
        .unwrap()
        .to_owned();
    (response.json().await.unwrap(), cursor)
}

#[tokio::test]
async fn subscribing_from_the_cursor_yields_what_came_after_the_list_and_nothing_before() {
    let hub = Hub::builder()
        .replay(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut server = start(&hub).await;
    post(&mut server, "before").await;
    let (comments, cursor) = list(&server).await;
    assert_eq!(comments.len(), 1);
    // Published after the list was read, before the subscription: the page's race.
    post(&mut server, "in between").await;
    let url = server.url("/events?topic=comments");
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    let event = sse.next().await;
    assert_eq!(event.event, "comment_created");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "in between"
    );
    post(&mut server, "live").await;
    let event = sse.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "live"
    );
}

#[tokio::test]
async fn without_replay_a_cursor_behind_the_stream_gets_a_reset_to_resume_from() {
    let hub = Hub::builder().build().unwrap();
    let mut server = start(&hub).await;
    let (_, cursor) = list(&server).await;
    post(&mut server, "in between").await;
    let url = server.url("/events?topic=comments");
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    let reset = sse.next().await;
    assert_eq!(reset.event, RESET.as_str());
    assert!(reset.id.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
    post(&mut server, "live").await;
    let event = sse.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "live"
    );

    // A cursor nothing was published after needs no reset.
    let (_, cursor) = list(&server).await;
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    post(&mut server, "next").await;
    let event = sse.next().await;
    assert_eq!(event.event, "comment_created");
}

/// One page's view: the list it loaded, the cursor that came with it, and every event its
/// subscription from that cursor received (collected in the background).
struct View {
    list: Vec<Value>,
    cursor: u64,
    events: Arc<Mutex<Vec<Event>>>,
    collector: tokio::task::JoinHandle<()>,
}

/// Loads `GET /comments` and subscribes from its cursor, as the page does.
async fn load_and_subscribe(base: &str, stop: &watch::Receiver<bool>) -> View {
    let (list, cursor) = list_at(base).await;
    let url = format!("{base}/events?topic=comments");
    let mut sse = SseClient::connect_with(&url, &[("last-event-id", &cursor)]).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut stop = stop.clone();
    let collector = tokio::spawn(async move {
        while !*stop.borrow() {
            tokio::select! {
                event = sse.next_within(Duration::from_millis(100)) => {
                    if let Some(event) = event {
                        sink.lock().unwrap().push(event);
                    }
                }
                _ = stop.changed() => {}
            }
        }
    });
    View {
        list,
        cursor: cursor.parse().expect("the cursor is an event id"),
        events,
        collector,
    }
}

/// The comments of the database, by id, read with a connection of the test's own.
async fn comments_in(url: &str) -> BTreeMap<u64, Value> {
    // Not left to another test of the process: under nextest each test is a process of its own.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows: Vec<(i64, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, author, text, created_at, updated_at FROM comments ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, author, text, created_at, updated_at)| {
            let comment = app::Comment {
                id: id as u64,
                author,
                text,
                created_at,
                updated_at,
            };
            (id as u64, serde_json::to_value(comment).unwrap())
        })
        .collect()
}

/// `writers` tasks post 100 comments in all (to the servers of `writes` in turn) while a page
/// loads the list from `pages` and subscribes there from its cursor, again and again; then every
/// page's list plus the events it applied must be the database at `db`, with no event of a
/// comment its list already held and none missing.
async fn every_page_ends_with_the_database_and_no_duplicate(
    pages: &str,
    writes: &[String],
    db: &str,
    writers: usize,
) {
    const COMMENTS: usize = 100;
    let writing: Vec<_> = (0..writers)
        .map(|w| {
            let base = format!("{}/comments", writes[w % writes.len()]);
            tokio::spawn(async move {
                let client = http();
                for n in (w..COMMENTS).step_by(writers) {
                    let response = client
                        .post(&base)
                        .json(&json!({ "author": format!("writer {w}"), "text": format!("comment {n}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    let (stop, stopped) = watch::channel(false);
    let mut views = Vec::new();
    while !writing.iter().all(|w| w.is_finished()) && views.len() < 60 {
        views.push(load_and_subscribe(pages, &stopped).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for writer in writing {
        writer.await.unwrap();
    }
    // And one page that loads after the last write.
    views.push(load_and_subscribe(pages, &stopped).await);
    let database = comments_in(db).await;
    assert_eq!(database.len(), COMMENTS);
    let midway = views
        .iter()
        .filter(|v| !v.list.is_empty() && v.list.len() < COMMENTS)
        .count();
    assert!(
        midway >= 3,
        "only {midway} pages loaded while comments were being written: the race was not run"
    );

    // Every page's subscription catches up (the relay has published everything by then) …
    for (n, view) in views.iter().enumerate() {
        let complete = || {
            let mut seen: BTreeSet<u64> = view.list.iter().map(comment_id).collect();
            for event in view.events.lock().unwrap().iter() {
                if event.event == "comment_created" {
                    seen.insert(comment_id(&serde_json::from_str(&event.data).unwrap()));
                }
            }
            seen.len() >= COMMENTS
        };
        let deadline = tokio::time::Instant::now() + crate::support::WAIT;
        while !complete() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(complete(), "page {n} never received every comment");
    }
    // … and whatever else was on its way has arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();

    let mut duplicates = Vec::new();
    for (n, view) in views.into_iter().enumerate() {
        view.collector.await.unwrap();
        let mut page: BTreeMap<u64, Value> = view
            .list
            .iter()
            .map(|c| (comment_id(c), c.clone()))
            .collect();
        for event in view.events.lock().unwrap().iter() {
            assert_eq!(
                event.event, "comment_created",
                "page {n}: unexpected {event:?}"
            );
            let id: u64 = event.id.parse().unwrap();
            assert!(
                id > view.cursor,
                "page {n}: event {id} is not after its cursor {}",
                view.cursor
            );
            let comment: Value = serde_json::from_str(&event.data).unwrap();
            if page.insert(comment_id(&comment), comment.clone()).is_some() {
                duplicates.push(format!(
                    "page {n} (list of {}, cursor {}): event {id} for comment {} it already held",
                    view.list.len(),
                    view.cursor,
                    comment["id"]
                ));
            }
        }
        assert_eq!(
            page, database,
            "page {n}: list + events is not the database"
        );
    }
    assert!(
        duplicates.is_empty(),
        "duplicates:\n{}",
        duplicates.join("\n")
    );
}

fn comment_id(comment: &Value) -> u64 {
    comment["id"].as_u64().expect("a comment has a numeric id")
}

/// crm_comments in-process on `database`, its hub replaying 10,000 events (in memory).
async fn race_in_process(database: Database, writers: usize) {
    let hub = Hub::builder()
        .replay(10_000, Duration::from_secs(300))
        .build()
        .unwrap();
    let db = database.url().to_owned();
    let crm = start_on(&hub, database).await;
    let base = crm.server.url("");
    every_page_ends_with_the_database_and_no_duplicate(
        &base,
        std::slice::from_ref(&base),
        &db,
        writers,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_loading_while_a_writer_posts_end_with_the_database_and_no_duplicate_on_sqlite() {
    race_in_process(Database::Sqlite(Sqlite::create()), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_loading_while_writers_commit_out_of_order_end_with_the_database_and_no_duplicate_on_postgres(
) {
    let pg = Postgres::create().await;
    race_in_process(Database::Postgres(pg), 4).await;
}

/// Two crm_comments processes on one PostgreSQL and one Redis: A (`LIVEPUSH_OUTBOX_RELAY=off`)
/// serves the pages, both take the writes, and B's relay publishes everything, so A's cursors
/// wait for a relay of another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_an_instance_without_a_relay_end_with_the_database_and_no_duplicate_over_redis() {
    let pg = Postgres::create().await;
    let redis = RedisServer::start();
    let instance = |relay: &str| {
        Example::start(
            "crm_comments",
            &[
                ("DATABASE_URL", pg.url.as_str()),
                ("REDIS_URL", redis.url().as_str()),
                ("LIVEPUSH_OUTBOX_RELAY", relay),
                ("LIVEPUSH_REPLAY", "10000"),
                ("LIVEPUSH_REPLAY_TTL_SECS", "300"),
            ],
        )
    };
    let a = instance("off");
    let b = instance("on");
    a.wait_ready().await;
    b.wait_ready().await;
    let writes = [a.url(""), b.url("")];
    every_page_ends_with_the_database_and_no_duplicate(&a.url(""), &writes, &pg.url, 4).await;
}

/// An outbox of its own on `url` (no relay yet), and a pool of the app's.
async fn bare_outbox(url: &str) -> (Outbox, sqlx::AnyPool) {
    sqlx::any::install_default_drivers();
    let outbox = Outbox::connect(url).unwrap();
    outbox.ensure_schema().await.unwrap();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap();
    (outbox, pool)
}

async fn commit_row(outbox: &Outbox, pool: &sqlx::AnyPool, n: i64) {
    let tx = pool.begin().await.unwrap();
    outbox
        .commit(tx, "notes", "note", &json!({ "n": n }))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_relay_the_cursor_waits_its_bound_then_falls_back_to_the_position_and_then_resolves_to_the_rows_event(
) {
    // Which way `resolve` ended is told by its warnings (this test runs on one thread, so the
    // capture sees them): waited out its bound, or gave up at once on a row already stale.
    const WAITED_OUT: &str = "did not publish the list's rows within the cursor wait";
    const STALE: &str = "outbox rows older than the cursor wait are not relayed yet";
    let (logs, _guard) = crate::support::capture_logs("livepush=warn");
    let count = |what: &str| logs.text().matches(what).count();
    let file = Sqlite::create();
    let (outbox, pool) = bare_outbox(&file.url).await;
    // 2 s: a fresh row must not turn stale while a loaded machine stalls between two reads
    let outbox = outbox.cursor_wait(Duration::from_secs(2));
    let hub = Hub::builder().build().unwrap();
    let before = hub.position().await.unwrap();
    commit_row(&outbox, &pool, 1).await;

    // Committed, not relayed: the cursor waits for the relay, up to its bound, then falls back
    // to the position read with the list (which may repeat the row's event, never lose one).
    let mut tx = pool.begin().await.unwrap();
    let cursor = outbox.cursor(&hub, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(cursor.resolve().await.id(), Some(before));
    assert_eq!(
        (count(WAITED_OUT), count(STALE)),
        (1, 0),
        "a fresh row is waited for, up to the bound:\n{}",
        logs.text()
    );

    // The row is older than the bound now: a relay that is down does not make every list wait.
    let mut tx = pool.begin().await.unwrap();
    let cursor = outbox.cursor(&hub, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(cursor.resolve().await.id(), Some(before));
    assert_eq!(
        (count(WAITED_OUT), count(STALE)),
        (1, 1),
        "a row older than the bound is not waited for again:\n{}",
        logs.text()
    );

    // Once a relay published it, the cursor is the event the row got …
    let relay = outbox.relay(&hub).start();
    crate::support::eventually("the relay publishes the row", || async {
        hub.position().await.unwrap() > before
    })
    .await;
    let mut tx = pool.begin().await.unwrap();
    let cursor = outbox.cursor(&hub, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let id = cursor.resolve().await.id().unwrap();
    assert!(id > before);
    assert_eq!(id, hub.position().await.unwrap());

    // … and so for a row committed just before the list (waited for if not relayed yet).
    commit_row(&outbox, &pool, 2).await;
    let mut tx = pool.begin().await.unwrap();
    let cursor = outbox.cursor(&hub, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let next = cursor.resolve().await.id().unwrap();
    assert!(next > id);
    assert_eq!(next, hub.position().await.unwrap());
    relay.shutdown().await;
}

#[tokio::test]
async fn postgres_writers_wait_while_a_list_transaction_holds_the_cursor() {
    let pg = Postgres::create().await;
    let (outbox, pool) = bare_outbox(&pg.url).await;
    let hub = Hub::builder().build().unwrap();
    let mut list = pool.begin().await.unwrap();
    let cursor = outbox.cursor(&hub, &mut list).await.unwrap();
    let writer = tokio::spawn({
        let (outbox, pool) = (outbox.clone(), pool.clone());
        async move { commit_row(&outbox, &pool, 1).await }
    });
    // The writer is blocked once PostgreSQL shows one of this database's sessions waiting for
    // a lock: from then on only the list's commit can let it go on.
    crate::support::eventually("the writer waits for a lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting == 1 || writer.is_finished()
    })
    .await;
    assert!(
        !writer.is_finished(),
        "a writer committed an outbox row while a list transaction held the cursor"
    );
    list.commit().await.unwrap();
    tokio::time::timeout(crate::support::WAIT, writer)
        .await
        .expect("the writer goes on once the list's transaction ended")
        .unwrap();
    drop(cursor);

    // The cursor's boundary needs READ COMMITTED: a REPEATABLE READ snapshot predates the lock.
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let refused = outbox.cursor(&hub, &mut tx).await.unwrap_err();
    assert!(
        matches!(refused, OutboxError::Isolation { ref level } if level == "repeatable read"),
        "{refused}"
    );
}

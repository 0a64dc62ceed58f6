//! Commit-to-delivery latency through the outbox vs a direct publish, and relay throughput
//! (BENCHMARKS.md, "Outbox").
//!
//! One process: a hub (in-memory broker, or Redis with `REDIS_URL`) served on loopback, one SSE
//! subscriber reading the stream over TCP, and a writer that commits transactions at a fixed
//! rate. Latency runs from the moment `commit` returned to the moment the subscriber read the
//! event's `data:` line.
//!
//! ```sh
//! cargo run --release --bin outbox_latency -- MODE RATE SECONDS
//! #   MODE: direct-sqlite | outbox-sqlite | outbox-sqlite-poll | direct-postgres | outbox-postgres
//! #   RATE: commits per second; SECONDS: how long
//! cargo run --release --bin outbox_latency -- throughput-sqlite ROWS
//! cargo run --release --bin outbox_latency -- throughput-postgres ROWS
//! ```
//!
//! `*-postgres` use `BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! create and drop a database of their own. `outbox-sqlite` wakes the relay in-process
//! (`Outbox::commit`); `outbox-sqlite-poll` commits without waking it, as another process's
//! commit would be found (the 50 ms poll). Prints one line of JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livepush::outbox::Outbox;
use livepush::{subscribe_to_events, Hub, RouterExt};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[subscribe_to_events]
async fn events() {}

/// When each `n` was committed, and when it was read by the subscriber.
type Times = Arc<Mutex<HashMap<u64, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("outbox-sqlite");
    if let Some(db) = mode.strip_prefix("throughput-") {
        let rows: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
        let (url, _guard) = database(db).await;
        throughput(&url, rows).await;
        return;
    }
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let db = if mode.ends_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let (url, _guard) = database(db).await;
    latency(mode, &url, rate, secs).await;
}

/// A fresh database: a SQLite file in the temp dir, or a PostgreSQL database dropped at the end.
async fn database(kind: &str) -> (String, Option<DropDb>) {
    let tag = format!("outbox_bench_{}", std::process::id());
    if kind == "postgres" {
        let server = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {tag}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = server.rsplit_once('/').unwrap().0;
        (
            format!("{base}/{tag}"),
            Some(DropDb::Postgres { server, name: tag }),
        )
    } else {
        let path = std::env::temp_dir().join(format!("{tag}.db"));
        remove_sqlite(&path);
        (
            format!("sqlite://{}?mode=rwc", path.display()),
            Some(DropDb::Sqlite(path)),
        )
    }
}

fn remove_sqlite(path: &std::path::Path) {
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
}

/// Removes the run's database when the run ends.
enum DropDb {
    Postgres { server: String, name: String },
    Sqlite(std::path::PathBuf),
}

impl Drop for DropDb {
    fn drop(&mut self) {
        let (server, name) = match self {
            DropDb::Sqlite(path) => return remove_sqlite(path),
            DropDb::Postgres { server, name } => (server, name),
        };
        let (server, name) = (server.clone(), name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            })
        })
        .join();
    }
}

fn hub() -> Hub {
    let mut builder = Hub::builder();
    if let Ok(url) = std::env::var("REDIS_URL") {
        builder = builder.redis(url);
    }
    builder.build().unwrap()
}

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
    sqlx::query("CREATE TABLE IF NOT EXISTS bench (n BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// Serves the hub on loopback and reads `topic=bench` over TCP; records each `n`'s arrival.
async fn subscriber(hub: &Hub, arrived: Times) {
    let app = axum::Router::new()
        .route("/events", axum::routing::get(events))
        .livepush(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { livepush::serve(listener, app).await.unwrap() });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(b"GET /events?topic=bench HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    // headers, then the `retry:` line: subscribed from here on
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("retry:") {
            break;
        }
    }
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let at = Instant::now();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            if let Some(n) = v["n"].as_u64() {
                arrived.lock().unwrap().entry(n).or_insert(at);
            }
        }
    });
}

/// One transaction: a row of the app and its event, by `mode`; returns when `commit` returned.
async fn write(mode: &str, pool: &AnyPool, outbox: &Outbox, hub: &Hub, n: u64) -> Instant {
    let value = serde_json::json!({ "n": n });
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO bench (n) VALUES ($1)")
        .bind(n as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    if mode.starts_with("direct") {
        // what #[publish_event] does: commit, then publish
        tx.commit().await.unwrap();
        let committed = Instant::now();
        let _ = hub.publish("bench", "tick", &value).await;
        committed
    } else if mode == "outbox-sqlite-poll" {
        outbox
            .publish(&mut *tx, "bench", "tick", &value)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Instant::now()
    } else {
        outbox.commit(tx, "bench", "tick", &value).await.unwrap();
        Instant::now()
    }
}

async fn latency(mode: &str, url: &str, rate: u64, secs: u64) {
    let hub = hub();
    let pool = app_pool(url).await;
    let outbox = Outbox::connect(url).unwrap();
    outbox.ensure_schema().await.unwrap();
    let _relay = mode
        .starts_with("outbox")
        .then(|| outbox.relay(&hub).start());
    let committed: Times = Arc::default();
    let arrived: Times = Arc::default();
    subscriber(&hub, arrived.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let total = rate * secs;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let (pool, outbox, hub, committed, mode) = (
            pool.clone(),
            outbox.clone(),
            hub.clone(),
            committed.clone(),
            mode.to_owned(),
        );
        writers.spawn(async move {
            let at = write(&mode, &pool, &outbox, &hub, n).await;
            committed.lock().unwrap().insert(n, at);
        });
    }
    while writers.join_next().await.is_some() {}
    let wrote = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrived.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let committed = committed.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    let mut lat: Vec<f64> = committed
        .iter()
        .filter_map(|(n, t0)| arrived.get(n).map(|t1| t1.saturating_duration_since(*t0)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": mode, "broker": hub.broker_kind(), "rate": rate, "commits": total,
            "achieved_rate": (total as f64 / wrote.as_secs_f64()).round(),
            "delivered": lat.len(),
            "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "max_ms": (lat.last().copied().unwrap_or(f64::NAN) * 100.0).round() / 100.0,
        })
    );
}

/// Rows committed with no relay running, then one relay started: rows per second until the
/// subscriber has them all.
async fn throughput(url: &str, rows: u64) {
    let hub = hub();
    let pool = app_pool(url).await;
    let outbox = Outbox::connect(url).unwrap();
    outbox.ensure_schema().await.unwrap();
    let arrived: Times = Arc::default();
    subscriber(&hub, arrived.clone()).await;
    let mut tx = pool.begin().await.unwrap();
    for n in 0..rows {
        outbox
            .publish(&mut *tx, "bench", "tick", &serde_json::json!({ "n": n }))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let started = Instant::now();
    let _relay = outbox.relay(&hub).start();
    let deadline = started + Duration::from_secs(120);
    while arrived.lock().unwrap().len() < rows as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let got = arrived.lock().unwrap().len();
    println!(
        "{}",
        serde_json::json!({
            "mode": "throughput", "database": url.split(':').next(), "broker": hub.broker_kind(),
            "rows": rows, "delivered": got, "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
            "rows_per_s": (got as f64 / took.as_secs_f64()).round(),
        })
    );
}

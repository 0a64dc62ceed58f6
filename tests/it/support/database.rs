//! Real databases for the outbox tests: a fresh PostgreSQL database per test on the server at
//! 127.0.0.1:5432 (dropped afterwards), and a SQLite file per test (removed afterwards).
//!
//! PostgreSQL must answer: with no server, a test fails with what to do, unless
//! `LIVEPUSH_SKIP_POSTGRES=1`, which turns every PostgreSQL test into a loud skip. The server
//! is `LIVEPUSH_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`, trust
//! auth); each test creates `livepush_test_<random>` there and drops it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

/// A name no other test of this run (or an earlier one) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn server_url() -> String {
    std::env::var("LIVEPUSH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL database of its own, dropped (with `FORCE`) when the guard goes.
pub struct Postgres {
    pub name: String,
    pub url: String,
}

impl Postgres {
    /// Creates the database; `None` (after saying so on stderr) only with
    /// `LIVEPUSH_SKIP_POSTGRES=1` and no server. Use as
    /// `let Some(pg) = Postgres::create().await else { return };`.
    pub async fn create() -> Option<Postgres> {
        let server = server_url();
        let mut admin = match sqlx::PgConnection::connect(&server).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("LIVEPUSH_SKIP_POSTGRES").as_deref() == Ok("1") => {
                eprintln!(
                    "SKIPPED: no PostgreSQL at {server} ({e}) and LIVEPUSH_SKIP_POSTGRES=1: \
                     this test did not run"
                );
                return None;
            }
            Err(e) => panic!(
                "no PostgreSQL answers at {server} ({e}). The outbox tests need a real server: \
                 install one (Debian: `apt-get install postgresql`, then allow trust auth for \
                 127.0.0.1) or point LIVEPUSH_TEST_POSTGRES_URL at one; or set \
                 LIVEPUSH_SKIP_POSTGRES=1 to skip the PostgreSQL tests (the SQLite ones still run)"
            ),
        };
        let name = unique("livepush_test");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Postgres { name, url })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async code (or in a runtime that is shutting down): a thread of its
        // own with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A SQLite database file of its own under the test target directory, removed when dropped.
pub struct Sqlite {
    pub path: std::path::PathBuf,
    pub url: String,
}

impl Sqlite {
    pub fn create() -> Sqlite {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite");
        std::fs::create_dir_all(&dir).expect("create the SQLite test directory");
        let path = dir.join(format!("{}.db", unique("livepush_test")));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Sqlite { path, url }
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

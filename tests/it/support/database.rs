//! Real databases for the outbox tests: a fresh PostgreSQL database per test (dropped
//! afterwards) on the server `LIVEPUSH_TEST_POSTGRES_URL` names, and a SQLite file per test
//! (removed afterwards).
//!
//! `scripts/test.sh` starts a PostgreSQL of its own in a temporary directory and sets
//! `LIVEPUSH_TEST_POSTGRES_URL` to it (unless the variable already names one). Without the
//! variable a PostgreSQL test fails and says so: it never falls back to a server the machine
//! happens to run (such as one on 5432, which other work uses). The URL's database must exist:
//! each test connects to it to create `livepush_test_<random>` next to it and drops that at the
//! end. A PostgreSQL test never skips: with no server, no such database,
//! or a user that may not create databases it fails and says which.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Url;
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

/// The server's URL (its database is where each test creates its own).
fn server_url() -> Url {
    let raw = std::env::var("LIVEPUSH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "LIVEPUSH_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh (it \
             starts a PostgreSQL of its own and sets it), or point it at a PostgreSQL kept for \
             tests (postgres://USER@HOST:PORT/DATABASE, a user that may create databases)"
        )
    });
    let url = Url::parse(&raw)
        .unwrap_or_else(|e| panic!("LIVEPUSH_TEST_POSTGRES_URL={raw:?} is not a URL: {e}"));
    assert!(
        url.host_str().is_some_and(|h| !h.is_empty()),
        "LIVEPUSH_TEST_POSTGRES_URL={raw:?} names no host (the tests connect over TCP)"
    );
    url
}

/// `host:port` of the server, for messages (never the password).
fn where_(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port().unwrap_or(5432)
    )
}

/// What went wrong connecting to `url`, and what to do about it.
fn explain(url: &Url, error: &sqlx::Error) -> String {
    let at = where_(url);
    let user = url.username();
    let database = url.path().trim_start_matches('/');
    let code = match error {
        sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    };
    let fix = match (error, code.as_deref()) {
        (sqlx::Error::Io(_) | sqlx::Error::Tls(_), _) => format!(
            "no PostgreSQL answers at {at}. Run the tests through scripts/test.sh (it starts a \
             PostgreSQL of its own) or point LIVEPUSH_TEST_POSTGRES_URL at a running server"
        ),
        (_, Some("3D000")) => format!(
            "PostgreSQL at {at} answers but has no database {database:?}: create it \
             (`createdb -h {host} -p {port} -U {user} {database}`) or name an existing database \
             in LIVEPUSH_TEST_POSTGRES_URL (each test creates a database of its own next to it)",
            host = url.host_str().unwrap_or_default(),
            port = url.port().unwrap_or(5432),
        ),
        (_, Some(c)) if c.starts_with("28") => format!(
            "PostgreSQL at {at} refused user {user:?}: the tests need a user that may log in \
             (trust auth, or a password in LIVEPUSH_TEST_POSTGRES_URL) and create databases"
        ),
        _ => format!("cannot use PostgreSQL at {at} (user {user:?}, database {database:?})"),
    };
    format!("{fix}. The error: {error}")
}

/// A PostgreSQL database of its own, dropped (with `FORCE`) when the guard goes.
pub struct Postgres {
    pub name: String,
    pub url: String,
}

impl Postgres {
    /// Creates the database, or panics saying why it cannot: a PostgreSQL test either runs or
    /// fails.
    pub async fn create() -> Postgres {
        let server = server_url();
        let mut admin = sqlx::PgConnection::connect(server.as_str())
            .await
            .unwrap_or_else(|e| panic!("{}", explain(&server, &e)));
        let name = unique("livepush_test");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CREATE DATABASE {name} on {} (as user {:?}, who must be allowed to create \
                     databases): {e}",
                    where_(&server),
                    server.username()
                )
            });
        let mut url = server;
        url.set_path(&format!("/{name}"));
        Postgres {
            name,
            url: url.into(),
        }
    }

    /// The server's port, for a [`crate::support::TcpProxy`] (which forwards to 127.0.0.1) in
    /// front of it; panics if the URL names a server the proxy cannot reach.
    pub fn loopback_port(&self) -> u16 {
        let server = server_url();
        let host = server.host_str().unwrap_or_default();
        assert!(
            matches!(host, "127.0.0.1" | "localhost"),
            "this test puts a TCP proxy (to 127.0.0.1) in front of PostgreSQL, but \
             LIVEPUSH_TEST_POSTGRES_URL names host {host:?}: use a server on 127.0.0.1"
        );
        server.port().unwrap_or(5432)
    }

    /// This database's URL (same user, password and parameters) through `127.0.0.1:<port>`.
    pub fn url_through(&self, port: u16) -> String {
        let mut url = Url::parse(&self.url).expect("a URL made by create()");
        url.set_host(Some("127.0.0.1")).expect("a URL with a host");
        url.set_port(Some(port)).expect("a URL with a host");
        url.into()
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
                if let Ok(mut admin) = sqlx::PgConnection::connect(server_url().as_str()).await {
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

//! A private `redis-server` on a free loopback port that a test can kill, pause and restart,
//! start with extra arguments (a password, `--replicaof`), and administer even when the
//! password it was started with was changed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, WAIT};

/// The ACL user every test server has besides `default`: it keeps working whatever
/// `requirepass` (the `default` user's password) is set to, so a test can rotate the password
/// the app uses and still administer the server.
pub const ADMIN_USER: &str = "livepush-admin";
const ADMIN_PASSWORD: &str = "admin-pw-5f1c";

/// A private `redis-server` on a free loopback port, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Extra arguments, given again on every restart.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port. Panics with install instructions if the binary is
    /// missing: the tests need the real server, never a mock.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts `redis-server` on a free port with `args` after the usual ones, e.g.
    /// `&["--requirepass", "secret"]`; a [`RedisServer::restart`] uses them again.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    /// A replica of the server on `master_port` (`--replicaof 127.0.0.1 <master_port>`), with
    /// `args` after that.
    pub fn start_replica_of(master_port: u16, args: &[&str]) -> RedisServer {
        let port = master_port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", &port];
        all.extend_from_slice(args);
        Self::start_with(&all)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The URL with `password` for the `default` user: `redis://:<password>@127.0.0.1:<port>/`.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}/", self.port)
    }

    /// The URL of the admin user ([`ADMIN_USER`]), which no `requirepass` change affects.
    pub fn admin_url(&self) -> String {
        format!(
            "redis://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/",
            self.port
        )
    }

    fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let admin_password = format!(">{ADMIN_PASSWORD}");
        let child = Command::new(&bin)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                // `DEBUG SLEEP` and friends, from loopback only (Redis 7 refuses them by default)
                "--enable-debug-command",
                "local",
                "--user",
                ADMIN_USER,
                "on",
                &admin_password,
                "~*",
                "&*",
                "+@all",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}). The Redis tests need a real redis-server: \
                     install it with `sudo apt-get install redis-server` (Debian/Ubuntu) or \
                     `brew install redis` (macOS), or set REDIS_SERVER_BIN; `scripts/test.sh` does this for you"
                )
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "redis-server {:?} exited with {status} before listening on port {}",
                    self.args, self.port
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered until
    /// [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk), with the
    /// arguments it was first started with.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `redis-cli`-like commands through a fresh connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// Runs one command as the admin user on a fresh connection, e.g.
    /// `admin_command(&["CONFIG", "SET", "requirepass", "p2"])`; panics if Redis refuses it.
    pub async fn admin_command(&self, args: &[&str]) -> redis::Value {
        self.try_admin_command(args)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?} as admin: {e}"))
    }

    /// [`RedisServer::admin_command`] that returns Redis's answer, an error included.
    pub async fn try_admin_command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut conn = admin_connection(&self.admin_url()).await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }
}

/// A connection whose commands may take long (`DEBUG SLEEP 3` answers after 3 s; the client's
/// default is to give up after 0.5 s).
async fn admin_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(WAIT));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

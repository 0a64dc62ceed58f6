//! A private `redis-server` on a free loopback port that a test can kill, pause and restart,
//! start with extra arguments (a password, `--replicaof`), and administer even when the
//! password it was started with was changed.
//!
//! `redis-server` cannot listen on port 0 and report the port, so its port is chosen by the
//! kernel for a socket of the test's ([`PortHold`]), held until just before the server is
//! spawned, and the spawn is tried again on a fresh port when another process took that one in
//! between ([`spawn_listening`]); a server counts as started only once the process answering
//! on the port says it is the one spawned. While a killed server is down its port stays held,
//! so its restart gets the same port back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::WAIT;

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
    /// The port, held while the server is down (after [`RedisServer::kill`]).
    held: Option<PortHold>,
    /// Where the server logs (read when it fails to start), removed when dropped.
    log: PathBuf,
}

/// How many times a server is spawned on fresh ports before a test gives up.
const SPAWN_TRIES: usize = 5;

/// A loopback port held for a server the test is about to start: a socket bound to it without
/// `SO_REUSEADDR` and not listening, so no other socket can bind the port (nor the kernel hand
/// it out again) while a connection to it is refused, as to a port nobody serves. Dropped just
/// before the server binds it.
pub struct PortHold {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl PortHold {
    /// A port the kernel chooses.
    pub fn any() -> PortHold {
        PortHold::of(0).expect("hold a free loopback port")
    }

    /// `port` itself; an error if a socket holds it (a listener, or one that cannot share it).
    pub fn of(port: u16) -> std::io::Result<PortHold> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(false)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        let port = socket.local_addr()?.port();
        Ok(PortHold {
            _socket: socket,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A `redis-server` that exited because its port was taken between the release of its
/// [`PortHold`] and its own bind: try again on another port (or later, on the same one).
#[derive(Debug)]
pub struct PortTaken;

/// A log file of its own for a server of this process, e.g. `redis-6379-3.log`.
pub fn log_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "livepush-{name}-{}-{}.log",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Releases `holds`, spawns `command` (a `redis-server` that listens on `port` and logs to
/// `log`) and waits until the process answering on `port` reports the spawned one's pid.
/// `Err(PortTaken)` when it exited with "Address already in use" (another process bound the
/// port first: the caller tries again); panics with its log on any other failure.
pub fn spawn_listening(
    mut command: Command,
    port: u16,
    holds: Vec<PortHold>,
    log: &Path,
) -> Result<Child, PortTaken> {
    let _ = std::fs::remove_file(log);
    drop(holds);
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {command:?} ({e}). The Redis tests need a real redis-server: \
                 install it with `sudo apt-get install redis-server` (Debian/Ubuntu) or \
                 `brew install redis` (macOS), or set REDIS_SERVER_BIN; `scripts/test.sh` does this for you"
            )
        });
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Address already in use") {
                return Err(PortTaken);
            }
            panic!("{command:?} exited with {status} before listening on port {port}:\n{text}");
        }
        // another process may listen there until ours fails to bind: ours must answer
        if answering_pid(port) == Some(child.id()) {
            return Ok(child);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{command:?} did not answer on port {port} within {WAIT:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `process_id` that the Redis (or Sentinel) listening on `port` reports in `INFO server`,
/// asked over a plain socket, as the admin user where there is one (a server without it
/// refuses the `AUTH` and answers `INFO` all the same).
fn answering_pid(port: u16) -> Option<u32> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut request = String::new();
    for command in [
        &["AUTH", ADMIN_USER, ADMIN_PASSWORD][..],
        &["INFO", "server"],
    ] {
        request.push_str(&format!("*{}\r\n", command.len()));
        for arg in command {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some(rest) = text.split("process_id:").nth(1) {
            if let Some((pid, _)) = rest.split_once("\r\n") {
                return pid.trim().parse().ok();
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
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
        let mut server = RedisServer {
            port: 0,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            held: None,
            log: log_path("redis"),
        };
        for _ in 0..SPAWN_TRIES {
            let hold = PortHold::any();
            server.port = hold.port();
            if server.spawn(Some(hold)).is_ok() {
                return server;
            }
        }
        panic!("redis-server {args:?}: {SPAWN_TRIES} free ports were taken before it bound them");
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

    /// Spawns the server on `self.port`, releasing `hold` just before.
    fn spawn(&mut self, hold: Option<PortHold>) -> Result<(), PortTaken> {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let admin_password = format!(">{ADMIN_PASSWORD}");
        let mut command = Command::new(&bin);
        command
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
                "--logfile",
                &self.log.display().to_string(),
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
            .args(&self.args);
        let child = spawn_listening(command, self.port, hold.into_iter().collect(), &self.log)?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown). Its port stays held (clients
    /// are refused, as by a dead server) for [`RedisServer::restart`], unless connections the
    /// kill closed linger in `TIME_WAIT` on it, which keep other tests' ports off it anyway.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.held = PortHold::of(self.port).ok();
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
    /// arguments it was first started with. Should another process have bound the port while
    /// it was not held, the spawn is tried again until [`WAIT`] passes.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let hold = self.held.take().or_else(|| PortHold::of(self.port).ok());
            if self.spawn(hold).is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server cannot listen on port {} again: another process holds it",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
        let _ = std::fs::remove_file(&self.log);
    }
}

//! Example binaries run as a user runs them: the built executable, configured only by its
//! environment, on a loopback port. Killed when dropped.
//!
//! An example is started with `PORT=0`: it binds a port the kernel chooses and logs the URL it
//! serves (its contract), which is where the test finds the port. No port is probed free and
//! then bound by another process, which another test could take in between.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::free_port;

/// What every example logs once it listens, followed by its address.
const LISTENING: &str = "listening on http://";

/// How long an example may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of an example binary of this package, built by cargo for the integration tests.
pub fn binary(name: &str) -> &'static str {
    match name {
        "crm_comments" => env!("CARGO_BIN_EXE_crm_comments"),
        "bench_server" => env!("CARGO_BIN_EXE_bench_server"),
        "tickets" => env!("CARGO_BIN_EXE_tickets"),
        "domain_events" => env!("CARGO_BIN_EXE_domain_events"),
        "multi_instance" => env!("CARGO_BIN_EXE_multi_instance"),
        "chat" => env!("CARGO_BIN_EXE_chat"),
        other => panic!("no example binary named {other}"),
    }
}

/// A command for example `name` with a clean livepush environment: no variable of the
/// developer's shell changes what the test sees.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("LIVEPUSH_")
            || matches!(
                key.as_str(),
                "REDIS_URL" | "NATS_URL" | "DATABASE_URL" | "HOST" | "PORT" | "RUST_LOG"
            )
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_LOG", "info");
    // A working directory of its own: what an example creates there (crm_comments' SQLite file
    // when DATABASE_URL is unset) is neither shared between tests nor left in the repository.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("examples")
        .join(super::database::unique(name));
    std::fs::create_dir_all(&dir).expect("create the example's working directory");
    cmd.current_dir(dir);
    cmd
}

/// A running example.
pub struct Example {
    pub port: u16,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Example {
    /// Starts example `name` with `PORT=0` and the extra environment `env`, and waits until it
    /// logs the URL it serves (the contract of every example), whose port it then answers on.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Example {
        Self::try_start(name, 0, env).unwrap_or_else(|output| panic!("{output}"))
    }

    /// Starts example `name` on a given port, for a test of the `PORT` contract itself: a port
    /// free a moment ago, probed again if another process took it before the example bound it
    /// (the example then exits with "cannot listen on").
    pub fn start_on_a_chosen_port(name: &str, env: &[(&str, &str)]) -> Example {
        for _ in 0..5 {
            match Self::try_start(name, free_port(), env) {
                Ok(example) => return example,
                Err(output) if output.contains("cannot listen on") => continue,
                Err(output) => panic!("{output}"),
            }
        }
        panic!("{name}: every free port probed was taken before it could bind it, five times");
    }

    /// Starts example `name` with `PORT=port` (0: the kernel chooses) and waits until it logs
    /// `listening on http://127.0.0.1:<port>`; `Err` with its output if it exits or stays silent.
    fn try_start(name: &str, port: u16, env: &[(&str, &str)]) -> Result<Example, String> {
        let mut child = configured(name, port, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary(name)));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let lines = stdout.clone();
        let wanted = match port {
            0 => format!("{LISTENING}127.0.0.1:<port>"),
            port => format!("{LISTENING}127.0.0.1:{port}"),
        };
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(listening) = listening_port(&line) {
                    let _ = ready_tx.send(listening);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().expect("piped stderr");
        let err_text = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            err_text.lock().unwrap().push_str(&text);
        });
        let mut example = Example {
            port,
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(listening) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                if port != 0 && listening != port {
                    return Err(format!(
                        "{name} was told PORT={port} and listens on {listening}:\n{}",
                        example.output()
                    ));
                }
                example.port = listening;
                return Ok(example);
            }
            if let Ok(Some(status)) = example.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers catch up
                return Err(format!(
                    "{name} exited with {status} before listening:\n{}",
                    example.output()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} did not log `{wanted}` within {START_TIMEOUT:?}:\n{}",
                    example.output()
                ));
            }
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Waits until `/health/ready` answers 200: with Redis, the broker is connected, so a
    /// stream opened from now on is not reset (`broker_gap`) by the first connection.
    pub async fn wait_ready(&self) {
        super::wait_for_status(&self.url("/health/ready"), 200).await;
    }

    /// What it printed so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// The process id (for `prlimit` and `/proc/PID/fd`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as `docker stop` or Kubernetes would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of a `listening on http://127.0.0.1:<port>` log line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split(LISTENING).nth(1)?;
    let address = rest.split_whitespace().next()?;
    address.strip_prefix("127.0.0.1:")?.parse().ok()
}

/// The example `name` set to listen on 127.0.0.1:`port`, with `env` on top.
fn configured(name: &str, port: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = command(name);
    cmd.env("HOST", "127.0.0.1").env("PORT", port.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs example `name` with `env` until it exits (it should refuse to start); returns its exit
/// status and stderr.
pub fn run_to_exit(name: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    // port 0: should it start after all, it binds a port of its own choosing, nobody else's
    let mut child = configured(name, 0, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary(name)));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            let _ = child
                .stderr
                .take()
                .expect("piped")
                .read_to_string(&mut stderr);
            return (status, stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} with {env:?} still runs after {START_TIMEOUT:?}: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! A private `nats-server -js` on a free loopback port, with its own JetStream store directory,
//! that a test can kill and restart (on the same port, with the same store).
//!
//! Like [`super::redis_server`], the port is chosen by the kernel for a socket of the test's
//! ([`PortHold`]) and released just before the spawn; a server counts as started once the
//! process answering on the port announces the unique name this one was given (`-n`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_server::{log_path, PortHold};
use super::WAIT;

/// A private JetStream server, killed (and its store removed) when dropped.
pub struct NatsServer {
    pub port: u16,
    /// The HTTP monitoring port (`/varz`, `/subsz`).
    monitor: u16,
    child: Option<Child>,
    name: String,
    store: PathBuf,
    log: PathBuf,
    /// The port, held while the server is down.
    held: Option<PortHold>,
}

impl NatsServer {
    /// A server with a file store of its own.
    pub fn start() -> NatsServer {
        let log = log_path("nats");
        let name = log
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("livepush-nats")
            .to_owned();
        let store = std::env::temp_dir().join(format!("{name}-store"));
        let mut server = NatsServer {
            port: 0,
            monitor: 0,
            child: None,
            name,
            store,
            log,
            held: None,
        };
        for _ in 0..5 {
            let hold = PortHold::any();
            let monitor = PortHold::any();
            server.port = hold.port();
            server.monitor = monitor.port();
            server.held = Some(hold);
            drop(monitor);
            if server.spawn() {
                return server;
            }
        }
        panic!("nats-server did not start on 5 ports in a row");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The HTTP monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.monitor
    }

    /// Starts the process on `self.port`; `false` when another process took the port first.
    fn spawn(&mut self) -> bool {
        let _ = std::fs::remove_file(&self.log);
        let mut command = Command::new(
            std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned()),
        );
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .args(["-n", &self.name, "-sd"])
            .arg(&self.store)
            .arg("-l")
            .arg(&self.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        drop(self.held.take());
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start nats-server ({e}). The NATS tests need a real nats-server (2.9 or \
                 later): `apt-get install nats-server`, or set NATS_SERVER_BIN; \
                 `scripts/test.sh` does this for you"
            )
        });
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains("address already in use") {
                    return false;
                }
                panic!("nats-server exited with {status}:\n{text}");
            }
            if self.announced_name().as_deref() == Some(self.name.as_str()) {
                self.child = Some(child);
                return true;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("nats-server did not answer within {WAIT:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `server_name` of the server answering on the port (its first line is `INFO {json}`).
    fn announced_name(&self) -> Option<String> {
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        let info: serde_json::Value = serde_json::from_str(line.strip_prefix("INFO ")?).ok()?;
        Some(info["server_name"].as_str()?.to_owned())
    }

    /// Kills the process (SIGKILL: no goodbye to clients); the port stays held for
    /// [`NatsServer::restart`], and the store stays as it was.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.held = PortHold::of(self.port).ok();
    }

    /// Starts the server again on its port with its store; `wipe` removes the store first (a
    /// server that lost its disk, or a memory store).
    pub fn restart(&mut self, wipe: bool) {
        if wipe {
            let _ = std::fs::remove_dir_all(&self.store);
        }
        assert!(
            self.spawn(),
            "port {} was taken while the server was down",
            self.port
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
        let _ = std::fs::remove_file(&self.log);
    }
}

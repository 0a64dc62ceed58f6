//! A private `nats-server -js` on a free loopback port, with its own JetStream store directory,
//! that a test can kill and restart (on the same port, with the same store); and three of them
//! routed as one JetStream cluster ([`NatsCluster`]).
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
    /// More arguments (a cluster's).
    args: Vec<String>,
}

impl NatsServer {
    /// A server with a file store of its own.
    pub fn start() -> NatsServer {
        Self::start_with(Vec::new())
    }

    /// [`NatsServer::start`] with more arguments.
    pub fn start_with(args: Vec<String>) -> NatsServer {
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
            args,
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

    /// The instances listed in the presence bucket of the default stream (`LIVEPUSH_presence`):
    /// each hub on this server registers there once connected.
    pub async fn presence_instances(&self) -> Vec<String> {
        let client = async_nats::connect(self.url()).await.unwrap();
        let bucket = async_nats::jetstream::new(client)
            .get_key_value("LIVEPUSH_presence")
            .await;
        let Ok(bucket) = bucket else {
            return Vec::new();
        };
        let listed = bucket.get("instances").await.unwrap().unwrap_or_default();
        serde_json::from_slice(&listed).unwrap_or_default()
    }

    /// Every entry of the presence bucket, `key = value` a line, for a failing test to print
    /// (read with `Store::keys`, a last-per-subject listing: meant for after the writes stopped).
    pub async fn presence_dump(&self) -> String {
        use futures_util::StreamExt;
        let client = async_nats::connect(self.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let Ok(bucket) = js.get_key_value("LIVEPUSH_presence").await else {
            return "no presence bucket".to_owned();
        };
        let mut keys: Vec<String> = bucket
            .keys()
            .await
            .unwrap()
            .filter_map(|k| async { k.ok() })
            .collect()
            .await;
        keys.sort();
        let mut out = String::new();
        for key in keys {
            let entry = bucket.entry(&key).await.unwrap();
            let value = entry
                .map(|e| {
                    format!(
                        "{} (rev {}, {:?})",
                        String::from_utf8_lossy(&e.value),
                        e.revision,
                        e.created
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    }

    /// The unique server name (`-n`), as JetStream names a stream's leader.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
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
            .args(&self.args)
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

    /// The JetStream store directory (`-sd`).
    pub fn store(&self) -> &std::path::Path {
        &self.store
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

/// Three `nats-server -js` routed as one cluster: JetStream streams with up to 3 replicas.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three servers and waits until JetStream has a meta leader known to all.
    pub async fn start() -> NatsCluster {
        let cluster_ports: Vec<PortHold> = (0..3).map(|_| PortHold::any()).collect();
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{}", p.port()))
            .collect();
        let cluster_name = format!("lp-{}-{}", std::process::id(), cluster_ports[0].port());
        let mut servers = Vec::new();
        for hold in cluster_ports {
            let port = hold.port();
            drop(hold);
            servers.push(NatsServer::start_with(vec![
                "--cluster_name".to_owned(),
                cluster_name.clone(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".to_owned(),
                routes.join(","),
            ]));
        }
        let cluster = NatsCluster { servers };
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// `nats://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` and `query` (without its `?`).
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("nats://{}?{query}", hosts.join(","))
    }

    /// Waits until every running server names the same JetStream meta leader.
    pub async fn wait_for_meta_leader(&self) {
        super::eventually("a JetStream meta leader known to every server", || async {
            let mut leaders = Vec::new();
            for server in self.servers.iter().filter(|s| s.is_running()) {
                let url = format!("http://127.0.0.1:{}/jsz", server.monitor_port());
                let Ok(response) = super::http().get(&url).send().await else {
                    return false;
                };
                let Ok(jsz) = response.json::<serde_json::Value>().await else {
                    return false;
                };
                match jsz["meta_cluster"]["leader"].as_str() {
                    Some(leader) if !leader.is_empty() => leaders.push(leader.to_owned()),
                    _ => return false,
                }
            }
            leaders.windows(2).all(|w| w[0] == w[1])
        })
        .await;
    }

    /// The server named `name`.
    pub fn server_named(&mut self, name: &str) -> &mut NatsServer {
        self.servers
            .iter_mut()
            .find(|s| s.name() == name)
            .unwrap_or_else(|| panic!("no server named {name}"))
    }
}

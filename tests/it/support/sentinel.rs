//! A Redis Sentinel topology on free loopback ports: one master, one replica
//! (`redis-server --replicaof`) and three sentinels (`redis-server <conf> --sentinel`, each with
//! its own config file, which it rewrites), monitoring `mymaster` with a quorum of 2. Everything
//! is killed and its files removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::redis_server::{spawn_listening, PortHold};
use super::RedisServer;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// How long the sentinels may take to find each other and the replica, and to fail over.
pub const SENTINEL_WAIT: Duration = Duration::from_secs(20);

/// One `redis-server --sentinel` process.
struct SentinelProcess {
    port: u16,
    child: Child,
}

/// A master, its replica and three sentinels.
pub struct Sentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<SentinelProcess>,
    dir: PathBuf,
}

impl Sentinel {
    /// Starts the topology and waits until it can fail over: the replica is in sync, and every
    /// sentinel knows the replica and the two other sentinels.
    pub async fn start() -> Sentinel {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "livepush-sentinel-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the sentinels' directory");

        // Their own directories: a replica writes the master's snapshot to disk when it syncs.
        let data = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(&path).expect("create a server's directory");
            path.display().to_string()
        };
        let master = RedisServer::start_with(&["--dir", &data("master")]);
        let replica = RedisServer::start_replica_of(master.port, &["--dir", &data("replica")]);
        let mut topology = Sentinel {
            master,
            replica,
            sentinels: Vec::new(),
            dir,
        };
        topology.wait_for_replication().await;
        for n in 0..3 {
            let sentinel = topology.spawn_sentinel(n);
            topology.sentinels.push(sentinel);
        }
        topology.wait_for_discovery().await;
        topology
    }

    /// Starts sentinel `n` on a port held until then, on a fresh one if another process took it.
    fn spawn_sentinel(&self, n: usize) -> SentinelProcess {
        for _ in 0..5 {
            let hold = PortHold::any();
            let port = hold.port();
            let conf = self.dir.join(format!("sentinel-{n}.conf"));
            let dir = self.dir.join(format!("sentinel-{n}"));
            let log = self.dir.join(format!("sentinel-{n}.log"));
            std::fs::create_dir_all(&dir).expect("create a sentinel's directory");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\n\
                     bind 127.0.0.1\n\
                     protected-mode no\n\
                     dir {dir}\n\
                     logfile {log}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.display(),
                    log = log.display(),
                    master = self.master.port,
                ),
            )
            .expect("write a sentinel's config");
            let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
            let mut command = Command::new(&bin);
            command.arg(&conf).arg("--sentinel");
            if let Ok(child) = spawn_listening(command, port, vec![hold], &log) {
                return SentinelProcess { port, child };
            }
        }
        panic!("sentinel {n}: five free ports were taken before it could bind them");
    }

    /// The URL the app is given: `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Kills the master (SIGKILL): the sentinels notice within `down-after-milliseconds`.
    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Waits until every sentinel names the replica as the master of `mymaster` and the replica
    /// says it is a master.
    pub async fn wait_for_promotion(&self) {
        let wanted = self.replica.port;
        let deadline = tokio::time::Instant::now() + SENTINEL_WAIT;
        loop {
            let mut named = 0;
            let mut seen = Vec::new();
            for port in self.sentinel_ports() {
                let addr = sentinel_command(port, &["get-master-addr-by-name", MASTER_NAME])
                    .await
                    .ok()
                    .and_then(|v| redis::from_redis_value::<(String, u16)>(v).ok());
                if addr.as_ref().is_some_and(|(_, p)| *p == wanted) {
                    named += 1;
                }
                seen.push(addr);
            }
            if named == self.sentinels.len() && self.role(&self.replica).await == "master" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sentinels did not promote the replica on port {wanted} within \
                 {SENTINEL_WAIT:?}; they name {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What `ROLE` answers first on `server`: "master", "slave", or "" when unreachable.
    async fn role(&self, server: &RedisServer) -> String {
        server
            .try_admin_command(&["ROLE"])
            .await
            .ok()
            .and_then(|v| redis::from_redis_value::<Vec<redis::Value>>(v).ok())
            .and_then(|parts| parts.into_iter().next())
            .and_then(|first| redis::from_redis_value::<String>(first).ok())
            .unwrap_or_default()
    }

    async fn wait_for_replication(&self) {
        let deadline = tokio::time::Instant::now() + SENTINEL_WAIT;
        loop {
            let info = self
                .replica
                .try_admin_command(&["INFO", "replication"])
                .await
                .ok()
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica did not sync with the master:\n{info}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_discovery(&self) {
        let deadline = tokio::time::Instant::now() + SENTINEL_WAIT;
        let others = self.sentinels.len() - 1;
        loop {
            let mut state = Vec::new();
            for port in self.sentinel_ports() {
                let replicas = count(sentinel_command(port, &["replicas", MASTER_NAME]).await);
                let sentinels = count(sentinel_command(port, &["sentinels", MASTER_NAME]).await);
                state.push((port, replicas, sentinels));
            }
            if state.iter().all(|&(_, r, s)| r == 1 && s == others) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sentinels did not find the replica and each other within \
                 {SENTINEL_WAIT:?}: (port, replicas, sentinels) = {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn count(answer: redis::RedisResult<redis::Value>) -> usize {
    answer
        .ok()
        .and_then(|v| redis::from_redis_value::<Vec<redis::Value>>(v).ok())
        .map_or(0, |list| list.len())
}

/// `SENTINEL <args>` on the sentinel at `port`, through a fresh connection.
pub async fn sentinel_command(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut cmd = redis::cmd("SENTINEL");
    for arg in args {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            let _ = sentinel.child.kill();
            let _ = sentinel.child.wait();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

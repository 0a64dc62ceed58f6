//! A real Redis Cluster on loopback: 3 masters and 3 replicas (`redis-server --cluster-enabled
//! yes`, joined by `redis-cli --cluster create --cluster-replicas 1`), started once for the
//! whole test binary, with the topology operations the tests need (kill a master and wait for
//! its replica's promotion, move a slot).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::support::redis_server::{spawn_listening, PortHold};

/// Ports of the cluster bus are the client ports + 10000.
const BUS_OFFSET: u16 = 10000;

pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running node").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", self.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut conn = self.conn().await;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    }

    pub async fn id(&self) -> String {
        self.cmd(&["CLUSTER", "MYID"]).await.unwrap()
    }

    pub async fn is_master(&self) -> bool {
        let role: Vec<redis::Value> = self.cmd(&["ROLE"]).await.unwrap();
        matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port held for a node, with its cluster bus port held too.
fn cluster_ports() -> (u16, Vec<PortHold>) {
    loop {
        let hold = PortHold::any();
        let port = hold.port();
        if port >= 65535 - BUS_OFFSET {
            continue;
        }
        if let Ok(bus) = PortHold::of(port + BUS_OFFSET) {
            return (port, vec![hold, bus]);
        }
    }
}

/// Starts one cluster node in `dir` on ports held until then, on fresh ones if another
/// process took them in between.
fn start_node(bin: &str, dir: &std::path::Path) -> Node {
    for _ in 0..5 {
        let (port, holds) = cluster_ports();
        let log = dir.join(format!("node-{port}.log"));
        let mut command = Command::new(bin);
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "1000",
            "--dir",
            dir.to_str().unwrap(),
            "--logfile",
            log.to_str().unwrap(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]);
        if let Ok(child) = spawn_listening(command, port, holds, &log) {
            return Node {
                port,
                child: Some(child),
            };
        }
    }
    panic!("a cluster node: five pairs of free ports were taken before it bound them");
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "livepush-cluster-{}-{}",
            std::process::id(),
            super::support::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let nodes: Vec<Node> = (0..6).map(|_| start_node(&bin, &dir)).collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let cli = std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into());
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for &port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes, dir };
        cluster.wait_healthy().await;
        cluster
    }

    /// Seed list for `redis+cluster://`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// Waits until every running node says `cluster_state:ok`, 3 masters serve all slots, and
    /// every running master with slots has a replica or none is expected.
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let info: String = node.cmd(&["CLUSTER", "INFO"]).await.unwrap_or_default();
                if !info.contains("cluster_state:ok") {
                    ok = false;
                }
            }
            if ok && self.masters().await.len() == 3 {
                // every node must agree on the slot owners
                let mut views = Vec::new();
                for node in self.nodes.iter().filter(|n| n.is_running()) {
                    views.push(self.slot_owners_seen_by(node).await);
                }
                if views.windows(2).all(|w| w[0] == w[1]) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn slot_owners_seen_by(&self, node: &Node) -> Vec<(i64, i64, i64)> {
        let slots: Vec<redis::Value> = node.cmd(&["CLUSTER", "SLOTS"]).await.unwrap_or_default();
        let mut out = Vec::new();
        for range in slots {
            let redis::Value::Array(items) = range else {
                continue;
            };
            let (
                Some(redis::Value::Int(a)),
                Some(redis::Value::Int(b)),
                Some(redis::Value::Array(m)),
            ) = (items.first(), items.get(1), items.get(2))
            else {
                continue;
            };
            let port = match m.get(1) {
                Some(redis::Value::Int(p)) => *p,
                _ => 0,
            };
            out.push((*a, *b, port));
        }
        out.sort();
        out
    }

    /// The running masters that serve slots.
    pub async fn masters(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if node.is_master().await {
                let owned = self
                    .slot_owners_seen_by(node)
                    .await
                    .iter()
                    .any(|(_, _, port)| *port == i64::from(node.port));
                if owned {
                    out.push(node);
                }
            }
        }
        out
    }

    pub fn node(&self, port: u16) -> &Node {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    /// The master serving `slot` (as the node on `ask` sees it).
    pub async fn owner_of(&self, slot: u16) -> u16 {
        let ask = self.nodes.iter().find(|n| n.is_running()).unwrap();
        for (a, b, port) in self.slot_owners_seen_by(ask).await {
            if (a..=b).contains(&i64::from(slot)) {
                return port as u16;
            }
        }
        panic!("no owner for slot {slot}")
    }

    pub async fn keyslot(&self, key: &str) -> u16 {
        let ask = self.nodes.iter().find(|n| n.is_running()).unwrap();
        let slot: i64 = ask.cmd(&["CLUSTER", "KEYSLOT", key]).await.unwrap();
        slot as u16
    }

    /// Kills the master on `port` and waits until its replica serves its slots.
    pub async fn kill_master(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap()
            .kill();
        self.wait_healthy().await;
    }

    /// Moves `slot` (and its keys) from its owner to the master on `to`:
    /// SETSLOT IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT NODE on every master.
    pub async fn move_slot(&self, slot: u16, to: u16) {
        let from = self.owner_of(slot).await;
        let (src, dst) = (self.node(from), self.node(to));
        let (src_id, dst_id) = (src.id().await, dst.id().await);
        let s = slot.to_string();
        let _: () = dst
            .cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id])
            .await
            .unwrap();
        let _: () = src
            .cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id])
            .await
            .unwrap();
        loop {
            let keys: Vec<String> = src
                .cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"])
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let _: () = src.cmd(&args).await.unwrap();
        }
        for node in self.masters().await {
            let _: () = node
                .cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &dst_id])
                .await
                .unwrap();
        }
        // replicas learn it through the bus; wait until everyone agrees
        self.wait_healthy().await;
    }

    /// Client connections of a node, without the one asking.
    pub async fn clients(&self, port: u16) -> Vec<String> {
        let list: String = self.node(port).cmd(&["CLIENT", "LIST"]).await.unwrap();
        list.lines()
            .filter(|l| !l.contains("cmd=client|list"))
            .map(str::to_owned)
            .collect()
    }

    /// Shard channels subscribed on the node on `port`.
    pub async fn shard_channels(&self, port: u16) -> Vec<String> {
        self.node(port)
            .cmd(&["PUBSUB", "SHARDCHANNELS"])
            .await
            .unwrap_or_default()
    }
}

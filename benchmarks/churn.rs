//! # churn: the cost of subscribe/unsubscribe churn (issue 17, goal 4; issue 25)
//!
//! Opens SSE connections `GET /events?topic=<prefix>-<i>` (every connection its own topic) at a
//! fixed rate against a running server of the bench protocol, holds each `--hold-ms` after its
//! response head arrived (`200`, the stream is live: livepush answers only once a topic is
//! subscribed at the broker), then closes it as a browser tab does (FIN). At 1,000/s held 1 s
//! that is ≈ 1,000 live subscriptions, 1,000 new topics and 1,000 topics left per second.
//!
//! `--path-template` asks for another target, `{i}` standing for the connection's number: presence
//! churn on one topic, every connection a new member, is
//! `--path-template '/rooms/churn/events?user=c{i}'` against the `chat` example. `--base` may be
//! given several times: connection `i` goes to base `i mod n` (several instances of one cluster).
//!
//! Reports (one JSON object): the servers' CPU time (utime + stime of `/proc/PID/stat`, each
//! `--server-pid`, summed, and per server in `servers`) from the first connect until
//! `--settle-ms` after the last close (the time the server takes to notice the closes and
//! unsubscribe; for presence, the grace period before a leave), divided by the cycles (one
//! subscribe + one unsubscribe each); failures (connect errors, non-200, no response head within
//! 5 s); time to response head p50/p99; server RSS before and after; and with `--redis HOST:PORT`
//! the Redis commands the churn caused (`INFO commandstats` before and after: `subscribe`,
//! `unsubscribe`, `ssubscribe`, ..., `evalsha`, and each command a script ran), per second, and,
//! without `--path-template`, the channels of `<prefix>-` still subscribed after the settle time
//! (a leak when not 0).
//!
//! Bounded: at most 100,000 connections, at most 10,000/s, loopback addresses only. About
//! `rate × (hold + response time)` connections are open at once: raise `ulimit -n` above that
//! (scripts/bench.sh sets 20,000).
//!
//! ```sh
//! target/release/churn --base http://127.0.0.1:3000 --server-pid $PID [--rate 1000] \
//!     [--duration-s 10] [--hold-ms 1000] [--redis 127.0.0.1:6390] [--label memory]
//! target/release/churn --base http://127.0.0.1:3001 --base http://127.0.0.1:3002 \
//!     --server-pid $P1 --server-pid $P2 --path-template '/rooms/churn/events?user=c{i}' \
//!     --settle-ms 5000 --redis 127.0.0.1:6390          # scripts/bench_presence.sh
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_CONNECTIONS: u64 = 100_000;
const MAX_RATE: u64 = 10_000;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Redis commands that change what a connection is subscribed to.
const SUB_COMMANDS: [&str; 6] = [
    "subscribe",
    "unsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "psubscribe",
    "punsubscribe",
];

struct Args {
    /// Where connection `i` goes: `bases[i % bases.len()]`.
    bases: Vec<SocketAddr>,
    server_pids: Vec<u32>,
    rate: u64,
    duration_s: u64,
    hold_ms: u64,
    settle_ms: u64,
    prefix: String,
    /// The request target, `{i}` the connection's number; `None`: `/events?topic=<prefix>-<i>`.
    path_template: Option<String>,
    redis: Option<SocketAddr>,
    label: String,
}

impl Args {
    /// The address and request target of connection `i`.
    fn target(&self, i: u64) -> (SocketAddr, String) {
        let addr = self.bases[(i % self.bases.len() as u64) as usize];
        let path = match &self.path_template {
            Some(t) => t.replace("{i}", &i.to_string()),
            None => format!("/events?topic={}-{i}", self.prefix),
        };
        (addr, path)
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "error: {msg}\nusage: churn --base http://127.0.0.1:PORT [--base ...] [--server-pid PID ...] \
         [--rate 1000] [--duration-s 10] [--hold-ms 1000] [--settle-ms 2000] \
         [--topic-prefix churn | --path-template '/rooms/churn/events?user=c{{i}}'] \
         [--redis 127.0.0.1:PORT] [--label NAME]"
    );
    std::process::exit(2)
}

fn loopback(addr: &str, what: &str) -> SocketAddr {
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|_| usage(&format!("{what} {addr:?} is not IP:PORT")));
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => addr,
        IpAddr::V6(ip) if ip.is_loopback() => addr,
        _ => usage(&format!("{what} {addr} is not a loopback address")),
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        bases: Vec::new(),
        server_pids: Vec::new(),
        rate: 1000,
        duration_s: 10,
        hold_ms: 1000,
        settle_ms: 2000,
        prefix: "churn".to_owned(),
        path_template: None,
        redis: None,
        label: "server".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag} {v:?} is not a whole number")))
        };
        match flag.as_str() {
            "--base" => {
                let rest = value
                    .strip_prefix("http://")
                    .unwrap_or_else(|| usage("--base must be http://IP:PORT"));
                args.bases
                    .push(loopback(rest.trim_end_matches('/'), "--base"));
            }
            "--server-pid" => args.server_pids.push(number(&value) as u32),
            "--rate" => args.rate = number(&value),
            "--duration-s" => args.duration_s = number(&value),
            "--hold-ms" => args.hold_ms = number(&value),
            "--settle-ms" => args.settle_ms = number(&value),
            "--topic-prefix" => args.prefix = value,
            "--path-template" => {
                if !value.starts_with('/') || value.chars().any(char::is_whitespace) {
                    usage("--path-template must start with / and hold no spaces");
                }
                args.path_template = Some(value)
            }
            "--redis" => args.redis = Some(loopback(&value, "--redis")),
            "--label" => args.label = value,
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if args.bases.is_empty() {
        args.bases.push(SocketAddr::from(([127, 0, 0, 1], 3000)));
    }
    if args.rate == 0 || args.rate > MAX_RATE {
        usage(&format!("--rate must be 1 to {MAX_RATE}"));
    }
    if args.rate * args.duration_s == 0 || args.rate * args.duration_s > MAX_CONNECTIONS {
        usage(&format!(
            "--rate × --duration-s must be 1 to {MAX_CONNECTIONS}"
        ));
    }
    args
}

/// utime + stime of the process in clock ticks, and its RSS in KiB.
fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3 (state).
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((ticks, rss))
}

fn clock_ticks_per_s() -> u64 {
    // getconf CLK_TCK: 100 on every Linux this runs on; read it rather than assume it.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One inline Redis command on a fresh connection; the raw reply.
async fn redis(addr: SocketAddr, command: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(format!("{command}\r\n").as_bytes()).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no reply from Redis"))??;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if complete(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether a RESP reply (a bulk string, or an array of bulk strings) is complete.
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((head, mut rest)) = text.split_once("\r\n") else {
        return false;
    };
    let count = |h: &str| h[1..].parse::<i64>().unwrap_or(-1);
    match head.as_bytes().first() {
        Some(b'$') => count(head) < 0 || rest.len() >= count(head) as usize + 2,
        Some(b'*') => {
            for _ in 0..count(head).max(0) {
                let Some((h, r)) = rest.split_once("\r\n") else {
                    return false;
                };
                let len = count(h).max(0) as usize;
                if r.len() < len + 2 {
                    return false;
                }
                rest = &r[len + 2..];
            }
            true
        }
        _ => true,
    }
}

/// `cmdstat_<name>:calls=N,...` of `INFO commandstats` as name → calls.
fn command_calls(info: &str) -> Map<String, Value> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls: u64 = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), json!(calls)))
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    head_us: Mutex<Vec<u64>>,
}

impl Counts {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(error);
    }
}

/// One cycle: connect, request the stream, wait for its response head, hold, close.
async fn cycle(args: Arc<Args>, i: u64, counts: Arc<Counts>) {
    let start = Instant::now();
    let (addr, path) = args.target(i);
    let mut conn = match TcpStream::connect(addr).await {
        Ok(c) => c,
        Err(e) => return counts.fail(format!("connect: {e}")),
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if let Err(e) = conn.write_all(request.as_bytes()).await {
        return counts.fail(format!("request: {e}"));
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read_head = async {
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed before the response head"));
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(HEAD_TIMEOUT, read_head).await {
        Err(_) => return counts.fail("no response head within 5 s".to_owned()),
        Ok(Err(e)) => return counts.fail(format!("response: {e}")),
        Ok(Ok(())) => {}
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&head);
        return counts.fail(format!("status: {}", line.lines().next().unwrap_or("")));
    }
    counts
        .head_us
        .lock()
        .unwrap()
        .push(start.elapsed().as_micros() as u64);
    counts.ok.fetch_add(1, Ordering::Relaxed);
    // Hold the stream (heartbeats, if any, stay unread in the socket buffer), then close it.
    tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;
    drop(conn);
}

/// `INFO commandstats` of the Redis at `r` as name → calls, or exit.
async fn command_stats(r: SocketAddr) -> Map<String, Value> {
    match redis(r, "INFO commandstats").await {
        Ok(info) => command_calls(&info),
        Err(e) => {
            eprintln!("error: Redis at {r}: {e}");
            std::process::exit(2)
        }
    }
}

/// Opens `rate × duration` connections on schedule, then waits for every one to end.
async fn run_cycles(args: &Arc<Args>, counts: &Arc<Counts>) -> f64 {
    let total = args.rate * args.duration_s;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / args.rate);
        tokio::time::sleep_until(at.into()).await;
        tasks.push(tokio::spawn(cycle(args.clone(), i, counts.clone())));
    }
    let opened_s = start.elapsed().as_secs_f64();
    for t in tasks {
        if let Err(e) = t.await {
            counts.fail(format!("task: {e}"));
        }
    }
    opened_s
}

/// The servers' CPU and RSS between `before` and `after` (summed, and per server when several).
fn server_report(
    out: &mut Map<String, Value>,
    pids: &[u32],
    before: &[Option<(u64, u64)>],
    elapsed_s: f64,
    cycles: u64,
) {
    let tick = clock_ticks_per_s() as f64;
    let mut servers = Vec::new();
    for (pid, before) in pids.iter().zip(before) {
        let (Some((t0, rss0)), Some((t1, rss1))) = (*before, proc_stat(*pid)) else {
            continue;
        };
        let cpu_s = t1.saturating_sub(t0) as f64 / tick;
        servers.push(json!({"pid": pid, "cpu_s": cpu_s,
            "cpu_us_per_cycle": cpu_s * 1e6 / cycles as f64,
            "rss_kb_before": rss0, "rss_kb_after": rss1}));
    }
    if servers.is_empty() {
        return;
    }
    let sum = |k: &str| -> f64 { servers.iter().filter_map(|s| s[k].as_f64()).sum() };
    let cpu_s = sum("cpu_s");
    out.insert("server_cpu_s".into(), json!(cpu_s));
    out.insert(
        "server_cpu_us_per_cycle".into(),
        json!(cpu_s * 1e6 / cycles as f64),
    );
    out.insert("server_cpu_share".into(), json!(cpu_s / elapsed_s));
    out.insert("rss_kb_before".into(), json!(sum("rss_kb_before") as u64));
    out.insert("rss_kb_after".into(), json!(sum("rss_kb_after") as u64));
    if servers.len() > 1 {
        out.insert("servers".into(), Value::Array(servers));
    }
}

/// The Redis commands the churn caused (a difference of `INFO commandstats`), per second, and
/// the churn's channels still subscribed (a leak when not 0; topics of `--topic-prefix` only).
async fn redis_report(
    out: &mut Map<String, Value>,
    args: &Args,
    before: &Map<String, Value>,
    elapsed_s: f64,
) {
    let Some(r) = args.redis else { return };
    let after = command_stats(r).await;
    let calls = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut diff = Map::new();
    let mut total_calls = 0;
    for (name, _) in after.iter() {
        let d = calls(&after, name).saturating_sub(calls(before, name));
        // the INFO asking for this is not the churn's
        let d = if name == "info" {
            d.saturating_sub(1)
        } else {
            d
        };
        total_calls += d;
        if d > 0 || SUB_COMMANDS.contains(&name.as_str()) {
            diff.insert(name.clone(), json!(d));
        }
    }
    out.insert("redis_calls".into(), json!(total_calls));
    out.insert(
        "redis_calls_per_s".into(),
        json!(total_calls as f64 / elapsed_s),
    );
    out.insert("redis_commands".into(), Value::Object(diff));
    if args.path_template.is_none() {
        let left = redis(r, &format!("PUBSUB CHANNELS *{}-*", args.prefix))
            .await
            .ok()
            .and_then(|reply| reply.lines().next()?.strip_prefix('*')?.parse::<u64>().ok());
        out.insert("redis_channels_left".into(), json!(left));
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let total = args.rate * args.duration_s;
    let before_redis = match args.redis {
        Some(r) => command_stats(r).await,
        None => Map::new(),
    };
    let before: Vec<_> = args.server_pids.iter().map(|&p| proc_stat(p)).collect();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let opened_s = run_cycles(&args, &counts).await;
    // The server notices a close when it next reads (or writes) the socket: give it the time.
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let elapsed_s = start.elapsed().as_secs_f64();

    let mut out = Map::new();
    out.insert("label".into(), json!(args.label));
    out.insert("rate".into(), json!(args.rate));
    out.insert("cycles".into(), json!(total));
    out.insert("hold_ms".into(), json!(args.hold_ms));
    out.insert("settle_ms".into(), json!(args.settle_ms));
    out.insert("opened_s".into(), json!(opened_s));
    out.insert("achieved_rate".into(), json!(total as f64 / opened_s));
    out.insert("elapsed_s".into(), json!(elapsed_s));
    out.insert("ok".into(), json!(counts.ok.load(Ordering::Relaxed)));
    out.insert(
        "failed".into(),
        json!(counts.failed.load(Ordering::Relaxed)),
    );
    out.insert(
        "first_error".into(),
        json!(counts.first_error.lock().unwrap().clone()),
    );
    let mut head = std::mem::take(&mut *counts.head_us.lock().unwrap());
    head.sort_unstable();
    out.insert(
        "head_ms".into(),
        json!({"p50": percentile(&head, 50.0), "p99": percentile(&head, 99.0),
               "max": head.last().map(|&us| us as f64 / 1000.0)}),
    );
    server_report(&mut out, &args.server_pids, &before, elapsed_s, total);
    redis_report(&mut out, &args, &before_redis, elapsed_s).await;
    println!("{}", Value::Object(out));
    if counts.failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(3)
    }
}

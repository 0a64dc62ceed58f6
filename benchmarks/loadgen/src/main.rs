//! Fan-out load generator for Server-Sent-Events servers.
//!
//! Bench protocol of the server under test:
//! - `GET /events?topic=<topic>` streams `text/event-stream`;
//! - `POST /publish` with a JSON object publishes it as the data of one event to every subscriber of the topic.
//!
//! It opens N subscriber connections, waits until every one of them has received a warm-up event,
//! then publishes M events carrying `seq` and `sent_ns`, and measures what every subscriber receives:
//! deliveries per second, publish→deliver latency, lost and duplicated events, server memory per connection.
//!
//! The project's copy of the team's reference load generator, kept in the repository so that
//! BENCHMARKS.md can be reproduced from a clone: same flags, same protocol, same JSON output
//! (checked against the reference in `benchmarks/log/2026-12-04-loadgen-check.md`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

mod transport;
use transport::{Sender, Transport};

#[derive(Parser, Debug, Clone)]
#[command(about = "Fan-out load generator for SSE servers (POST /publish, GET /events?topic=)")]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:3000 (an IP address). `https://` speaks TLS
    /// without verifying the certificate: loopback addresses only.
    #[arg(long)]
    base: String,
    /// Speak HTTP/2 (ALPN `h2` over https://, prior knowledge over http://): one stream per
    /// subscriber connection, as a browser tab has.
    #[arg(long)]
    http2: bool,
    /// Number of SSE subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Number of measured events to publish.
    #[arg(long, default_value_t = 100)]
    events: u64,
    /// Topic to subscribe to.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Only count events with this name (default: any event whose data carries "seq").
    #[arg(long)]
    event: Option<String>,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 4)]
    publish_concurrency: usize,
    /// Total publish rate in events per second (0 = as fast as the server accepts).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Size of the padding string in each event.
    #[arg(long, default_value_t = 200)]
    pad_bytes: usize,
    /// PID of the server process, to read its memory and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Bind subscriber connections round-robin to 127.0.0.1 ..= 127.0.0.N (more than ~28k connections).
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to hold the idle connections before publishing (soak / heartbeat check).
    #[arg(long, default_value_t = 0)]
    hold_s: u64,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Label for this server in the output.
    #[arg(long, default_value = "server")]
    label: String,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// Reconnect storm: once this many measured events are published, every subscriber drops its stream and
    /// reconnects with `Last-Event-ID` (0 = off). Use with --rate so that publishing goes on through the storm.
    #[arg(long, default_value_t = 0)]
    storm_at: u64,
    /// Each subscriber reconnects after a random delay below this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    storm_spread_ms: u64,
    /// Topics per subscriber: subscriber i listens on `<topic>-<i mod K>` and measured event `seq` is published
    /// to `<topic>-<seq mod K>` via `POST /publish?topic=` (1 = the single `--topic`, the classic protocol).
    #[arg(long, default_value_t = 1)]
    topics: u64,
}

/// What one subscriber saw.
struct SubStats {
    /// Measured events meant for this subscriber (all of them, or its topic's share with --topics).
    expected: u64,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    heartbeats: u64,
    latencies_us: Vec<u32>,
}

struct Shared {
    args: Args,
    addr: SocketAddr,
    host: String,
    transport: Transport,
    connected: AtomicUsize,
    failed: AtomicUsize,
    ready: AtomicUsize,
    complete: AtomicUsize,
    measuring: AtomicBool,
    last_delivery_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
    changed: Notify,
    stop: watch::Sender<bool>,
    stats: Mutex<Vec<SubStats>>,
    /// Measured events whose POST was answered.
    published: AtomicU64,
    storm: watch::Sender<bool>,
    storm_reconnected: AtomicUsize,
    storm_failed: AtomicUsize,
    /// Per reconnected subscriber: from the start of its reconnect until it holds every event published before it.
    storm_catchup_us: Mutex<Vec<u32>>,
    /// Streams the server ended during measuring that were resumed with Last-Event-ID.
    resumed: AtomicUsize,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The address, the `Host` and whether the base is `https://`.
fn parse_base(base: &str) -> (SocketAddr, String, bool) {
    let tls = base.starts_with("https://");
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .unwrap_or(base);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = hostport
        .parse()
        .unwrap_or_else(|_| panic!("--base must be http[s]://IP:PORT, got {base}"));
    (addr, hostport.to_string(), tls)
}

/// Finds `"key"` in a JSON text and parses the unsigned integer after it (nested objects are fine).
fn find_u64(data: &[u8], key: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i + key.len() + 2 <= data.len() {
        if data[i] == b'"'
            && data[i + 1..].starts_with(key)
            && data.get(i + 1 + key.len()) == Some(&b'"')
        {
            let mut j = i + 2 + key.len();
            while j < data.len() && (data[j] == b' ' || data[j] == b':') {
                j += 1;
            }
            let start = j;
            let mut v: u64 = 0;
            while j < data.len() && data[j].is_ascii_digit() {
                v = v.wrapping_mul(10).wrapping_add((data[j] - b'0') as u64);
                j += 1;
            }
            if j > start {
                return Some(v);
            }
        }
        i += 1;
    }
    None
}

fn contains(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

fn record_error(sh: &Shared, e: String) {
    let mut g = sh.first_error.lock().unwrap();
    if g.is_none() {
        *g = Some(e);
    }
}

async fn connect(addr: SocketAddr, src: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The topic subscriber `idx` listens on (`--topics`).
fn sub_topic(args: &Args, idx: u64) -> String {
    if args.topics <= 1 {
        args.topic.clone()
    } else {
        format!("{}-{}", args.topic, idx % args.topics)
    }
}

/// Connects and sends `GET /events`, with `Last-Event-ID` when resuming; the body of a 2xx answer.
async fn open_stream(
    sh: &Shared,
    idx: usize,
    src: Option<IpAddr>,
    last_id: Option<&str>,
) -> Result<hyper::body::Incoming, String> {
    let stream = connect(sh.addr, src)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut sender: Sender<Empty<Bytes>> = sh.transport.handshake(stream).await?;
    let path = format!("/events?topic={}", sub_topic(&sh.args, idx as u64));
    let mut req = sh
        .transport
        .request(hyper::Method::GET, &sh.host, &path)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    Ok(resp.into_body())
}

/// One SSE subscriber: connect, then parse frames until it has every measured event or the run ends.
async fn subscriber(sh: Arc<Shared>, idx: usize, gate: Arc<Semaphore>) {
    let m = sh.args.events;
    let mut st = SubStats {
        expected: 0,
        received: 0,
        duplicates: 0,
        out_of_order: 0,
        heartbeats: 0,
        latencies_us: Vec::with_capacity(m as usize),
    };
    let src = if sh.args.source_ips > 1 {
        Some(IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (idx % sh.args.source_ips as usize) as u8,
        )))
    } else {
        None
    };
    // With --topics K this subscriber only gets the measured events whose seq is idx mod K.
    let mine =
        |seq: u64| sh.args.topics <= 1 || seq % sh.args.topics == idx as u64 % sh.args.topics;
    let m_mine = (0..m).filter(|&q| mine(q)).count() as u64;
    st.expected = m_mine;
    let permit = gate.acquire().await.unwrap();
    let body = open_stream(&sh, idx, src, None).await;
    drop(permit);
    let mut body = match body {
        Ok(b) => Some(b),
        Err(e) => {
            record_error(&sh, e);
            sh.failed.fetch_add(1, Ordering::SeqCst);
            sh.changed.notify_waiters();
            sh.stats.lock().unwrap().push(st);
            return;
        }
    };
    sh.connected.fetch_add(1, Ordering::SeqCst);
    sh.changed.notify_waiters();

    let mut seen = vec![0u64; (m as usize).div_ceil(64)];
    let mut last_seq: Option<u64> = None;
    let mut ready = false;
    let mut buf = BytesMut::with_capacity(4096);
    let mut ev_name: Vec<u8> = Vec::new();
    let mut ev_data: Vec<u8> = Vec::new();
    let mut stop = sh.stop.subscribe();
    let mut storm = sh.storm.subscribe();
    let mut stormed = sh.args.storm_at == 0;
    let mut last_id: Option<String> = None;
    let mut next_missing: u64 = 0; // smallest of this subscriber's seqs not yet received
    let mut catching_up: Option<(u64, Instant)> = None; // (publishes before the reconnect, its start)
    let mut resumes = 0u32;
    'read: loop {
        let frame = tokio::select! {
            f = body.as_mut().expect("a stream is open").frame() => f,
            _ = stop.changed() => break 'read,
            _ = storm.changed(), if !stormed => {
                stormed = true;
                drop(body.take()); // dropping the body and its sender closes the connection
                let spread = sh.args.storm_spread_ms.max(1);
                let delay = splitmix64(idx as u64 ^ now_ns()) % spread;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let started = Instant::now();
                let target = sh.published.load(Ordering::SeqCst);
                match open_stream(&sh, idx, src, last_id.as_deref()).await {
                    Ok(b) => {
                        body = Some(b);
                        buf.clear();
                        ev_name.clear();
                        ev_data.clear();
                        sh.storm_reconnected.fetch_add(1, Ordering::SeqCst);
                        catching_up = Some((target, started));
                        continue 'read;
                    }
                    Err(e) => {
                        record_error(&sh, format!("storm reconnect: {e}"));
                        sh.storm_failed.fetch_add(1, Ordering::SeqCst);
                        break 'read;
                    }
                }
            }
        };
        let frame = match frame {
            Some(Ok(f)) => f,
            end => {
                // The server ended the stream (a slow-consumer cut, a restart). While measuring, do what
                // EventSource does: wait, then resume with Last-Event-ID; give up after 20 tries.
                if let Some(Err(e)) = &end {
                    if !sh.measuring.load(Ordering::Relaxed) {
                        record_error(&sh, format!("body: {e}"));
                    }
                }
                if !sh.measuring.load(Ordering::Relaxed)
                    || st.received == m_mine
                    || resumes >= 20
                    || *stop.borrow()
                {
                    break;
                }
                drop(body.take());
                tokio::time::sleep(Duration::from_millis(
                    100 + splitmix64(idx as u64 ^ now_ns()) % 400,
                ))
                .await;
                match open_stream(&sh, idx, src, last_id.as_deref()).await {
                    Ok(b) => {
                        body = Some(b);
                        resumes += 1;
                        sh.resumed.fetch_add(1, Ordering::SeqCst);
                        buf.clear();
                        ev_name.clear();
                        ev_data.clear();
                        continue 'read;
                    }
                    Err(e) => {
                        record_error(&sh, format!("resume: {e}"));
                        break;
                    }
                }
            }
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let mut line = buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.is_empty() {
                // Dispatch the event.
                if !ev_data.is_empty() {
                    let name_ok = match &sh.args.event {
                        Some(want) => ev_name == want.as_bytes(),
                        None => true,
                    };
                    if name_ok {
                        if contains(&ev_data, b"\"warm\"") {
                            if !ready {
                                ready = true;
                                sh.ready.fetch_add(1, Ordering::SeqCst);
                                sh.changed.notify_waiters();
                            }
                        } else if let (Some(seq), Some(sent)) =
                            (find_u64(&ev_data, b"seq"), find_u64(&ev_data, b"sent_ns"))
                        {
                            let t = now_ns();
                            if seq < m {
                                let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                                if seen[w] & bit != 0 {
                                    st.duplicates += 1;
                                } else {
                                    seen[w] |= bit;
                                    st.received += 1;
                                    st.latencies_us
                                        .push((t.saturating_sub(sent) / 1000).min(u32::MAX as u64)
                                            as u32);
                                    if let Some(l) = last_seq {
                                        if seq < l {
                                            st.out_of_order += 1;
                                        }
                                    }
                                    last_seq = Some(seq);
                                    sh.last_delivery_ns.fetch_max(t, Ordering::Relaxed);
                                    while next_missing < m
                                        && (!mine(next_missing)
                                            || seen[(next_missing / 64) as usize]
                                                & (1u64 << (next_missing % 64))
                                                != 0)
                                    {
                                        next_missing += 1;
                                    }
                                    if let Some((target, started)) = catching_up {
                                        if next_missing >= target {
                                            let us =
                                                started.elapsed().as_micros().min(u32::MAX as u128)
                                                    as u32;
                                            sh.storm_catchup_us.lock().unwrap().push(us);
                                            catching_up = None;
                                        }
                                    }
                                    if st.received == m_mine {
                                        sh.complete.fetch_add(1, Ordering::SeqCst);
                                        sh.changed.notify_waiters();
                                    }
                                }
                            }
                        }
                    }
                }
                ev_name.clear();
                ev_data.clear();
                continue;
            }
            if line[0] == b':' {
                st.heartbeats += 1;
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let mut v = &line[c + 1..];
                    if v.first() == Some(&b' ') {
                        v = &v[1..];
                    }
                    (&line[..c], v)
                }
                None => (&line[..], &[][..]),
            };
            match field {
                b"id" => last_id = Some(String::from_utf8_lossy(value).into_owned()),
                b"event" => {
                    ev_name.clear();
                    ev_name.extend_from_slice(value);
                }
                b"data" => {
                    if !ev_data.is_empty() {
                        ev_data.push(b'\n');
                    }
                    ev_data.extend_from_slice(value);
                }
                _ => {}
            }
        }
        if st.received == m_mine && sh.measuring.load(Ordering::Relaxed) && stormed {
            break 'read;
        }
    }
    sh.stats.lock().unwrap().push(st);
}

/// One publishing connection; publishes warm-up events or measured events.
struct Publisher {
    sender: Sender<Full<Bytes>>,
}

impl Publisher {
    async fn open(sh: &Shared) -> Result<Self, String> {
        let stream = connect(sh.addr, None)
            .await
            .map_err(|e| format!("publisher connect: {e}"))?;
        let sender = sh
            .transport
            .handshake(stream)
            .await
            .map_err(|e| format!("publisher {e}"))?;
        Ok(Self { sender })
    }

    async fn post(&mut self, sh: &Shared, json: String, topic: Option<&str>) -> Result<(), String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        let path = match topic {
            Some(t) => format!("/publish?topic={t}"),
            None => "/publish".to_string(),
        };
        let req = sh
            .transport
            .request(hyper::Method::POST, &sh.host, &path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .unwrap();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            return Err(format!("publish status {status}"));
        }
        Ok(())
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// utime + stime of a process, in seconds.
fn proc_cpu_s(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn wait_until(sh: &Shared, deadline: Instant, mut done: impl FnMut(&Shared) -> bool) -> bool {
    loop {
        if done(sh) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let notified = sh.changed.notified();
        let _ =
            tokio::time::timeout((deadline - now).min(Duration::from_millis(50)), notified).await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as u64
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (addr, host, tls) = parse_base(&args.base);
    let transport = Transport::new(addr, tls, args.http2);
    let n = args.subscribers;
    let m = args.events;
    let start_all = Instant::now();
    let deadline = start_all + Duration::from_secs(args.timeout_s);
    let sh = Arc::new(Shared {
        args: args.clone(),
        addr,
        host,
        transport,
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        complete: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        last_delivery_ns: AtomicU64::new(0),
        first_error: Mutex::new(None),
        changed: Notify::new(),
        stop: watch::channel(false).0,
        stats: Mutex::new(Vec::with_capacity(n)),
        published: AtomicU64::new(0),
        storm: watch::channel(false).0,
        storm_reconnected: AtomicUsize::new(0),
        storm_failed: AtomicUsize::new(0),
        storm_catchup_us: Mutex::new(Vec::new()),
        resumed: AtomicUsize::new(0),
    });
    let pid = args.server_pid;
    let rss_before = pid.and_then(|p| proc_status_kb(p, "VmRSS:"));

    // 1. Open every subscriber connection.
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        handles.push(tokio::spawn(subscriber(sh.clone(), i, gate.clone())));
    }
    let all_settled = wait_until(&sh, deadline, |s| {
        s.connected.load(Ordering::SeqCst) + s.failed.load(Ordering::SeqCst) >= n
    })
    .await;
    let connect_s = start_all.elapsed().as_secs_f64();
    let connected = sh.connected.load(Ordering::SeqCst);

    // 2. Warm up until every connected subscriber has received one event (proves the stream is live).
    let mut publishers = Vec::new();
    let mut pub_err = None;
    for _ in 0..args.publish_concurrency.max(1) {
        match Publisher::open(&sh).await {
            Ok(p) => publishers.push(p),
            Err(e) => {
                pub_err = Some(e);
                break;
            }
        }
    }
    let pad = "x".repeat(args.pad_bytes);
    let mut warm_ok = false;
    if pub_err.is_none() && all_settled {
        let warm_deadline = (Instant::now() + Duration::from_secs(30)).min(deadline);
        while Instant::now() < warm_deadline {
            for k in 0..sh.args.topics.max(1) {
                let body = format!(
                    "{{\"warm\":1,\"seq\":0,\"sent_ns\":{},\"pad\":\"\"}}",
                    now_ns()
                );
                let topic = (sh.args.topics > 1).then(|| sub_topic(&sh.args, k));
                if let Err(e) = publishers[0].post(&sh, body, topic.as_deref()).await {
                    pub_err = Some(e);
                    break;
                }
            }
            if pub_err.is_some() {
                break;
            }
            let step = (Instant::now() + Duration::from_millis(100)).min(warm_deadline);
            if wait_until(&sh, step, |s| s.ready.load(Ordering::SeqCst) >= connected).await {
                warm_ok = true;
                break;
            }
        }
    }
    let ready = sh.ready.load(Ordering::SeqCst);
    if args.hold_s > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_s)).await;
    }
    // Let the warm-up events drain before taking the idle memory figure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = pid.and_then(|p| proc_status_kb(p, "VmRSS:"));

    // 3. Publish the measured events.
    let pid_s = pid.map(|p| p.to_string());
    let cpu0 = pid_s.as_deref().and_then(proc_cpu_s);
    let self_cpu0 = proc_cpu_s("self");
    sh.measuring.store(true, Ordering::SeqCst);
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let t0_ns = now_ns();
    let mut pub_tasks = Vec::new();
    if pub_err.is_none() && warm_ok {
        let k = publishers.len() as u64;
        for mut p in publishers.drain(..) {
            let sh = sh.clone();
            let next = next.clone();
            let pad = pad.clone();
            let per_pub_interval = if args.rate > 0 {
                Some(Duration::from_secs_f64(k as f64 / args.rate as f64))
            } else {
                None
            };
            pub_tasks.push(tokio::spawn(async move {
                let mut tick = per_pub_interval.map(tokio::time::interval);
                loop {
                    let seq = next.fetch_add(1, Ordering::SeqCst);
                    if seq >= m {
                        return Ok(());
                    }
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let body = format!(
                        "{{\"seq\":{seq},\"sent_ns\":{},\"pad\":\"{pad}\"}}",
                        now_ns()
                    );
                    let topic = (sh.args.topics > 1).then(|| sub_topic(&sh.args, seq));
                    p.post(&sh, body, topic.as_deref()).await?;
                    let done = sh.published.fetch_add(1, Ordering::SeqCst) + 1;
                    if sh.args.storm_at > 0 && done == sh.args.storm_at {
                        sh.storm.send_replace(true);
                    }
                }
            }));
        }
    }
    let mut publish_errors = 0;
    for t in pub_tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                publish_errors += 1;
                pub_err.get_or_insert(e);
            }
            Err(e) => {
                publish_errors += 1;
                pub_err.get_or_insert(format!("publisher task: {e}"));
            }
        }
    }
    let publish_s = t0.elapsed().as_secs_f64();
    let complete = wait_until(&sh, deadline, |s| {
        s.complete.load(Ordering::SeqCst) >= connected
    })
    .await;
    let cpu1 = pid_s.as_deref().and_then(proc_cpu_s);
    let self_cpu1 = proc_cpu_s("self");
    let rss_peak = pid.and_then(|p| proc_status_kb(p, "VmHWM:"));
    let rss_end = pid.and_then(|p| proc_status_kb(p, "VmRSS:"));
    let last = sh.last_delivery_ns.load(Ordering::SeqCst);
    let deliver_s = if last > t0_ns {
        (last - t0_ns) as f64 / 1e9
    } else {
        publish_s
    };

    // Stop subscribers and gather their statistics.
    sh.stop.send_replace(true);
    let gather = async {
        for h in handles {
            let _ = h.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), gather).await;
    let stats = std::mem::take(&mut *sh.stats.lock().unwrap());
    let mut lat: Vec<u32> = Vec::new();
    let (mut received, mut dups, mut ooo, mut hb) = (0u64, 0u64, 0u64, 0u64);
    for s in &stats {
        received += s.received;
        dups += s.duplicates;
        ooo += s.out_of_order;
        hb += s.heartbeats;
        lat.extend_from_slice(&s.latencies_us);
    }
    let finished = stats.len();
    lat.sort_unstable();
    let expected: u64 = if sh.args.topics <= 1 {
        connected as u64 * m
    } else {
        stats.iter().map(|s| s.expected).sum()
    };
    let mut catchup = std::mem::take(&mut *sh.storm_catchup_us.lock().unwrap());
    catchup.sort_unstable();
    let reconnected = sh.storm_reconnected.load(Ordering::SeqCst);
    let timed_out = !complete || !all_settled || !warm_ok;
    let storm_json = if sh.args.storm_at > 0 {
        serde_json::json!({
            "at": sh.args.storm_at,
            "spread_ms": sh.args.storm_spread_ms,
            "reconnected": reconnected,
            "failed": sh.storm_failed.load(Ordering::SeqCst),
            "caught_up": catchup.len(),
            "catchup_ms": {
                "p50": percentile(&catchup, 50.0) as f64 / 1000.0,
                "p99": percentile(&catchup, 99.0) as f64 / 1000.0,
                "max": catchup.last().copied().unwrap_or(0) as f64 / 1000.0,
            },
        })
    } else {
        serde_json::Value::Null
    };
    let result = serde_json::json!({
        "label": args.label,
        "subscribers": n,
        "connected": connected,
        "ready": ready,
        "finished_subscribers": finished,
        "events": m,
        "pad_bytes": args.pad_bytes,
        "publish_concurrency": args.publish_concurrency,
        "rate": args.rate,
        "expected": expected,
        "received": received,
        "lost": expected.saturating_sub(received),
        "duplicates": dups,
        "out_of_order": ooo,
        "heartbeats": hb,
        "deliveries_per_s": if deliver_s > 0.0 { received as f64 / deliver_s } else { 0.0 },
        "publish_per_s": if publish_s > 0.0 && publish_errors == 0 { m as f64 / publish_s } else { 0.0 },
        "lat_us": {
            "p50": percentile(&lat, 50.0),
            "p90": percentile(&lat, 90.0),
            "p99": percentile(&lat, 99.0),
            "max": lat.last().copied().unwrap_or(0),
        },
        "connect_s": connect_s,
        "publish_s": publish_s,
        "deliver_s": deliver_s,
        "rss_kb_before": rss_before,
        "rss_kb_idle": rss_idle,
        "rss_kb_end": rss_end,
        "rss_kb_peak": rss_peak,
        "kib_per_conn": match (rss_before, rss_idle) {
            (Some(b), Some(i)) if connected > 0 => Some((i as f64 - b as f64) / connected as f64),
            _ => None,
        },
        "server_cpu_s": match (cpu0, cpu1) { (Some(a), Some(b)) => Some(b - a), _ => None },
        "server_cpu_us_per_delivery": match (cpu0, cpu1) {
            (Some(a), Some(b)) if received > 0 => Some((b - a) * 1e6 / received as f64),
            _ => None,
        },
        "loadgen_cpu_s": match (self_cpu0, self_cpu1) { (Some(a), Some(b)) => Some(b - a), _ => None },
        "topics": sh.args.topics,
        "resumed_streams": sh.resumed.load(Ordering::SeqCst),
        "storm": storm_json,
        "timed_out": timed_out,
        "first_error": sh.first_error.lock().unwrap().clone().or(pub_err),
    });
    if args.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result).unwrap());
    }
    std::process::exit(if timed_out { 3 } else { 0 });
}

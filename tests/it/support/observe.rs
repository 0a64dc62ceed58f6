//! Readers of what a test observes besides HTTP: `/metrics` samples, this process's memory, logs.

/// The value of the sample `name` (with its labels, e.g. `x_total{reason="a"}`) in Prometheus text;
/// 0 when absent (a label set not used yet).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("metric {name} = {v:?}"))
        })
        .unwrap_or(0.0)
}

/// Resident memory of this process in KiB (Linux `/proc/self/status`), `None` elsewhere.
// Used only by `tests/memory.rs`, a process of its own: dead code in `tests/it`.
#[allow(dead_code)]
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time this process has used (user + system, Linux `/proc/self/stat`, in clock ticks of
/// 10 ms), `None` elsewhere: what a test that reports a rate says its rate cost.
pub fn process_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name, which may hold spaces, end at its ')'
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// What a `tracing` fmt subscriber wrote, for tests that check logs.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// Captures the logs of this thread matching `filter` (an `EnvFilter` directive), with span
/// closes; use it in a `current_thread` test so the server's tasks log on this thread too.
pub fn capture_logs(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Captures the logs of the whole process matching `filter`, with span closes, by installing a
/// global subscriber: for a test binary of its own (a second call panics). With the suite's
/// `otel` feature the subscriber also has the OpenTelemetry layer of [`super::traces`].
// Used only by `tests/tracing_spans.rs` and `tests/redis_cluster`, processes of their own: dead
// code in `tests/it`.
#[allow(dead_code)]
pub fn capture_logs_globally(filter: &str) -> Captured {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    let logs = Captured::default();
    let writer = logs.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_filter(tracing_subscriber::EnvFilter::new(filter));
    let subscriber = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    let subscriber = subscriber.with(super::traces::layer());
    tracing::subscriber::set_global_default(subscriber)
        .expect("one global subscriber per test binary");
    logs
}

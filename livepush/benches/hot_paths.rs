//! Micro-benchmarks of livepush's hot paths: SSE frame encoding, topic parsing and validation,
//! and the in-process fan-out of one event to 1, 100 and 10,000 subscribers through a real
//! [`Hub`] (publish → broker → per-connection queue → the SSE body that a socket would read).
//!
//! Run: `cargo bench -p livepush --bench hot_paths` (results and their reading: BENCHMARKS.md);
//! with `--features otel` for the cost of trace propagation (the fan-out publishes under the same
//! `tracing-opentelemetry` layer in both builds). The `fanout_cpu` group measures this thread's
//! CPU time per publish at 100 and 1,000 subscribers, in a request span and outside any span;
//! `scripts/bench_otel.sh` runs it with the feature off and on, alternating.
//! Timings are figures to compare, never assertions.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::sse::Event as AxumEvent;
use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http_body::Body as _;
use livepush::__private::{frame, SubscribeContext};
use livepush::{EventId, Hub, Topic, Topics};
use tracing::Instrument;

/// The payload the load generator publishes: `{"seq":…,"sent_ns":…,"pad":"x…"}`, 200 pad bytes.
fn payload() -> Bytes {
    let pad = "x".repeat(200);
    Bytes::from(format!(
        "{{\"seq\":123456,\"sent_ns\":1762000000000000000,\"pad\":\"{pad}\"}}"
    ))
}

const TICK: livepush::EventName = livepush::EventName::from_static("tick");

fn encoding(c: &mut Criterion) {
    let data = payload();
    let text = std::str::from_utf8(&data).expect("ASCII payload");
    let multi_line = Bytes::from(format!("{text}\n{text}\r\n{text}"));
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("livepush_event_250B", |b| {
        b.iter(|| {
            frame::event(
                EventId::new(black_box(1_762_000_000_000_123)),
                &TICK,
                black_box(&data),
            )
        })
    });
    g.bench_function("livepush_event_3_lines", |b| {
        b.iter(|| frame::event(EventId::new(black_box(42)), &TICK, black_box(&multi_line)))
    });
    // What axum's `Sse` does for every event and every subscriber (the baseline server's cost,
    // paid N times per event where livepush pays `livepush_event_250B` once).
    g.bench_function("axum_sse_event_250B", |b| {
        b.iter(|| {
            AxumEvent::default()
                .id(black_box(1_762_000_000_000_123u64).to_string())
                .event("tick")
                .data(black_box(text))
        })
    });
    g.finish();
}

fn topics(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic");
    g.bench_function("new_short", |b| b.iter(|| Topic::new(black_box("bench"))));
    g.bench_function("new_templated", |b| {
        b.iter(|| Topic::new(black_box("comment:123e4567-e89b-12d3")))
    });
    g.bench_function("validate_only", |b| {
        b.iter(|| Topic::validate(black_box("tenant:42/user:7")))
    });
    g.bench_function("parse_and_validate_list_of_3", |b| {
        b.iter(|| Topics::parse_list(black_box("comments, user:7,broadcast")).validate(32))
    });
    g.bench_function("refuse_crlf", |b| {
        b.iter(|| Topic::new(black_box("a\r\nevent: x")))
    });
    g.finish();
}

/// One SSE response body of the hub, as axum would poll it for a socket.
struct Conn {
    body: Body,
}

impl Conn {
    /// Reads every frame available now; returns the bytes read.
    fn drain(&mut self, cx: &mut Context<'_>) -> usize {
        let mut n = 0;
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut self.body).poll_frame(cx) {
            if let Some(data) = frame.data_ref() {
                n += data.len();
            }
        }
        n
    }
}

async fn subscribe(hub: &Hub) -> Conn {
    let request = http::Request::builder()
        .uri("/events?topic=bench")
        .extension(hub.clone())
        .body(())
        .expect("static request");
    let (mut parts, ()) = request.into_parts();
    let Ok(ctx) = SubscribeContext::from_request_parts(&mut parts, &()).await else {
        panic!("the hub extension is set");
    };
    let response = ctx.from_query().await;
    assert!(
        response.status().is_success(),
        "subscription refused: {}",
        response.status()
    );
    Conn {
        body: response.into_body(),
    }
}

/// The app's tracing as production runs it, with the `otel` feature or without (so that the two
/// builds differ only by what the feature adds to livepush): a `tracing-opentelemetry` layer
/// whose SDK samples 1 % of new traces (each request here starts one), exporting the sampled
/// spans to memory, under an INFO filter (livepush's debug spans stay off). Installed once per
/// process (both fan-out groups use it).
fn install_tracing() -> &'static opentelemetry_sdk::trace::InMemorySpanExporter {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    static EXPORTER: OnceLock<opentelemetry_sdk::trace::InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                0.01,
            ))))
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        std::mem::forget(provider);
        exporter
    })
}

/// One publish as a request handler makes it: inside the request's span (what an HTTP tracing
/// layer such as tower-http's `TraceLayer` opens), whose trace the sampler keeps 1 % of.
fn publish(rt: &tokio::runtime::Runtime, hub: &Hub, data: &Bytes) -> livepush::Published {
    let request = tracing::info_span!("http.request", http.route = "/publish");
    rt.block_on(
        hub.publish_json("bench", "tick", None, data.clone())
            .instrument(request),
    )
    .expect("publish")
}

/// One publish outside any span, as an uninstrumented background task makes it.
fn publish_in_background(
    rt: &tokio::runtime::Runtime,
    hub: &Hub,
    data: &Bytes,
) -> livepush::Published {
    rt.block_on(hub.publish_json("bench", "tick", None, data.clone()))
        .expect("publish")
}

/// A hub on the in-memory broker with `n` streams of topic `bench`, each past its `retry:` hint.
fn fanout_hub(rt: &tokio::runtime::Runtime, cx: &mut Context<'_>, n: usize) -> (Hub, Vec<Conn>) {
    // Coalescing off: it trades socket writes for up to 1 ms of holding, and this bench has
    // no sockets; with it on, the streams read back-to-back here would hold their frame.
    let hub = Hub::builder()
        .max_connections(n + 1)
        .coalesce(Duration::ZERO)
        .build()
        .expect("valid settings");
    let mut conns: Vec<Conn> = rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(subscribe(&hub).await);
        }
        v
    });
    let _guard = rt.enter();
    for conn in &mut conns {
        conn.drain(cx); // the `retry:` hint
    }
    (hub, conns)
}

/// One publish by `publish` and every stream of `conns` reading its frame.
fn publish_and_read(
    publish: fn(&tokio::runtime::Runtime, &Hub, &Bytes) -> livepush::Published,
    (rt, hub, data): (&tokio::runtime::Runtime, &Hub, &Bytes),
    conns: &mut [Conn],
    cx: &mut Context<'_>,
) -> livepush::Published {
    let id = publish(rt, hub, data);
    let mut read = 0;
    for conn in conns.iter_mut() {
        read += conn.drain(cx);
    }
    assert!(
        read >= conns.len() * data.len(),
        "every subscriber got the event"
    );
    id
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn fanout(c: &mut Criterion) {
    let exporter = install_tracing();
    let rt = current_thread();
    let mut cx = Context::from_waker(Waker::noop());
    let data = payload();
    let mut g = c.benchmark_group("fanout");
    for n in [1usize, 100, 10_000] {
        let (hub, mut conns) = fanout_hub(&rt, &mut cx, n);
        let _guard = rt.enter();
        g.throughput(Throughput::Elements(n as u64));
        // publish (id, encode once, N queue pushes) + every stream reading its frame
        g.bench_with_input(BenchmarkId::new("publish_and_read", n), &n, |b, _| {
            b.iter(|| publish_and_read(publish, (&rt, &hub, &data), &mut conns, &mut cx))
        });
        // publish only: the fan-out itself, queues drained outside the timing
        g.bench_with_input(BenchmarkId::new("publish_only", n), &n, |b, _| {
            b.iter_batched(
                || {
                    for conn in &mut conns {
                        conn.drain(&mut cx);
                    }
                },
                |()| publish(&rt, &hub, &data),
                BatchSize::PerIteration,
            )
        });
        for conn in &mut conns {
            conn.drain(&mut cx);
        }
        drop(conns);
    }
    g.finish();
    report_spans(exporter);
}

/// The CPU time of this thread (where the current-thread runtime runs the whole fan-out), from
/// its CPU clock: time the scheduler gave to other processes is not counted, so a busy machine
/// slows a run without inflating its figure as much as wall time does.
struct ThreadCpu;

impl ThreadCpu {
    fn now_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec; the clock id is a constant the OS defines.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        assert_eq!(rc, 0, "the thread's CPU clock");
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        Self::now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, ns: &u64) -> f64 {
        *ns as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self
    }
}

impl ValueFormatter for ThreadCpu {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            ns if ns < 1e3 => (1.0, "ns"),
            ns if ns < 1e6 => (1e-3, "µs"),
            _ => (1e-6, "ms"),
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // deliveries per CPU second
        let n = match *throughput {
            Throughput::Elements(n) => n as f64,
            _ => 1.0,
        };
        for v in values {
            *v = n * 1e9 / *v;
        }
        "deliveries/CPU s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// CPU per delivery at realistic fan-outs (`scripts/bench_otel.sh` compares the builds with and
/// without `otel` on it): a publish in a request span (1 % of them sampled) and one outside
/// any span, each read by all `n` streams, measured in this thread's CPU time.
fn fanout_cpu(c: &mut Criterion<ThreadCpu>) {
    let exporter = install_tracing();
    let rt = current_thread();
    let mut cx = Context::from_waker(Waker::noop());
    let data = payload();
    let mut g = c.benchmark_group("fanout_cpu");
    for n in [100usize, 1_000] {
        let (hub, mut conns) = fanout_hub(&rt, &mut cx, n);
        let _guard = rt.enter();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("request", n), &n, |b, _| {
            b.iter(|| publish_and_read(publish, (&rt, &hub, &data), &mut conns, &mut cx))
        });
        g.bench_with_input(BenchmarkId::new("background", n), &n, |b, _| {
            b.iter(|| {
                publish_and_read(
                    publish_in_background,
                    (&rt, &hub, &data),
                    &mut conns,
                    &mut cx,
                )
            })
        });
    }
    g.finish();
    report_spans(exporter);
}

/// Proof that the layer ran and sampled: about 1 % of the requests, each (with the feature)
/// with its publish span and its deliveries (one span per publish and delivering hub, whatever
/// the subscriber count), and no publish span outside a request.
fn report_spans(exporter: &opentelemetry_sdk::trace::InMemorySpanExporter) {
    let spans = exporter.get_finished_spans().unwrap_or_default();
    let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
    eprintln!(
        "otel: {} sampled requests, {} publish spans, {} delivery spans",
        count("http.request"),
        count("livepush.publish"),
        count("livepush.deliver"),
    );
    exporter.reset();
}

criterion_group!(benches, encoding, topics, fanout);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = fanout_cpu
}
criterion_main!(benches, cpu);

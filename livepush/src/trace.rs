//! The trace context an event carries from where it was published to every delivery (feature
//! `otel`), and the delivery span each instance records for it.
//!
//! Where an event is published ([`Hub::publish`](crate::Hub::publish) and the macros, or
//! `Outbox::publish`), the W3C trace context of a `livepush.publish` span, a child of the current
//! `tracing` span (through `tracing-opentelemetry`), is taken with the time of publishing. Under a
//! current context that is not sampled no publish span is opened (it would never be recorded, and
//! building it was most of this feature's cost): the event carries that context as it is, and its
//! deliveries record no span either. Outside any traced span (a background task that is not
//! instrumented) nothing is opened or carried, and the event is not timed: put the task in a span
//! (`#[tracing::instrument]`) to trace its publishes, the sampler deciding at that span. The
//! current context is read from OpenTelemetry's current `Context` (what the layer activates on
//! entering a span, or what an app attached itself), else from the current `tracing` span.
//! The envelope carries it
//! through every broker; each instance that hands the event to local subscribers records one
//! `livepush.deliver` span for it (one per event and instance, never one per connection), whose
//! parent is the publish span and which also links to it, with the subscriber count, the time
//! since publish and the broker's kind.
//!
//! # On the wire
//! Redis and NATS payloads and outbox rows carry it on the event-name line:
//! `{event} {traceparent} {published, Unix µs}`, e.g.
//! `comment_created 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 1733349000123456`.
//! An event name never holds a space ([`EventName`](crate::EventName)), so the line splits
//! unambiguously, and a line without it (written by an older version, or with the feature off)
//! is read as before. Without the feature nothing is written, and a context that arrives is
//! skipped: an instance built without `otel` reads what one built with it writes. An instance of a
//! version older than this one refuses such a line, so turn the feature on once every instance
//! runs a version that reads it.

use std::borrow::Cow;

/// The trace context of one event: the span it was published in, and when. Empty for an event
/// published outside any traced span; always empty (and zero-sized) without the `otel` feature.
///
/// ```
/// use livepush::broker::Trace;
///
/// // Outside a span recorded by `tracing-opentelemetry` there is nothing to carry.
/// assert!(Trace::current().is_empty());
/// assert!(Trace::NONE.is_empty());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    #[cfg(feature = "otel")]
    carried: Option<Carried>,
}

/// What [`Trace`] holds with the feature on: a W3C `traceparent` and the publish time.
#[cfg(feature = "otel")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Carried {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    /// Unix µs, by the publishing process's clock.
    published_us: u64,
}

impl Trace {
    /// No trace context.
    pub const NONE: Trace = Trace {
        #[cfg(feature = "otel")]
        carried: None,
    };

    /// The trace context current here, taken now: OpenTelemetry's current `Context` (which a
    /// `tracing-opentelemetry` layer activates while a span is entered), else the current
    /// `tracing` span's. Empty without the `otel` feature, and outside any span such a layer
    /// records.
    pub fn current() -> Trace {
        #[cfg(feature = "otel")]
        {
            otel::current()
        }
        #[cfg(not(feature = "otel"))]
        {
            Trace::NONE
        }
    }

    /// Where an event is published, decided before any span is built: `Some` when nothing of
    /// the current trace would be recorded, with what to carry as it is: the current context
    /// when its trace is not sampled (its deliveries record no span either), [`Trace::NONE`]
    /// outside any span the layer records (an uninstrumented background task: nothing to link
    /// to). A `livepush.publish` span in either case would only cost: `tracing-opentelemetry`
    /// builds every span whether sampled or not, about 5 µs a publish. `None` under a sampled
    /// trace: the caller opens its publish span and takes [`Trace::current`] inside it.
    #[cfg(feature = "otel")]
    pub(crate) fn unrecorded_current() -> Option<Trace> {
        let trace = Trace::current();
        match trace.carried {
            Some(c) if c.sampled() => None,
            _ => Some(trace),
        }
    }

    /// Whether there is no context to carry.
    pub fn is_empty(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.carried.is_none()
        }
        #[cfg(not(feature = "otel"))]
        {
            true
        }
    }

    /// The W3C `traceparent` of the span the event was published in
    /// (`00-{trace id}-{span id}-{flags}`), if any.
    #[cfg(feature = "otel")]
    pub fn traceparent(&self) -> Option<String> {
        self.carried.map(|c| c.traceparent())
    }

    /// Splits an event-name line as payloads carry it into the name and its context (see the
    /// module docs). A context that does not parse is dropped: it never costs the event.
    // Only brokers that carry payloads between processes, and the outbox, read and write lines.
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "nats",
            feature = "outbox-postgres",
            feature = "outbox-sqlite"
        )),
        allow(dead_code)
    )]
    pub(crate) fn split(line: &str) -> (&str, Trace) {
        let Some((name, _rest)) = line.split_once(' ') else {
            return (line, Trace::NONE);
        };
        #[cfg(feature = "otel")]
        {
            (
                name,
                Trace {
                    carried: Carried::parse(_rest),
                },
            )
        }
        #[cfg(not(feature = "otel"))]
        {
            (name, Trace::NONE)
        }
    }

    /// `event` as the event-name line of a payload: with a context, followed by it.
    // Only brokers that carry payloads between processes, and the outbox, read and write lines.
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "nats",
            feature = "outbox-postgres",
            feature = "outbox-sqlite"
        )),
        allow(dead_code)
    )]
    #[cfg(feature = "otel")]
    pub(crate) fn event_line<'a>(&self, event: &'a str) -> Cow<'a, str> {
        match self.carried {
            None => Cow::Borrowed(event),
            Some(c) => Cow::Owned(format!("{event} {} {}", c.traceparent(), c.published_us)),
        }
    }

    /// `event` as the event-name line of a payload: without the feature, the name itself.
    // Only brokers that carry payloads between processes, and the outbox, read and write lines.
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "nats",
            feature = "outbox-postgres",
            feature = "outbox-sqlite"
        )),
        allow(dead_code)
    )]
    #[cfg(not(feature = "otel"))]
    pub(crate) fn event_line<'a>(&self, event: &'a str) -> Cow<'a, str> {
        // The same type as with the feature, so callers read alike; borrowed: no allocation.
        Cow::Borrowed(event)
    }
}

#[cfg(feature = "otel")]
impl Carried {
    fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// `{traceparent} {published µs}`; `None` for anything else.
    fn parse(text: &str) -> Option<Carried> {
        let (parent, published) = text.split_once(' ')?;
        let mut parts = parent.split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let hex = |s: &str, len: usize| {
            (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then_some(())
        };
        hex(trace, 32)?;
        hex(span, 16)?;
        hex(flags, 2)?;
        let carried = Carried {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
            published_us: published.parse().ok()?,
        };
        // All-zero ids are invalid in W3C trace context.
        (carried.trace_id != 0 && carried.span_id != 0).then_some(carried)
    }

    fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The delivery side: the `livepush.deliver` span and the publish-to-queue histogram.
#[cfg(feature = "otel")]
pub(crate) use otel::Delivering;

#[cfg(feature = "otel")]
mod otel {
    use std::time::{SystemTime, UNIX_EPOCH};

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Carried, Trace};
    use crate::metrics::TracedHistogram;

    fn now_us() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn current() -> Trace {
        // With the layer's context activation (its default) the entered span's context is the
        // thread's current OpenTelemetry context: read in place, no span looked up or cloned.
        // Without it, the current span is asked (which also builds its OpenTelemetry span).
        let active = opentelemetry::Context::map_current(|cx| {
            let sc = cx.span().span_context().clone();
            sc.is_valid().then_some(sc)
        });
        let sc = match active {
            Some(sc) => sc,
            None => {
                let span = tracing::Span::current();
                if span.is_none() {
                    return Trace::NONE;
                }
                let cx = span.context();
                let sc = cx.span().span_context().clone();
                if !sc.is_valid() {
                    return Trace::NONE;
                }
                sc
            }
        };
        Trace {
            carried: Some(Carried {
                trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
                flags: sc.trace_flags().to_u8(),
                published_us: now_us(),
            }),
        }
    }

    impl Carried {
        fn span_context(&self) -> SpanContext {
            SpanContext::new(
                TraceId::from(self.trace_id),
                SpanId::from(self.span_id),
                TraceFlags::new(self.flags),
                true,
                TraceState::default(),
            )
        }
    }

    /// One event being handed to this instance's local subscribers: its `livepush.deliver` span
    /// (for a sampled context only), finished with the number of streams it was queued to.
    pub(crate) struct Delivering {
        carried: Carried,
        span: Option<tracing::span::EnteredSpan>,
    }

    impl Delivering {
        /// Starts the delivery of an event with context `trace`; `None` (nothing to record, no
        /// cost beyond this check) for one without.
        pub(crate) fn start(trace: &Trace, broker: &'static str, topic: &str) -> Option<Self> {
            let carried = trace.carried?;
            let span = carried.sampled().then(|| {
                let span = tracing::info_span!(
                    target: "livepush::deliver",
                    "livepush.deliver",
                    otel.kind = "consumer",
                    messaging.system = "livepush",
                    messaging.operation.type = "deliver",
                    messaging.destination.name = topic,
                    livepush.broker = broker,
                    livepush.subscribers = tracing::field::Empty,
                    livepush.since_publish_us = tracing::field::Empty,
                );
                let parent = carried.span_context();
                // Parent and link: the parent keeps the deliveries in the publish's trace (and
                // under its sampling decision); the link is what the messaging conventions
                // read, and what stays when a backend splits traces.
                let _ = span.set_parent(
                    opentelemetry::Context::new().with_remote_span_context(parent.clone()),
                );
                span.add_link(parent);
                span.entered()
            });
            Some(Delivering { carried, span })
        }

        /// Records that the event was queued to `subscribers` local streams: the span's fields,
        /// and (when any stream took it) the publish-to-queue latency in the broker's series of
        /// the histogram, which `latency` gives.
        pub(crate) fn finish<'h>(
            self,
            subscribers: u64,
            latency: impl FnOnce() -> &'h TracedHistogram,
        ) {
            let since = now_us().saturating_sub(self.carried.published_us);
            if let Some(span) = &self.span {
                span.record("livepush.subscribers", subscribers);
                span.record("livepush.since_publish_us", since);
            }
            if subscribers > 0 {
                let exemplar = self
                    .carried
                    .sampled()
                    .then(|| [("trace_id", format!("{:032x}", self.carried.trace_id))]);
                latency().observe(since as f64 / 1e6, exemplar, None);
            }
        }
    }
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::*;

    #[test]
    fn only_a_sampled_current_context_gets_a_publish_span() {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
            TracerProvider as _,
        };
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;

        // the SDK's default sampler: a new trace is sampled, a child follows its parent
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(InMemorySpanExporter::default())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            // outside any span: nothing to link to, nothing carried, no span
            assert_eq!(Trace::unrecorded_current(), Some(Trace::NONE));
            // under a sampled one: the publish opens a span of its own
            let sampled = tracing::info_span!("sampled request");
            assert_eq!(sampled.in_scope(Trace::unrecorded_current), None);
            assert!(!sampled.in_scope(Trace::current).is_empty());
            // under a caller that did not sample: the request's own context, flags 00
            let caller = SpanContext::new(
                TraceId::from(0x5a5a_u128),
                SpanId::from(0x77_u64),
                TraceFlags::default(),
                true,
                TraceState::default(),
            );
            let request = tracing::info_span!("unsampled request");
            request
                .set_parent(opentelemetry::Context::new().with_remote_span_context(caller))
                .unwrap();
            let trace = request
                .in_scope(Trace::unrecorded_current)
                .expect("the caller's context, carried as it is");
            let parent = trace.traceparent().unwrap();
            assert!(
                parent.starts_with("00-00000000000000000000000000005a5a-")
                    && parent.ends_with("-00"),
                "{parent}"
            );
        });
    }

    #[test]
    fn a_context_survives_the_event_line_and_bad_ones_are_dropped() {
        let trace = Trace {
            carried: Some(Carried {
                trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                span_id: 0x00f0_67aa_0ba9_02b7,
                flags: 1,
                published_us: 1_733_349_000_123_456,
            }),
        };
        let line = trace.event_line("comment_created");
        assert_eq!(
            line,
            "comment_created 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 1733349000123456"
        );
        assert_eq!(Trace::split(&line), ("comment_created", trace));
        assert_eq!(Trace::NONE.event_line("e"), "e");
        assert_eq!(Trace::split("e"), ("e", Trace::NONE));
        for bad in [
            "e 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "e 01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 1",
            "e 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01 1",
            "e 00-00000000000000000000000000000000-00f067aa0ba902b7-01 1",
            "e 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x 1",
            "e 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 soon",
            "e garbage",
        ] {
            assert_eq!(Trace::split(bad), ("e", Trace::NONE), "{bad}");
        }
    }
}
